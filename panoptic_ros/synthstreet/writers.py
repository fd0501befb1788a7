"""Write samples to disk: the Cityscapes layout and the COCO panoptic format.

Cityscapes layout (what cityscapesscripts' ``createPanopticImgs`` converts, and what
:class:`~panoptic_ros.training.datasets.cityscapes.CityscapesPanoptic` reads after that)::

    root/leftImg8bit/<split>/<city>/<city>_<seq>_<frame>_leftImg8bit.png
    root/gtFine/<split>/<city>/<city>_<seq>_<frame>_gtFine_labelIds.png     (uint8 label ids)
    root/gtFine/<split>/<city>/<city>_<seq>_<frame>_gtFine_instanceIds.png  (uint16)

COCO panoptic layout (readable with ``PanopticFolderDataset(label_space=CITYSCAPES)``)::

    root/<split>/<image_id>.png                               (the images, lossless)
    root/annotations/panoptic_<split>.json
    root/annotations/panoptic_<split>/<image_id>.png          (segment ids as colours)

All files are PNG with fixed encoder settings, so the same samples give byte-identical files.
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import Iterable

import cv2
import numpy as np

from panoptic_ros.eval.coco_format import write_coco_panoptic
from panoptic_ros.labels import CITYSCAPES
from panoptic_ros.sample import Sample

_PNG = [cv2.IMWRITE_PNG_COMPRESSION, 3]
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9.-]*$")


class WriterError(ValueError):
    """Output that cannot be written (bad names, unwritable files); the message names it."""


def check_name(kind: str, value: str) -> None:
    if not _NAME.match(value):
        raise WriterError(f"{kind} {value!r} must be letters, digits, '.' or '-' (no '_' or '/')")


def write_png(path: Path, array: np.ndarray) -> None:
    """Write a PNG (RGB images given as (H, W, 3) RGB), creating folders; WriterError on failure."""
    path.parent.mkdir(parents=True, exist_ok=True)
    data = array[..., ::-1] if array.ndim == 3 else array
    if not cv2.imwrite(str(path), np.ascontiguousarray(data), _PNG):
        raise WriterError(f"{path}: could not write PNG")


def cityscapes_stem(city: str, seq: int, frame: int) -> str:
    """``<city>_<seq>_<frame>`` with six-digit numbers, as Cityscapes names its files."""
    return f"{city}_{seq:06d}_{frame:06d}"


def write_cityscapes_sample(root: str | Path, split: str, city: str, stem: str, sample: Sample) -> list[Path]:
    """Write one sample's image, labelIds and instanceIds PNGs; returns the three paths."""
    root = Path(root)
    image_path = root / "leftImg8bit" / split / city / f"{stem}_leftImg8bit.png"
    label_path = root / "gtFine" / split / city / f"{stem}_gtFine_labelIds.png"
    instance_path = root / "gtFine" / split / city / f"{stem}_gtFine_instanceIds.png"
    label_ids, instance_ids = sample.target.to_cityscapes()
    write_png(image_path, sample.image)
    write_png(label_path, label_ids)
    write_png(instance_path, instance_ids.astype(np.uint16))
    return [image_path, label_path, instance_path]


def write_cityscapes(root: str | Path, samples: Iterable[Sample], *, split: str = "train", city: str = "synth",
                     seq: int = 0, first_frame: int = 0) -> list[str]:
    """Write samples in the Cityscapes layout, frames numbered from ``first_frame``.

    Returns:
        The ``<city>_<seq>_<frame>`` stems written (these become the ``image_id`` of
        ``createPanopticImgs``).
    """
    check_name("split", split)
    check_name("city", city)
    stems = []
    for frame, sample in enumerate(samples, start=first_frame):
        stem = cityscapes_stem(city, seq, frame)
        write_cityscapes_sample(root, split, city, stem, sample)
        stems.append(stem)
    return stems


def coco_paths(root: str | Path, split: str) -> tuple[Path, Path, Path]:
    """(json file, panoptic PNG folder, image folder) of the COCO layout under ``root``."""
    root = Path(root)
    return (root / "annotations" / f"panoptic_{split}.json", root / "annotations" / f"panoptic_{split}",
            root / split)


def write_coco(root: str | Path, samples: Iterable[Sample], *, split: str = "train",
               write_images: bool = True) -> dict:
    """Write samples as a COCO panoptic dataset in the Cityscapes label space.

    Image ids are the samples' ``image_id`` strings (as Cityscapes' own panoptic JSON
    does); ``iscrowd``, ``area`` and ``bbox`` come from each target's segments.

    Args:
        write_images: also write the RGB images (skip when they are written elsewhere,
            e.g. by parallel workers, under ``root/<split>/<image_id>.png``).
    Returns:
        The JSON content written.
    """
    check_name("split", split)
    json_path, png_dir, image_dir = coco_paths(root, split)
    names: dict[str, str] = {}

    def results():
        for sample in samples:
            name = f"{sample.image_id}.png"
            if write_images:
                write_png(image_dir / name, sample.image)
            names[sample.image_id] = name
            yield sample.image_id, name, sample.target

    return write_coco_panoptic(json_path, png_dir, results(), CITYSCAPES, image_file_names=names)
