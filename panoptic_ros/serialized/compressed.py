"""JPEG and PNG ``CompressedImage`` data -> RGB, bounded by what the data can hold.

A compressed frame costs what its header declares, not what it weighs: libjpeg fills the
missing part of a cut-off JPEG with grey, so 631 bytes that declare 8000x8000 decode to a
192 MB image. Before anything is decoded the header's size must pass the side and pixel
limits, and the data must be long enough to encode that many pixels at all:

- JPEG: every 8x8 block of every scan costs at least one bit of entropy-coded data (a
  one-bit DC code; progressive AC bands can skip blocks by end-of-band runs), so a stream
  needs at least ``blocks / 8`` bytes (:func:`min_jpeg_bytes`); a stream without its end
  of image (EOI) marker is cut off;
- PNG: deflate codes at most 258 bytes in two bits (1032:1), so the IDAT data needs at
  least ``filtered rows / 1032`` bytes (:func:`min_png_bytes`); a file without ``IEND``
  is cut off.

Both bounds are far below what any real encoder writes (a flat grey 4:2:0 JPEG from
libjpeg is ~1 byte per 64 pixels, the bound 1 per 512), so they refuse only data that
cannot hold the image it declares. A frame that fails them is ``truncated``; data the
decoder then refuses or decodes to another size is ``corrupt_data``.

JPEG frames much larger than the model input are decoded at 1/2, 1/4 or 1/8 scale by
libjpeg's DCT scaling (``IMREAD_REDUCED_COLOR_*``), which skips most of the inverse DCT
and colour conversion work; the caller resizes results back to the frame's size.
"""
from __future__ import annotations

import cv2
import numpy as np

from panoptic_ros.serialized.decode_errors import (CORRUPT_DATA, EMPTY_DATA, FORMAT_MISMATCH, TOO_LARGE, TRUNCATED,
                                                   UNSUPPORTED_FORMAT, ZERO_SIZE, ImageDecodeError)

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
JPEG_MAGIC = b"\xff\xd8\xff"
# A 4096x2160 (DCI 4K) camera fits; a 2-core robot decodes such a JPEG in ~0.1 s.
DEFAULT_MAX_PIXELS = 4096 * 2160
_PNG_CHANNELS = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}  # colour type -> samples per pixel
_DEFLATE_MAX_RATIO = 1032
_REDUCED = ((8, cv2.IMREAD_REDUCED_COLOR_8), (4, cv2.IMREAD_REDUCED_COLOR_4), (2, cv2.IMREAD_REDUCED_COLOR_2))
_TAIL = 64  # bytes searched for the end marker (encoders may pad after it)


def check_size(width: int, height: int, max_side: int, max_pixels: int) -> None:
    """Refuse an empty image or one beyond the side or pixel limits (``ImageDecodeError``)."""
    if width <= 0 or height <= 0:
        raise ImageDecodeError(ZERO_SIZE, f"image is {width}x{height} pixels")
    if width > max_side or height > max_side:
        raise ImageDecodeError(TOO_LARGE, f"image is {width}x{height} pixels, above the "
                                          f"{max_side} pixel limit per side")
    if width * height > max_pixels:
        raise ImageDecodeError(TOO_LARGE, f"image is {width}x{height} = {width * height} pixels, above the "
                                          f"{max_pixels} pixel limit")


def compressed_format(text: str) -> str:
    """'jpeg' or 'png' from a CompressedImage format ('jpeg', 'rgb8; jpeg compressed bgr8')."""
    words = text.lower().replace(";", " ").split()
    found = {"jpeg" if w in ("jpeg", "jpg") else w for w in words} & {"jpeg", "png"}
    if len(found) != 1:
        raise ImageDecodeError(UNSUPPORTED_FORMAT, f"compressed format {text!r} is not jpeg or png")
    return found.pop()


def inspect_compressed(format_text: str, data: np.ndarray, *, max_side: int,
                       max_pixels: int = DEFAULT_MAX_PIXELS) -> tuple[str, int, int]:
    """Every check of :func:`decode_compressed` short of decoding (microseconds: the node
    runs it as frames arrive, so a bomb never takes a good frame's place in its slot).

    Returns:
        (``jpeg`` or ``png``, width, height) the header declares.
    Raises:
        ImageDecodeError: empty, unsupported, mislabelled, oversized or truncated data.
    """
    fmt = compressed_format(format_text)
    if data.size == 0:
        raise ImageDecodeError(EMPTY_DATA, "compressed image has no data")
    head = data[:8].tobytes()
    actual = "png" if head == PNG_SIGNATURE else "jpeg" if head[:3] == JPEG_MAGIC else None
    if actual is None:
        raise ImageDecodeError(CORRUPT_DATA, f"compressed data is neither JPEG nor PNG (starts with {head!r})")
    if actual != fmt:
        raise ImageDecodeError(FORMAT_MISMATCH, f"format says {format_text!r} but the data is {actual}")
    width, height, needed = _png_bounds(data) if actual == "png" else _jpeg_bounds(data)
    check_size(width, height, max_side, max_pixels)
    if data.size < needed:
        raise ImageDecodeError(TRUNCATED, f"{actual} data of {data.size} bytes cannot hold the {width}x{height} "
                                          f"image it declares (at least {needed} bytes)")
    end = b"IEND" if actual == "png" else b"\xff\xd9"
    if end not in data[-_TAIL:].tobytes():
        raise ImageDecodeError(TRUNCATED, f"{actual} data of {data.size} bytes is cut off (no end marker)")
    return actual, width, height


def decode_compressed(format_text: str, data: np.ndarray, *, max_side: int, max_pixels: int = DEFAULT_MAX_PIXELS,
                      min_size: tuple[int, int] | None = None) -> tuple[np.ndarray, tuple[int, int]]:
    """Decode JPEG or PNG data after checking it can hold the size it declares.

    Args:
        format_text: the message's ``format`` field.
        data: (N,) uint8, the compressed bytes.
        max_side, max_pixels: limits on the declared size.
        min_size: (H, W) the caller needs at least (a model input): a JPEG at least twice
            as large per side is decoded at the smallest 1/2, 1/4 or 1/8 scale that is not
            smaller. None decodes at full size.
    Returns:
        ((h, w, 3) uint8 RGB, (H, W) the declared size); ``(h, w)`` is ``(H, W)`` unless
        the JPEG was decoded at reduced scale (then ``ceil(H / s), ceil(W / s)``).
    Raises:
        ImageDecodeError: empty, unsupported, mislabelled, oversized, truncated or corrupt.
    """
    actual, width, height = inspect_compressed(format_text, data, max_side=max_side, max_pixels=max_pixels)
    scale, flag = _reduction(actual, (height, width), min_size)
    image = cv2.imdecode(data, flag)
    expected = (-(-height // scale), -(-width // scale))
    if image is None or image.shape[:2] != expected:
        raise ImageDecodeError(CORRUPT_DATA, f"{actual} data of {data.size} bytes does not decode")
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB), (height, width)


def _reduction(fmt: str, size: tuple[int, int], min_size: tuple[int, int] | None) -> tuple[int, int]:
    """(scale, cv2 imread flag): the coarsest JPEG DCT scaling that keeps ``min_size``."""
    if fmt == "jpeg" and min_size is not None:
        for scale, flag in _REDUCED:
            if size[0] // scale >= min_size[0] and size[1] // scale >= min_size[1]:
                return scale, flag
    return 1, cv2.IMREAD_COLOR


def min_png_bytes(width: int, height: int, depth: int, colour: int) -> int:
    """Fewest bytes of zlib data that can inflate to the filtered rows of such a PNG."""
    row = 1 + -(-width * _PNG_CHANNELS.get(colour, 1) * depth // 8)
    return height * row // _DEFLATE_MAX_RATIO


def min_jpeg_bytes(width: int, height: int) -> int:
    """Fewest entropy-coded bytes of a JPEG of that size: one bit per 8x8 block."""
    return -(-width // 8) * -(-height // 8) // 8


def _png_bounds(data: np.ndarray) -> tuple[int, int, int]:
    """(width, height, minimum data size) from the IHDR chunk."""
    if data.size < 26 or data[12:16].tobytes() != b"IHDR":
        raise ImageDecodeError(CORRUPT_DATA, "PNG data has no IHDR header")
    width, height = (int.from_bytes(data[i:i + 4].tobytes(), "big") for i in (16, 20))
    return width, height, min_png_bytes(width, height, int(data[24]), int(data[25]))


def _jpeg_bounds(data: np.ndarray) -> tuple[int, int, int]:
    """(width, height, minimum data size) from the first start-of-frame marker."""
    raw = data.tobytes()
    pos = 2
    while pos + 4 <= len(raw):
        if raw[pos] != 0xFF:
            break
        marker = raw[pos + 1]
        if marker == 0xFF:  # fill byte
            pos += 1
            continue
        if marker in (0x01, *range(0xD0, 0xD8)):  # markers without a length
            pos += 2
            continue
        length = int.from_bytes(raw[pos + 2:pos + 4], "big")
        if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):
            if pos + 9 > len(raw):
                break
            height = int.from_bytes(raw[pos + 5:pos + 7], "big")
            width = int.from_bytes(raw[pos + 7:pos + 9], "big")
            return width, height, pos + min_jpeg_bytes(width, height)
        pos += 2 + length
    raise ImageDecodeError(CORRUPT_DATA, "JPEG data has no readable frame header")
