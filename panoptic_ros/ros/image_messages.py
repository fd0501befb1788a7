"""numpy -> rclpy ``sensor_msgs/Image`` and ``CompressedImage`` message objects.

The node itself receives and publishes serialized bytes (:mod:`panoptic_ros.serialized.image`,
:mod:`panoptic_ros.outputs`); message objects are for code that talks to typed publishers
(test probes, benchmarks). Encoding copies the array once into the ``array.array`` that
rclpy keeps as ``msg.data`` (assigning ``bytes`` would copy twice).
"""
from __future__ import annotations

import array

import numpy as np
from sensor_msgs.msg import CompressedImage, Image
from std_msgs.msg import Header

from panoptic_ros.serialized.image import check_pixels, compress


def numpy_to_image(pixels: np.ndarray, encoding: str, header: Header | None = None) -> Image:
    """An ``Image`` holding ``pixels`` (copied once into the message).

    Args:
        pixels: (H, W) or (H, W, C) array whose dtype and channels fit ``encoding``.
        encoding: one of :data:`panoptic_ros.serialized.image.ENCODINGS`.
        header: stamp and frame_id to carry (default: an empty header).
    Raises:
        ImageEncodeError: unknown encoding, or shape/dtype that do not fit it.
    """
    contiguous, is_bigendian, step = check_pixels(pixels, encoding)
    data = array.array("B")
    data.frombytes(contiguous.data.cast("B"))
    # check_fields=True makes the data setter keep our array.array instead of copying it.
    msg = Image(check_fields=True)
    msg.header = header if header is not None else Header()
    msg.height, msg.width, msg.encoding = contiguous.shape[0], contiguous.shape[1], encoding
    msg.is_bigendian, msg.step = is_bigendian, step
    msg.data = data
    return msg


def numpy_to_compressed(rgb: np.ndarray, fmt: str = "jpeg", *, quality: int = 90,
                        header: Header | None = None) -> CompressedImage:
    """Compress (H, W, 3) uint8 RGB or (H, W) mono8 as JPEG or PNG."""
    encoded = compress(rgb, fmt, quality=quality)
    msg = CompressedImage(header=header if header is not None else Header(), format=fmt)
    msg.data = array.array("B", encoded.tobytes())
    return msg
