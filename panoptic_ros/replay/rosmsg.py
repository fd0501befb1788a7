"""Serialized ROS messages <-> arrays for the replay, with the node's own conversions.

The replay's one contact with ROS message types: camera frames and panoptic images are
read from their CDR bytes and decoded by :mod:`panoptic_ros.ros.image_codec` (exactly what
the node does with what it receives), and the offline runner builds its outputs with
:mod:`panoptic_ros.ros.messages` (what the node publishes), serialized with rclpy. No rclpy
context or node is involved.
"""
from __future__ import annotations

import numpy as np
from rclpy.serialization import deserialize_message, serialize_message
from sensor_msgs.msg import CompressedImage, Image
from std_msgs.msg import Header

from panoptic_ros.labels import LabelSpace
from panoptic_ros.replay.bag import COMPRESSED_TYPE, GT_ENCODING, IMAGE_TYPE
from panoptic_ros.ros import messages
from panoptic_ros.ros.image_codec import (ImageDecodeError, from_serialized, image_to_numpy, numpy_to_compressed,
                                          numpy_to_image, to_rgb8)
from panoptic_ros.types import PanopticResult

CAMERA_TYPES = {IMAGE_TYPE: Image, COMPRESSED_TYPE: CompressedImage}
# The node's recorded outputs: name (``~/<name>``) -> message type.
OUTPUT_TYPES = {
    "panoptic": IMAGE_TYPE,
    "semantic": IMAGE_TYPE,
    "overlay": IMAGE_TYPE,
    "detections": "vision_msgs/msg/Detection2DArray",
}
LABEL_INFO_TYPE = "vision_msgs/msg/LabelInfo"


def output_topics(node_topic: str) -> dict[str, str]:
    """The recorded topics of the node ``node_topic`` (``/ns/name``) -> message type;
    ``<node_topic>/label_info`` is latched (transient local)."""
    topics = {f"{node_topic}/{name}": msgtype for name, msgtype in OUTPUT_TYPES.items()}
    return {**topics, f"{node_topic}/label_info": LABEL_INFO_TYPE}


def decode_camera(data: bytes, msgtype: str, *, max_side: int = 8192) -> tuple[np.ndarray, Header]:
    """A serialized camera message -> ((H, W, 3) uint8 RGB, its header).

    Raises:
        ImageDecodeError: the message does not decode (its ``cause`` says why).
    """
    msg = from_serialized(data, compressed=msgtype == COMPRESSED_TYPE)
    return to_rgb8(msg, max_side=max_side), msg.header


def decode_panoptic(data: bytes, source: str) -> np.ndarray:
    """A serialized 32SC1 ``Image`` -> (H, W) int32 panoptic ids.

    Raises:
        ImageDecodeError: malformed, or not 32SC1 (``source`` names the topic).
    """
    msg = from_serialized(data)
    if msg.encoding != GT_ENCODING:
        raise ImageDecodeError("unsupported_encoding", f"{source}: panoptic image must be {GT_ENCODING}, "
                                                       f"got {msg.encoding!r}")
    return np.ascontiguousarray(image_to_numpy(msg))


def convert_camera(data: bytes, msgtype: str, target: str) -> bytes:
    """A serialized camera message as ``target`` type (rgb8 Image or JPEG CompressedImage),
    for a node that subscribes to the other type."""
    if msgtype == target:
        return data
    rgb, header = decode_camera(data, msgtype)
    msg = numpy_to_image(rgb, "rgb8", header) if target == IMAGE_TYPE else numpy_to_compressed(rgb, header=header)
    return serialize_message(msg)


def output_messages(rgb: np.ndarray, result: PanopticResult, label_space: LabelSpace, header: Header,
                    *, low_res: PanopticResult | None = None, overlay_alpha: float = 0.5,
                    stuff_detections: bool = False) -> dict[str, bytes]:
    """The node's outputs for one frame, serialized: :data:`OUTPUT_TYPES` name -> CDR bytes.

    Args:
        low_res: the result at model resolution (``Predictor.last_model_result``), which
            the node computes its label images on.
    """
    msgs = {
        "panoptic": messages.panoptic_image(result, header),
        "semantic": messages.semantic_image(result, label_space, header, low_res=low_res),
        "overlay": messages.overlay_image(rgb, result, label_space, header, alpha=overlay_alpha, low_res=low_res),
        "detections": messages.detections(result, label_space, header, include_stuff=stuff_detections),
    }
    return {name: serialize_message(msg) for name, msg in msgs.items()}


def label_info_message(label_space: LabelSpace, stamp_ns: int, *, threshold: float = 0.0) -> bytes:
    """The node's ``~/label_info`` (train index -> class name), serialized."""
    header = Header()
    header.stamp.sec, header.stamp.nanosec = divmod(stamp_ns, 1_000_000_000)
    return serialize_message(messages.label_info(label_space, header, threshold=threshold))


def label_info_names(data: bytes) -> list[str]:
    """Class names of a serialized ``LabelInfo`` in class-id order, without ``void``."""
    from vision_msgs.msg import LabelInfo

    msg = deserialize_message(bytes(data), LabelInfo)
    return [c.class_name for c in sorted(msg.class_map, key=lambda c: c.class_id)
            if c.class_name != messages.VOID_CLASS_NAME]
