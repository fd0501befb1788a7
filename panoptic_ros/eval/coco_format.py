"""COCO panoptic format on disk: one JSON (images, annotations, categories) and one PNG per
image whose colours encode segment ids (``R + 256 G + 256² B``).

Readers raise :class:`CocoFormatError` naming the offending file; writers create folders
and write the JSON last (atomically), so a folder with a JSON is complete.
"""
from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator

import cv2
import numpy as np
import pyspng

from panoptic_ros.eval.png_ids import png_to_ids
from panoptic_ros.jsonfile import read_json
from panoptic_ros.labels import LabelSpace
from panoptic_ros.serialized.compressed import PNG_SIGNATURE
from panoptic_ros.types import PanopticResult, id2rgb, rgb2id


class CocoFormatError(ValueError):
    """A COCO panoptic file that is missing or malformed; the message names the file."""


@dataclass(frozen=True)
class CocoImage:
    """One entry of a COCO panoptic dataset: its annotation and where its PNG lies."""

    image_id: int | str
    file_name: str              # annotation PNG name inside the panoptic folder
    segments_info: list[dict]
    height: int | None = None
    width: int | None = None
    image_file_name: str | None = None   # the source image's name from ``images``, if listed


def read_panoptic_json(path: str | Path, require_categories: bool = True) -> dict:
    """Read and check a COCO panoptic JSON (``annotations`` and ``categories`` lists).

    Args:
        path: the JSON file.
        require_categories: whether a ``categories`` list must be present (prediction
            files in the COCO results format may lack it).
    """
    path = Path(path)
    data = read_json(path, CocoFormatError)
    if not isinstance(data, dict):
        raise CocoFormatError(f"{path}: expected a JSON object at the top level")
    for key in ("annotations", "categories") if require_categories else ("annotations",):
        if not isinstance(data.get(key), list):
            raise CocoFormatError(f"{path}: missing or invalid {key!r} list")
    for i, ann in enumerate(data["annotations"]):
        if not isinstance(ann, dict) or not {"image_id", "file_name", "segments_info"} <= set(ann):
            raise CocoFormatError(f"{path}: annotations[{i}] lacks image_id, file_name or segments_info")
        for seg in ann["segments_info"]:
            if not isinstance(seg, dict) or "id" not in seg or "category_id" not in seg:
                raise CocoFormatError(f"{path}: a segment of {ann['file_name']} lacks id or category_id")
    return data


def read_bgr(path: str | Path, kind: str = "image") -> np.ndarray:
    """(H, W, 3) uint8 BGR of an image file (grey images are expanded to 3 channels).

    Raises:
        CocoFormatError: the file is missing or not a readable ``kind``.
    """
    path = Path(path)
    if not path.is_file():
        raise CocoFormatError(f"{path}: file not found")
    bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if bgr is None:
        raise CocoFormatError(f"{path}: not a readable {kind}")
    return bgr


def read_rgb(path: str | Path) -> np.ndarray:
    """(H, W, 3) uint8 RGB of an image file; see :func:`read_bgr`."""
    return np.ascontiguousarray(read_bgr(path)[..., ::-1])


def read_panoptic_png(path: str | Path, *, compiled: bool = True) -> np.ndarray:
    """(H, W) int32 segment ids of a COCO panoptic PNG.

    Evaluation reads two 2-megapixel PNGs per image and decoding is most of its time:
    8-bit RGB/RGBA files take the fast path of :mod:`panoptic_ros.eval.png_ids` (libdeflate
    + a compiled unfilter that packs ids in the same pass, or with ``compiled=False`` the
    numpy unfilter, which costs nothing to load: for a few images); anything else, and any
    file that path does not accept, is decoded by libspng (``pyspng``), which also words
    the error for damaged files. ``bench/eval_speed.py`` prints the decoding share.
    """
    path = Path(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise CocoFormatError(f"{path}: file not found") from None
    except OSError as exc:
        raise CocoFormatError(f"{path}: cannot read ({exc.strerror or exc})") from None
    ids = png_to_ids(data, compiled=compiled)
    if ids is not None:
        return ids
    _check_bit_depth(data, path)
    try:
        rgba = pyspng.load(data, format="RGBA")
    except Exception:  # pyspng raises plain RuntimeError/ValueError for any bad data
        raise CocoFormatError(f"{path}: not a readable PNG") from None
    if rgba.dtype != np.uint8 or rgba.ndim != 3:
        raise CocoFormatError(f"{path}: not an 8-bit colour PNG")
    if sys.byteorder != "little":
        return rgb2id(rgba[..., :3])
    # Same ids as rgb2id without its three int32 temporaries: the bytes R, G, B, A of a
    # pixel read as a little-endian uint32 are R + 256 G + 256² B + 256³ A; the mask drops A.
    ids = rgba.view(np.uint32)[..., 0]
    ids &= 0xFFFFFF
    return ids.view(np.int32)


def _check_bit_depth(data: bytes, path: Path) -> None:
    """Refuse PNGs whose samples are not 8 bits: libspng's RGBA8 output would keep only the
    high byte of 16-bit samples (and scale 1/2/4-bit ones), and ids are 8-bit R, G, B."""
    if len(data) >= 26 and data.startswith(PNG_SIGNATURE) and data[12:16] == b"IHDR":
        depth, colour = data[24], data[25]
        if depth != 8 and colour != 3:  # palette entries are 8-bit whatever the index width
            raise CocoFormatError(f"{path}: {depth}-bit PNG; panoptic PNGs must have 8-bit samples "
                                  "(R + 256 G + 256^2 B ids)")


def write_panoptic_png(path: str | Path, ids: np.ndarray) -> None:
    """Write (H, W) segment ids as a COCO panoptic PNG."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if not cv2.imwrite(str(path), np.ascontiguousarray(id2rgb(ids)[..., ::-1])):
        raise CocoFormatError(f"{path}: could not write PNG")


def iter_coco_images(json_path: str | Path) -> Iterator[CocoImage]:
    """Entries of a COCO panoptic JSON, with image sizes where ``images`` gives them."""
    data = read_panoptic_json(json_path)
    images = {img.get("id"): img for img in data.get("images", []) if isinstance(img, dict)}
    for ann in data["annotations"]:
        img = images.get(ann["image_id"], {})
        yield CocoImage(ann["image_id"], ann["file_name"], list(ann["segments_info"]),
                        img.get("height"), img.get("width"), img.get("file_name"))


def load_result(entry: CocoImage, folder: str | Path, label_space: LabelSpace) -> PanopticResult:
    """The :class:`PanopticResult` of one entry (its PNG read from ``folder``)."""
    png = Path(folder) / entry.file_name
    ids = read_panoptic_png(png)
    if entry.height is not None and ids.shape != (entry.height, entry.width):
        raise CocoFormatError(f"{png}: size {ids.shape[1]}x{ids.shape[0]} differs from the JSON's "
                              f"{entry.width}x{entry.height}")
    try:
        return PanopticResult.from_coco(id2rgb(ids), entry.segments_info, label_space, source=str(png))
    except ValueError as exc:
        raise CocoFormatError(str(exc)) from None


def write_coco_panoptic(
    json_path: str | Path,
    png_folder: str | Path,
    results: Iterable[tuple[int | str, str, PanopticResult]],
    label_space: LabelSpace,
    image_file_names: dict | None = None,
) -> dict:
    """Write results as a COCO panoptic dataset (PNG per image, JSON last).

    Args:
        json_path: the JSON to write.
        png_folder: folder for the PNGs.
        results: (image_id, png file name, result) per image.
        label_space: categories listed in the JSON.
        image_file_names: optional image_id -> source image file name for ``images``.
    Returns:
        The JSON content written.
    """
    images, annotations = [], []
    for image_id, file_name, result in results:
        _, ann = result.to_coco(image_id, file_name)
        write_panoptic_png(Path(png_folder) / file_name, result.panoptic)
        annotations.append(ann)
        source = (image_file_names or {}).get(image_id, Path(file_name).with_suffix(".jpg").name)
        images.append({"id": image_id, "file_name": source, "height": result.height, "width": result.width})
    data = {"images": images, "annotations": annotations, "categories": label_space.coco_categories()}
    from panoptic_ros.checkpoint import atomic_write_bytes  # here: checkpoint imports torch

    atomic_write_bytes(Path(json_path), json.dumps(data).encode())
    return data
