"""PanopticResult -> ROS messages (the node's output topics).

Pure conversions: each takes a result (and the header of the input image, which every
output carries unchanged) and returns a message; the node decides what to publish.

- ``~/panoptic`` ``Image 32SC1``: ``category_id * 1000 + instance``, 0 = VOID.
- ``~/semantic`` ``Image mono8``: train indices of the label space, 255 = VOID.
- ``~/instances`` ``Image mono16``: :meth:`PanopticResult.instance_map` (1..N, 0 = none).
- ``~/overlay`` ``Image rgb8``: segment colours over the input image.
- ``~/detections`` ``vision_msgs/Detection2DArray``: one detection per segment.
- ``~/label_info`` ``vision_msgs/LabelInfo``: the semantic image's value -> class name.

The label images can be computed on the model-resolution result (``low_res``, what the
Predictor resized) and upsampled with nearest-neighbour: per-pixel lookups commute with
OpenCV's nearest resize, so the pixels are identical and the lookups touch 4-16x fewer
pixels. Only used when the image is at least as large as the model input (then no
segment vanishes in the resize and instance numbers stay the same).
"""
from __future__ import annotations

from typing import Mapping

import cv2
import numpy as np
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from sensor_msgs.msg import Image
from std_msgs.msg import Header
from vision_msgs.msg import (BoundingBox2D, Detection2D, Detection2DArray, LabelInfo,
                             ObjectHypothesisWithPose, VisionClass)

from panoptic_ros.labels import IGNORE_INDEX, LabelSpace
from panoptic_ros.ros.image_codec import numpy_to_image
from panoptic_ros.types import PanopticResult
from panoptic_ros.viz import colorize_panoptic, panoptic_overlay

VOID_CLASS_NAME = "void"


def panoptic_image(result: PanopticResult, header: Header) -> Image:
    """``32SC1`` panoptic ids (``category_id * 1000 + instance``)."""
    return numpy_to_image(result.panoptic, "32SC1", header)


def _source(result: PanopticResult, low_res: PanopticResult | None) -> PanopticResult:
    """The result to compute a per-pixel map on: ``low_res`` when upsampling it is exact."""
    if low_res is None or low_res.height > result.height or low_res.width > result.width:
        return result
    return low_res


def _upsample(image: np.ndarray, result: PanopticResult) -> np.ndarray:
    if image.shape[:2] == result.panoptic.shape:
        return image
    return cv2.resize(image, (result.width, result.height), interpolation=cv2.INTER_NEAREST_EXACT)


def semantic_image(result: PanopticResult, label_space: LabelSpace, header: Header,
                   *, low_res: PanopticResult | None = None) -> Image:
    """``mono8`` train indices of ``label_space``; 255 marks VOID.

    Args:
        low_res: the same segmentation at the model's resolution (see the module docstring).
    """
    semantic = _source(result, low_res).semantic_map(label_space)
    return numpy_to_image(_upsample(semantic, result), "mono8", header)


def instance_image(result: PanopticResult, header: Header, *, low_res: PanopticResult | None = None) -> Image:
    """``mono16`` instance index: 1..N over non-crowd thing segments, 0 elsewhere."""
    return numpy_to_image(_upsample(_source(result, low_res).instance_map(), result), "mono16", header)


def overlay_image(rgb: np.ndarray, result: PanopticResult, label_space: LabelSpace, header: Header,
                  *, alpha: float = 0.5, low_res: PanopticResult | None = None) -> Image:
    """``rgb8`` picture of the segments blended over the (H, W, 3) uint8 input image."""
    colors = _upsample(colorize_panoptic(_source(result, low_res), label_space), result)
    return numpy_to_image(panoptic_overlay(rgb, result, label_space, alpha=alpha, colors=colors), "rgb8", header)


def detections(result: PanopticResult, label_space: LabelSpace, header: Header,
               *, include_stuff: bool = False) -> Detection2DArray:
    """One ``Detection2D`` per segment (thing segments always, stuff if asked).

    ``id`` is the panoptic id as a decimal string (it matches the ``~/panoptic`` pixels),
    ``results[0].hypothesis`` holds the category name and the segment score, and the box
    is in pixels with pixel ``i`` spanning ``[i, i + 1)``: a segment covering columns
    ``x .. x + w - 1`` has ``center.x = x + w / 2`` and ``size_x = w``.
    """
    out = Detection2DArray(header=header)
    for seg in result.segments:
        if not (seg.is_thing or include_stuff):
            continue
        x, y, w, h = seg.bbox
        det = Detection2D(header=header, id=str(seg.id))
        hypothesis = ObjectHypothesisWithPose()
        hypothesis.hypothesis.class_id = label_space.category(seg.category_id).name
        hypothesis.hypothesis.score = float(seg.score)
        det.results.append(hypothesis)
        det.bbox = BoundingBox2D(size_x=float(w), size_y=float(h))
        det.bbox.center.position.x = x + w / 2.0
        det.bbox.center.position.y = y + h / 2.0
        out.detections.append(det)
    return out


def label_info(label_space: LabelSpace, header: Header, *, threshold: float = 0.0) -> LabelInfo:
    """The ``~/semantic`` values: train index -> category name, and 255 -> ``void``."""
    msg = LabelInfo(header=header, threshold=float(threshold))
    msg.class_map = [VisionClass(class_id=i, class_name=c.name) for i, c in enumerate(label_space.categories)]
    msg.class_map.append(VisionClass(class_id=IGNORE_INDEX, class_name=VOID_CLASS_NAME))
    return msg


def diagnostic_array(header: Header, *, name: str, hardware_id: str, level: bytes, message: str,
                     values: Mapping[str, object]) -> DiagnosticArray:
    """One ``DiagnosticStatus`` with ``values`` as key/value strings (floats to 3 decimals)."""
    pairs = [KeyValue(key=k, value=f"{v:.3f}" if isinstance(v, float) else str(v)) for k, v in values.items()]
    status = DiagnosticStatus(level=level, name=name, message=message, hardware_id=hardware_id, values=pairs)
    return DiagnosticArray(header=header, status=[status])
