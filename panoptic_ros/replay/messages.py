"""Serialized camera and panoptic messages <-> arrays for the replay, and the topics it
records.

Pure: camera frames and panoptic images are read from their CDR bytes by
:mod:`panoptic_ros.serialized.image`, the same reader the node uses on what it receives,
and the outputs the replay writes come from :mod:`panoptic_ros.outputs`, which builds
the node's messages as bytes without rclpy. The offline replay and the scoring therefore
run without ROS; only the live runner (:mod:`panoptic_ros.replay.live`) talks DDS.
"""
from __future__ import annotations

import numpy as np

from panoptic_ros.outputs import LABEL_INFO_TYPE, OUTPUT_TYPES
from panoptic_ros.replay.bag import GT_ENCODING
from panoptic_ros.serialized.image import (COMPRESSED_TYPE, IMAGE_TYPE, ImageDecodeError, compressed_bytes,
                                           from_serialized, image_bytes, image_to_numpy, to_rgb8)

# The node's outputs a replay records (~/instances is left out: ~/panoptic holds it).
RECORDED_OUTPUTS = ("panoptic", "semantic", "overlay", "detections")


def output_topics(node_topic: str) -> dict[str, str]:
    """The recorded topics of the node ``node_topic`` (``/ns/name``) -> message type;
    ``<node_topic>/label_info`` is latched (transient local)."""
    topics = {f"{node_topic}/{name}": OUTPUT_TYPES[name] for name in RECORDED_OUTPUTS}
    return {**topics, f"{node_topic}/label_info": LABEL_INFO_TYPE}


def decode_camera(data: bytes, msgtype: str, *, max_side: int = 8192) -> tuple[np.ndarray, object]:
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
    return image_bytes(rgb, "rgb8", header) if target == IMAGE_TYPE else compressed_bytes(rgb, header)
