"""PanopticResult -> the node's output messages, serialized (CDR bytes).

The one place that decides what the node publishes: the node hands these bytes to its
publishers (rclpy's ``Publisher.publish`` takes serialized bytes) and the offline replay
writes the same bytes into its output bag. Built with :mod:`panoptic_ros.serialized`, so
this module imports neither rclpy nor any ``*_msgs`` package: the offline replay uses it
without ROS. Each output carries the header of the input image unchanged.

- ``~/panoptic`` ``Image 32SC1``: ``category_id * 1000 + instance``, 0 = VOID.
- ``~/semantic`` ``Image mono8``: train indices of the label space, 255 = VOID.
- ``~/instances`` ``Image mono16``: :meth:`PanopticResult.instance_map` (1..N, 0 = none).
- ``~/overlay`` ``Image rgb8``: segment colours over the input image.
- ``~/detections`` ``vision_msgs/Detection2DArray``: one detection per segment.
- ``~/label_info`` ``vision_msgs/LabelInfo``: the semantic image's value -> class name.

The label images can be computed on the model-resolution result (``low_res``, what the
Predictor resized) and upsampled with the same nearest-neighbour mapping: per-pixel lookups
commute with it, so the pixels are identical and the lookups touch 4-16x fewer
pixels. Only used when the image is at least as large as the model input (then no
segment vanishes in the resize and instance numbers stay the same). The overlay's outline
and VOID masks come from the model resolution too (:func:`_overlay_masks`).
"""
from __future__ import annotations

from functools import lru_cache
from typing import Any, Iterable, Iterator

import cv2
import numpy as np

from panoptic_ros.labels import IGNORE_INDEX, LabelSpace
from panoptic_ros.serialized.cdr import CdrWriter
from panoptic_ros.serialized.image import IMAGE_TYPE, image_bytes
from panoptic_ros.types import PanopticResult
from panoptic_ros.viz import colorize_panoptic, panoptic_overlay

VOID_CLASS_NAME = "void"
DETECTIONS_TYPE = "vision_msgs/msg/Detection2DArray"
LABEL_INFO_TYPE = "vision_msgs/msg/LabelInfo"
# The per-frame outputs, in the order they are built and published: ~/<name> -> type.
OUTPUT_TYPES = {"panoptic": IMAGE_TYPE, "semantic": IMAGE_TYPE, "instances": IMAGE_TYPE, "overlay": IMAGE_TYPE,
                "detections": DETECTIONS_TYPE}
# The nearest-neighbour mapping of PanopticResult.resize (centre-aligned): label images
# upsampled from the model resolution must pick the same source pixels.
_NEAREST = cv2.INTER_NEAREST_EXACT
_IDENTITY_ORIENTATION = (0.0, 0.0, 0.0, 1.0)  # geometry_msgs/Quaternion default (x, y, z, w)
_ZERO_COVARIANCE = (0.0,) * 36


def output_messages(result: PanopticResult, image: np.ndarray, header: Any, *, which: Iterable[str],
                    label_space: LabelSpace, low_res: PanopticResult | None = None, overlay_alpha: float = 0.5,
                    stuff_detections: bool = False) -> Iterator[tuple[str, bytes]]:
    """The outputs ``which`` of one frame, each built when the caller asks for the next one
    (so a publisher can send the first before the rest are built).

    Args:
        result: the segmentation at the image's size.
        image: (H, W, 3) uint8 RGB input (for the overlay).
        header: the input's ``std_msgs/Header`` (rclpy's or :class:`~panoptic_ros.serialized.cdr.Header`).
        which: names among :data:`OUTPUT_TYPES`.
        label_space: the result's categories.
        low_res: the result at model resolution (``Predictor.last_model_result``).
        overlay_alpha: weight of the segment colours in ``~/overlay``.
        stuff_detections: also list stuff segments in ``~/detections``.
    Yields:
        ``(name, CDR bytes)`` in :data:`OUTPUT_TYPES` order.
    """
    wanted = set(which)
    unknown = wanted - set(OUTPUT_TYPES)
    if unknown:
        raise ValueError(f"unknown outputs {sorted(unknown)}; choose among {', '.join(OUTPUT_TYPES)}")
    builders = {
        "panoptic": lambda: panoptic_image(result, header),
        "semantic": lambda: semantic_image(result, label_space, header, low_res=low_res),
        "instances": lambda: instance_image(result, header, low_res=low_res),
        "overlay": lambda: overlay_image(image, result, label_space, header, alpha=overlay_alpha, low_res=low_res),
        "detections": lambda: detections(result, label_space, header, include_stuff=stuff_detections),
    }
    for name in OUTPUT_TYPES:
        if name in wanted:
            yield name, builders[name]()


def panoptic_image(result: PanopticResult, header: Any) -> bytes:
    """``32SC1`` panoptic ids (``category_id * 1000 + instance``)."""
    return image_bytes(result.panoptic, "32SC1", header)


def _source(result: PanopticResult, low_res: PanopticResult | None) -> PanopticResult:
    """The result to compute a per-pixel map on: ``low_res`` when it is smaller and
    upsampling it is exact; ``result`` itself at the same size (nothing to save there, and
    the overlay's masks are cheaper computed on the map than upsampled)."""
    if low_res is None or low_res.height > result.height or low_res.width > result.width:
        return result
    return result if low_res.panoptic.shape == result.panoptic.shape else low_res


def _upsample(image: np.ndarray, result: PanopticResult) -> np.ndarray:
    """(h, w[, 3]) -> ``result``'s (H, W[, 3]) with the nearest mapping of ``PanopticResult.resize``."""
    if image.shape[:2] == result.panoptic.shape:
        return image
    size = (result.width, result.height)
    if image.ndim == 3 and image.shape[2] == 3:  # OpenCV moves 4-byte pixels ~2.5x faster than 3-byte ones
        rgba = cv2.resize(cv2.cvtColor(image, cv2.COLOR_RGB2RGBA), size, interpolation=_NEAREST)
        return cv2.cvtColor(rgba, cv2.COLOR_RGBA2RGB)
    return cv2.resize(image, size, interpolation=_NEAREST)


def semantic_image(result: PanopticResult, label_space: LabelSpace, header: Any,
                   *, low_res: PanopticResult | None = None) -> bytes:
    """``mono8`` train indices of ``label_space``; 255 marks VOID.

    Args:
        low_res: the same segmentation at the model's resolution (see the module docstring).
    """
    semantic = _source(result, low_res).semantic_map(label_space)
    return image_bytes(_upsample(semantic, result), "mono8", header)


def instance_image(result: PanopticResult, header: Any, *, low_res: PanopticResult | None = None) -> bytes:
    """``mono16`` instance index: 1..N over non-crowd thing segments, 0 elsewhere."""
    return image_bytes(_upsample(_source(result, low_res).instance_map(), result), "mono16", header)


def overlay_image(rgb: np.ndarray, result: PanopticResult, label_space: LabelSpace, header: Any,
                  *, alpha: float = 0.5, low_res: PanopticResult | None = None) -> bytes:
    """``rgb8`` picture of the segments blended over the (H, W, 3) uint8 input image."""
    source = _source(result, low_res)
    colors = _upsample(colorize_panoptic(source, label_space), result)
    void, edges = _overlay_masks(source, result) if source is not result else (None, None)
    overlay = panoptic_overlay(rgb, result, label_space, alpha=alpha, colors=colors, void=void, edges=edges)
    return image_bytes(overlay, "rgb8", header)


def _overlay_masks(low: PanopticResult, result: PanopticResult) -> tuple[np.ndarray, np.ndarray]:
    """(H, W) uint8 VOID and outline masks of ``result`` (nonzero = set), computed on
    ``low`` (the same map before its nearest-neighbour upsampling to ``result``'s size).

    An outline pixel of :func:`~panoptic_ros.viz.segment_boundaries` differs from its right
    (or lower) neighbour. After a nearest upsampling two neighbours differ only where they
    come from two neighbouring source columns (rows) that differ: so the source's
    right/lower-neighbour flags, upsampled, and kept in the columns (rows) where the source
    index steps, are exactly the outlines of the big map. One small uint8 code image is
    upsampled instead of comparing the full-size int32 map twice.
    """
    pan = low.panoptic
    code = np.zeros(pan.shape, np.uint8)
    code[:, :-1] = pan[:, 1:] != pan[:, :-1]                      # bit 0: right neighbour differs
    code[:-1] |= (pan[1:] != pan[:-1]).view(np.uint8) << 1        # bit 1: lower neighbour differs
    code |= (pan == 0).view(np.uint8) << 2                        # bit 2: VOID
    big = cv2.resize(code, (result.width, result.height), interpolation=_NEAREST)
    edges = cv2.bitwise_and(big, _outline_bits(pan.shape, (result.height, result.width)))
    return cv2.bitwise_and(big, 4), edges


@lru_cache(maxsize=1)  # one frame size at a time: a burst of larger frames must not stay cached
def _outline_bits(low_shape: tuple[int, int], shape: tuple[int, int]) -> np.ndarray:
    """(H, W) uint8: bit 0 where the source column steps to the right, bit 1 where the
    source row steps down (OpenCV's own nearest mapping, read by resizing indices)."""
    def steps(low: int, size: int) -> np.ndarray:
        index = cv2.resize(np.arange(low, dtype=np.int32)[None], (size, 1), interpolation=_NEAREST)[0]
        return np.append(index[1:] != index[:-1], False)

    cols, rows = steps(low_shape[1], shape[1]), steps(low_shape[0], shape[0])
    return cols[None, :].astype(np.uint8) | (rows[:, None].astype(np.uint8) << 1)


def detections(result: PanopticResult, label_space: LabelSpace, header: Any, *, include_stuff: bool = False) -> bytes:
    """``Detection2DArray`` with one ``Detection2D`` per segment (things always, stuff if asked).

    ``id`` is the panoptic id as a decimal string (it matches the ``~/panoptic`` pixels),
    ``results[0].hypothesis`` holds the category name and the segment score (the pose is
    the identity with zero covariance), and the box is in pixels with pixel ``i`` spanning
    ``[i, i + 1)``: a segment covering columns ``x .. x + w - 1`` has ``center.x = x + w / 2``
    and ``size_x = w``.
    """
    segments = [s for s in result.segments if s.is_thing or include_stuff]
    w = CdrWriter()
    w.header(header)
    w.u32(len(segments))
    for seg in segments:
        x, y, width, height = seg.bbox
        w.header(header)
        w.u32(1)  # results: one ObjectHypothesisWithPose
        w.string(label_space.category(seg.category_id).name)
        w.f64(float(seg.score))
        w.f64s((0.0, 0.0, 0.0, *_IDENTITY_ORIENTATION, *_ZERO_COVARIANCE))  # PoseWithCovariance
        w.f64s((x + width / 2.0, y + height / 2.0, 0.0, float(width), float(height)))  # BoundingBox2D
        w.string(str(seg.id))
    return w.to_bytes()


def label_info(label_space: LabelSpace, header: Any, *, threshold: float = 0.0) -> bytes:
    """``LabelInfo``: the ``~/semantic`` values, train index -> category name and 255 -> ``void``."""
    classes = [*((i, c.name) for i, c in enumerate(label_space.categories)), (IGNORE_INDEX, VOID_CLASS_NAME)]
    w = CdrWriter()
    w.header(header)
    w.u32(len(classes))
    for class_id, name in classes:
        w.u16(class_id)
        w.string(name)
    w.f32(float(threshold))
    return w.to_bytes()

