"""``sensor_msgs/Image`` and ``CompressedImage`` as serialized bytes <-> numpy, without
cv_bridge and without ROS.

The PyPI ``cv-bridge`` is a ROS 1 repackage that breaks on numpy 2 and maps ``16UC1``
wrongly, so the conversion lives here. Decoding is zero-copy where the message allows it
(``np.frombuffer`` on ``msg.data``; row padding becomes a strided view); a non-native
byte order is the only case that copies.

:func:`from_serialized` reads a serialised ``Image`` or ``CompressedImage`` (as a
subscription with ``raw=True`` or a bag delivers it), leaving the pixel data as a view on
the bytes: rclpy's ``deserialize_message`` takes ~1.6 ms and rosbags' ``deserialize_cdr``
~0.75 ms for a 2048x1024 rgb8 frame because both copy the data; this takes microseconds.
:func:`image_bytes` and :func:`compressed_bytes` build serialised messages, copying the
pixels once. The decoders also take rclpy or rosbags message objects (same field names).

Every malformed message raises :class:`ImageDecodeError` whose ``cause`` is one of
:data:`~panoptic_ros.serialized.decode_errors.DECODE_CAUSES`, so a node can count
rejected frames by cause.
"""
from __future__ import annotations

import sys
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np

from panoptic_ros.serialized.cdr import CdrError, CdrReader, CdrWriter, Header
from panoptic_ros.serialized.compressed import DEFAULT_MAX_PIXELS, check_size, decode_compressed, inspect_compressed
from panoptic_ros.serialized.decode_errors import (CORRUPT_DATA, SIZE_MISMATCH, STEP_MISALIGNED, STEP_TOO_SMALL,
                                                   TRUNCATED, UNSUPPORTED_ENCODING, ImageDecodeError)

DEFAULT_MAX_SIDE = 8192  # pixels per side; DEFAULT_MAX_PIXELS bounds their product
IMAGE_TYPE = "sensor_msgs/msg/Image"
COMPRESSED_TYPE = "sensor_msgs/msg/CompressedImage"

# encoding -> (element dtype, channels)
ENCODINGS: dict[str, tuple[np.dtype, int]] = {
    "rgb8": (np.dtype(np.uint8), 3),
    "bgr8": (np.dtype(np.uint8), 3),
    "rgba8": (np.dtype(np.uint8), 4),
    "bgra8": (np.dtype(np.uint8), 4),
    "mono8": (np.dtype(np.uint8), 1),
    "mono16": (np.dtype(np.uint16), 1),
    "16UC1": (np.dtype(np.uint16), 1),
    "32SC1": (np.dtype(np.int32), 1),
    "32FC1": (np.dtype(np.float32), 1),
    "bayer_rggb8": (np.dtype(np.uint8), 1),
    "bayer_bggr8": (np.dtype(np.uint8), 1),
    "bayer_gbrg8": (np.dtype(np.uint8), 1),
    "bayer_grbg8": (np.dtype(np.uint8), 1),
}
# Encodings that hold a camera picture (the rest are depth or label images). OpenCV names a
# Bayer pattern by its second row's second and third pixels, hence rggb -> BayerBG.
_TO_RGB = {
    "rgb8": None,
    "bgr8": cv2.COLOR_BGR2RGB,
    "rgba8": cv2.COLOR_RGBA2RGB,
    "bgra8": cv2.COLOR_BGRA2RGB,
    "mono8": cv2.COLOR_GRAY2RGB,
    "mono16": cv2.COLOR_GRAY2RGB,
    "bayer_rggb8": cv2.COLOR_BayerBG2RGB,
    "bayer_bggr8": cv2.COLOR_BayerRG2RGB,
    "bayer_gbrg8": cv2.COLOR_BayerGR2RGB,
    "bayer_grbg8": cv2.COLOR_BayerGB2RGB,
}
PICTURE_ENCODINGS = tuple(_TO_RGB)

class ImageEncodeError(ValueError):
    """An array that does not fit the requested image encoding."""


def image_to_numpy(msg: Any, *, max_side: int = DEFAULT_MAX_SIDE, max_pixels: int = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """The pixels of an ``Image`` as numpy, zero-copy where possible.

    Args:
        msg: a :class:`RawImage`, or an rclpy or rosbags ``Image``.
        max_side: widths or heights above this are rejected as absurd.
        max_pixels: so are images of more pixels than this.
    Returns:
        (H, W) for one channel, else (H, W, C); dtype of the encoding in native byte
        order. A view on ``msg.data`` (read-only) unless the byte order had to change.
    Raises:
        ImageDecodeError: unsupported encoding, bad size, step or data length.
    """
    if msg.encoding not in ENCODINGS:
        raise ImageDecodeError(UNSUPPORTED_ENCODING,
                               f"image encoding {msg.encoding!r} is not supported "
                               f"(supported: {', '.join(ENCODINGS)})")
    dtype, channels = ENCODINGS[msg.encoding]
    height, width, step = int(msg.height), int(msg.width), int(msg.step)
    check_size(width, height, max_side, max_pixels)
    row_bytes = width * channels * dtype.itemsize
    if step < row_bytes:
        raise ImageDecodeError(STEP_TOO_SMALL, f"step {step} is below width {width} x "
                                               f"{channels * dtype.itemsize} bytes per pixel = {row_bytes}")
    if step % dtype.itemsize:
        raise ImageDecodeError(STEP_MISALIGNED, f"step {step} is not a multiple of the "
                                                f"{dtype.itemsize}-byte {msg.encoding} element")
    _check_length(len(msg.data), step * height, f"{height} rows x step {step}")
    big = bool(msg.is_bigendian)
    wire = dtype.newbyteorder(">" if big else "<") if dtype.itemsize > 1 else dtype
    rows = np.frombuffer(msg.data, dtype=np.uint8).reshape(height, step)[:, :row_bytes]
    # Padded rows stay a strided view: only the last axis must be contiguous to re-type it.
    pixels = rows.view(wire)
    pixels = pixels.reshape((height, width, channels) if channels > 1 else (height, width))
    if not wire.isnative:
        pixels = pixels.astype(dtype)
    return pixels


def check_pixels(pixels: np.ndarray, encoding: str) -> tuple[np.ndarray, int, int]:
    """``pixels`` in native byte order and C order, with the ``is_bigendian`` flag and
    ``step`` an image of ``encoding`` declares for them.

    Args:
        pixels: (H, W) or (H, W, C) array whose dtype and channels fit ``encoding``.
        encoding: one of :data:`ENCODINGS`.
    Raises:
        ImageEncodeError: unknown encoding, or shape/dtype that do not fit it.
    """
    if encoding not in ENCODINGS:
        raise ImageEncodeError(f"cannot encode {encoding!r}; supported: {', '.join(ENCODINGS)}")
    dtype, channels = ENCODINGS[encoding]
    shape_ok = pixels.ndim == 2 if channels == 1 else (pixels.ndim == 3 and pixels.shape[2] == channels)
    if not shape_ok or pixels.dtype.newbyteorder("=") != dtype:
        raise ImageEncodeError(f"{encoding} needs {channels} channel(s) of {dtype}, got "
                               f"{pixels.dtype} array of shape {pixels.shape}")
    array = np.ascontiguousarray(pixels, dtype=dtype.newbyteorder("="))
    is_bigendian = int(sys.byteorder == "big" and dtype.itemsize > 1)
    return array, is_bigendian, pixels.shape[1] * channels * dtype.itemsize


def _image_prefix(header: Any, height: int, width: int, encoding: str, is_bigendian: int, step: int,
                  data_size: int) -> bytes:
    """The serialised ``Image`` up to and including the pixel data's byte count."""
    writer = CdrWriter()
    writer.header(header)
    writer.u32(height)
    writer.u32(width)
    writer.string(encoding)
    writer.u8(is_bigendian)
    writer.u32(step)
    writer.u32(data_size)
    return writer.to_bytes()


def image_bytes(pixels: np.ndarray, encoding: str, header: Any) -> bytes:
    """A serialised ``sensor_msgs/Image`` holding ``pixels`` (copied once).

    Args:
        pixels: (H, W) or (H, W, C) array whose dtype and channels fit ``encoding``.
        encoding: one of :data:`ENCODINGS`.
        header: a ``std_msgs/Header`` (:class:`~panoptic_ros.serialized.cdr.Header` or rclpy's).
    Raises:
        ImageEncodeError: unknown encoding, or shape/dtype that do not fit it.
    """
    array, is_bigendian, step = check_pixels(pixels, encoding)
    prefix = _image_prefix(header, array.shape[0], array.shape[1], encoding, is_bigendian, step, array.nbytes)
    return b"".join([prefix, memoryview(array).cast("B")])


class ImageMessage:
    """A serialised ``sensor_msgs/Image`` whose pixels are written in place.

    For an image computed straight into its message (e.g. ``Predictor.predict``'s
    ``panoptic_out``): :attr:`pixels` is a writable (H, W[, C]) view into :attr:`data`, so
    the message needs no copy of the pixels to be serialised. :attr:`data` equals
    :func:`image_bytes` of the same pixels. The pixels start 64-byte aligned.

    Args:
        height, width: the image size.
        encoding: one of :data:`ENCODINGS`.
        header: a ``std_msgs/Header``.
    Raises:
        ImageEncodeError: unknown encoding.
    """

    ALIGNMENT = 64

    def __init__(self, height: int, width: int, encoding: str, header: Any):
        if encoding not in ENCODINGS:
            raise ImageEncodeError(f"cannot encode {encoding!r}; supported: {', '.join(ENCODINGS)}")
        dtype, channels = ENCODINGS[encoding]
        step = width * channels * dtype.itemsize
        is_bigendian = int(sys.byteorder == "big" and dtype.itemsize > 1)
        prefix = _image_prefix(header, height, width, encoding, is_bigendian, step, step * height)
        size = len(prefix) + step * height
        raw = np.empty(size + self.ALIGNMENT, np.uint8)
        start = -(raw.ctypes.data + len(prefix)) % self.ALIGNMENT
        self.data = raw[start:start + size]
        """(N,) uint8: the whole serialised message (CDR, encapsulation header included)."""
        self.data[:len(prefix)] = np.frombuffer(prefix, np.uint8)
        shape = (height, width, channels) if channels > 1 else (height, width)
        self.pixels = self.data[len(prefix):].view(dtype.newbyteorder("=")).reshape(shape)
        """(H, W[, C]) writable view of the pixel data, in native byte order."""


def compress(rgb: np.ndarray, fmt: str = "jpeg", *, quality: int = 90) -> np.ndarray:
    """(H, W, 3) uint8 RGB or (H, W) mono8 as JPEG or PNG data (1-D uint8)."""
    if fmt not in ("jpeg", "png"):
        raise ImageEncodeError(f"compressed format must be 'jpeg' or 'png', got {fmt!r}")
    if rgb.dtype != np.uint8 or not (rgb.ndim == 2 or (rgb.ndim == 3 and rgb.shape[2] == 3)):
        raise ImageEncodeError(f"expected (H, W, 3) or (H, W) uint8, got {rgb.dtype} {rgb.shape}")
    bgr = cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR) if rgb.ndim == 3 else rgb
    params = [cv2.IMWRITE_JPEG_QUALITY, quality] if fmt == "jpeg" else []
    ok, encoded = cv2.imencode(".jpg" if fmt == "jpeg" else ".png", bgr, params)
    if not ok:
        raise ImageEncodeError(f"OpenCV could not encode a {rgb.shape} image as {fmt}")
    return encoded.reshape(-1)


def compressed_bytes(rgb: np.ndarray, header: Any, fmt: str = "jpeg", *, quality: int = 90) -> bytes:
    """A serialised ``sensor_msgs/CompressedImage`` of ``rgb`` (see :func:`compress`)."""
    data = compress(rgb, fmt, quality=quality)
    writer = CdrWriter()
    writer.header(header)
    writer.string(fmt)
    writer.octets(data.data)
    return writer.to_bytes()


def compressed_to_rgb8(msg: Any, *, max_side: int = DEFAULT_MAX_SIDE,
                       max_pixels: int = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """Decode a JPEG or PNG ``CompressedImage`` to (H, W, 3) uint8 RGB.

    The declared format is checked against the data's magic bytes, and the size the header
    declares against the limits and against what the data can hold, before decoding
    (:mod:`panoptic_ros.serialized.compressed`): a decompression bomb is rejected unopened.

    Raises:
        ImageDecodeError: empty, unsupported, mislabelled, oversized, truncated or corrupt data.
    """
    data = np.frombuffer(msg.data, dtype=np.uint8)
    return decode_compressed(msg.format, data, max_side=max_side, max_pixels=max_pixels)[0]


@dataclass(frozen=True)
class RawImage:
    """The fields of a ``sensor_msgs/Image`` with ``data`` a view on the serialised bytes."""

    header: Header
    height: int
    width: int
    encoding: str
    is_bigendian: int
    step: int
    data: memoryview


@dataclass(frozen=True)
class RawCompressedImage:
    """The fields of a ``sensor_msgs/CompressedImage`` with ``data`` a view on the bytes."""

    header: Header
    format: str
    data: memoryview


def from_serialized(raw: bytes | memoryview, *, compressed: bool = False) -> RawImage | RawCompressedImage:
    """Read a serialised ``Image`` (or ``CompressedImage``) without copying its pixels.

    Raises:
        ImageDecodeError: ``CORRUPT_DATA`` when the bytes are not such a message.
    """
    try:
        reader = CdrReader(raw)
        header = reader.header()
        if compressed:
            return RawCompressedImage(header, reader.string(), reader.octets())
        height, width = reader.u32(), reader.u32()
        encoding = reader.string()
        is_bigendian = reader.u8()
        step = reader.u32()
        return RawImage(header, height, width, encoding, is_bigendian, step, reader.octets())
    except CdrError as exc:
        raise ImageDecodeError(CORRUPT_DATA, str(exc)) from None


def to_rgb8(msg: Any, *, max_side: int = DEFAULT_MAX_SIDE, max_pixels: int = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """A camera message as (H, W, 3) uint8 RGB (the node's input format).

    ``rgb8`` comes back as a zero-copy view; other colour and grey encodings are converted
    (``mono16`` keeps its high byte). Depth and label encodings are rejected.

    Raises:
        ImageDecodeError: any malformed message, or an encoding that is not a picture.
    """
    return camera_rgb8(msg, max_side=max_side, max_pixels=max_pixels)[0]


def check_frame(msg: Any, *, max_side: int = DEFAULT_MAX_SIDE, max_pixels: int = DEFAULT_MAX_PIXELS) -> None:
    """Every check of :func:`camera_rgb8` that needs no decoding or conversion (microseconds).

    Raises:
        ImageDecodeError: what :func:`camera_rgb8` would raise, except ``corrupt_data``
            found only by the decoder.
    """
    if hasattr(msg, "format"):
        inspect_compressed(msg.format, np.frombuffer(msg.data, dtype=np.uint8), max_side=max_side,
                           max_pixels=max_pixels)
        return
    _picture_pixels(msg, max_side=max_side, max_pixels=max_pixels)


def _picture_pixels(msg: Any, *, max_side: int, max_pixels: int) -> np.ndarray:
    """:func:`image_to_numpy` (a view: checks sizes, copies nothing) of a picture encoding."""
    if msg.encoding in ENCODINGS and msg.encoding not in _TO_RGB:
        raise ImageDecodeError(UNSUPPORTED_ENCODING, f"{msg.encoding} is a depth/label encoding, "
                                                     f"not a camera picture ({', '.join(_TO_RGB)})")
    return image_to_numpy(msg, max_side=max_side, max_pixels=max_pixels)


def camera_rgb8(msg: Any, *, max_side: int = DEFAULT_MAX_SIDE, max_pixels: int = DEFAULT_MAX_PIXELS,
                min_size: tuple[int, int] | None = None) -> tuple[np.ndarray, tuple[int, int]]:
    """:func:`to_rgb8`, except that a JPEG at least twice ``min_size`` (H, W) per side is
    decoded at reduced scale (see :func:`~panoptic_ros.serialized.compressed.decode_compressed`).

    Returns:
        ((h, w, 3) uint8 RGB, (H, W) the frame's size); ``(h, w) == (H, W)`` unless reduced.
    """
    if hasattr(msg, "format"):  # a CompressedImage
        data = np.frombuffer(msg.data, dtype=np.uint8)
        return decode_compressed(msg.format, data, max_side=max_side, max_pixels=max_pixels, min_size=min_size)
    pixels = _picture_pixels(msg, max_side=max_side, max_pixels=max_pixels)
    conversion = _TO_RGB[msg.encoding]
    if conversion is None:
        return pixels, pixels.shape[:2]
    if pixels.dtype == np.uint16:
        pixels = (pixels >> 8).astype(np.uint8)
    return cv2.cvtColor(np.ascontiguousarray(pixels), conversion), pixels.shape[:2]


def _check_length(actual: int, expected: int, what: str) -> None:
    if actual < expected:
        raise ImageDecodeError(TRUNCATED, f"data holds {actual} bytes, {what} need {expected}")
    if actual != expected:
        raise ImageDecodeError(SIZE_MISMATCH, f"data holds {actual} bytes, {what} are {expected}")
