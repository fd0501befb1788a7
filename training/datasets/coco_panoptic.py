"""COCO panoptic dataset reader, and the folder reader that the Cityscapes reader shares.

A COCO-format panoptic dataset is one JSON (``images``, ``annotations``, ``categories``),
one PNG per image whose colours encode segment ids, and a folder of source images.
The official COCO 2017 layout under ``root`` is the default::

    root/annotations/panoptic_<split>2017.json
    root/annotations/panoptic_<split>2017/<image>.png
    root/<split>2017/<image>.jpg

Every path can be overridden. Files are read with :mod:`panoptic_ros.eval.coco_format`
(the same code the evaluator uses) and the annotation becomes a
:class:`~panoptic_ros.types.PanopticResult` via ``PanopticResult.from_coco``, so
categories are official COCO ids, crowd regions are thing segments with instance 0 and
non-crowd instances of a category are numbered 1, 2, ... in ascending COCO segment id.

Errors (:class:`CocoFormatError`) name the offending file: a missing or malformed JSON,
a missing image or PNG, PNG ids absent from the JSON (or the reverse), and an image whose
size differs from its PNG.
"""
from __future__ import annotations

from pathlib import Path

from torch.utils.data import Dataset

from panoptic_ros.eval.coco_format import CocoFormatError, CocoImage, iter_coco_images, load_result, read_rgb
from panoptic_ros.labels import COCO_PANOPTIC, LabelSpace
from panoptic_ros.sample import Sample

__all__ = ["CocoFormatError", "CocoPanoptic", "PanopticFolderDataset", "read_rgb"]


class PanopticFolderDataset(Dataset):
    """Map-style dataset over a COCO-format panoptic JSON, its PNG folder and an image folder.

    Args:
        json_path: the panoptic JSON.
        panoptic_dir: folder holding the annotation PNGs (``file_name`` of each annotation).
        image_dir: folder the source images are looked up in (see :meth:`image_path`).
        label_space: the categories the JSON's ``category_id`` refer to.
    Raises:
        CocoFormatError: the JSON is missing or malformed, or ``panoptic_dir`` is missing.
    """

    def __init__(self, *, json_path: str | Path, panoptic_dir: str | Path, image_dir: str | Path,
                 label_space: LabelSpace):
        self.json_path = Path(json_path)
        self.panoptic_dir = Path(panoptic_dir)
        self.image_dir = Path(image_dir)
        self.label_space = label_space
        self.entries: list[CocoImage] = list(iter_coco_images(self.json_path))
        if not self.panoptic_dir.is_dir():
            raise CocoFormatError(f"{self.panoptic_dir}: panoptic PNG folder not found "
                                  f"(annotations of {self.json_path})")

    def __len__(self) -> int:
        return len(self.entries)

    def image_path(self, entry: CocoImage) -> Path:
        """Where the source image of ``entry`` lies: the ``images`` file name, else the PNG's
        stem with ``.jpg``."""
        name = entry.image_file_name or Path(entry.file_name).with_suffix(".jpg").name
        return self.image_dir / name

    def prepare_entry(self, entry: CocoImage) -> CocoImage:
        """Hook for subclasses to rewrite an entry before it is decoded (identity here)."""
        return entry

    def __getitem__(self, index: int) -> Sample:
        """The sample at ``index``: (H, W, 3) uint8 RGB image and its panoptic target."""
        entry = self.prepare_entry(self.entries[index])
        try:
            target = load_result(entry, self.panoptic_dir, self.label_space)
        except CocoFormatError as exc:
            raise CocoFormatError(f"{exc} (annotations from {self.json_path})") from None
        image_path = self.image_path(entry)
        image = read_rgb(image_path)
        if image.shape[:2] != target.panoptic.shape:
            raise CocoFormatError(
                f"{image_path}: image size {image.shape[1]}x{image.shape[0]} differs from its panoptic "
                f"PNG {self.panoptic_dir / entry.file_name} ({target.width}x{target.height})")
        return Sample(image=image, target=target, image_id=str(entry.image_id))


class CocoPanoptic(PanopticFolderDataset):
    """COCO panoptic 2017 (133 categories) in the official layout, paths overridable.

    Args:
        root: dataset root holding ``annotations/`` and ``<split>2017/``.
        split: ``train`` or ``val`` (any name works with explicit paths).
        json_path: default ``root/annotations/panoptic_<split>2017.json``.
        panoptic_dir: default ``root/annotations/panoptic_<split>2017``.
        image_dir: default ``root/<split>2017``.
    """

    def __init__(self, root: str | Path, split: str = "train", *, json_path: str | Path | None = None,
                 panoptic_dir: str | Path | None = None, image_dir: str | Path | None = None):
        root = Path(root)
        super().__init__(
            json_path=json_path or root / "annotations" / f"panoptic_{split}2017.json",
            panoptic_dir=panoptic_dir or root / "annotations" / f"panoptic_{split}2017",
            image_dir=image_dir or root / f"{split}2017",
            label_space=COCO_PANOPTIC)
