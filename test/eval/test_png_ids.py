"""The fast COCO panoptic PNG path: every scanline filter, RGB and RGBA, split IDAT
streams, and the files it must hand to libspng (other formats, damage)."""
from __future__ import annotations

import io
import struct
import zlib

import numpy as np
import pyspng
import pytest
from PIL import Image

from panoptic_ros.eval.coco_format import CocoFormatError, read_panoptic_png
from panoptic_ros.eval.png_ids import parse_png, png_to_ids


def _chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def _filtered(pixels: np.ndarray, filters: list[int]) -> bytes:
    """Scanlines of ``pixels`` (H, W, C) uint8, row y filtered with ``filters[y]`` (PNG 9.2),
    each preceded by its filter byte: an encoder written from the spec, independent of the
    decoder under test."""
    height, width, channels = pixels.shape
    rows = pixels.reshape(height, width * channels).astype(np.int32)
    out = bytearray()
    for y, kind in enumerate(filters):
        x = rows[y]
        b = rows[y - 1] if y else np.zeros_like(x)
        a = np.concatenate([np.zeros(channels, np.int32), x[:-channels]])
        c = np.concatenate([np.zeros(channels, np.int32), b[:-channels]])
        if kind == 4:
            p = a + b - c
            pa, pb, pc = np.abs(p - a), np.abs(p - b), np.abs(p - c)
            pred = np.where((pa <= pb) & (pa <= pc), a, np.where(pb <= pc, b, c))
        else:
            pred = [np.zeros_like(x), a, b, (a + b) // 2][kind]
        out.append(kind)
        out += ((x - pred) % 256).astype(np.uint8).tobytes()
    return bytes(out)


def encode_png(pixels: np.ndarray, filters: list[int], *, idat_parts: int = 1, colour: int | None = None,
               interlace: int = 0) -> bytes:
    height, width, channels = pixels.shape
    colour = {3: 2, 4: 6}[channels] if colour is None else colour
    stream = zlib.compress(_filtered(pixels, filters), 6)
    cut = np.linspace(0, len(stream), idat_parts + 1).astype(int)
    header = struct.pack(">IIBBBBB", width, height, 8, colour, 0, 0, interlace)
    return (b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", header)
            + b"".join(_chunk(b"IDAT", stream[s:e]) for s, e in zip(cut[:-1], cut[1:])) + _chunk(b"IEND", b""))


def label_image(rng: np.random.Generator, height: int, width: int, channels: int) -> np.ndarray:
    """Flat regions of random ids plus noisy pixels: both kinds of content label PNGs have."""
    pixels = np.repeat(rng.integers(0, 256, (height, 1, channels), dtype=np.uint8), width, axis=1)
    pixels[:, width // 2:] = rng.integers(0, 256, channels, dtype=np.uint8)
    noise = rng.random((height, width)) < 0.3
    pixels[noise] = rng.integers(0, 256, (int(noise.sum()), channels), dtype=np.uint8)
    return pixels


def ids_of(pixels: np.ndarray) -> np.ndarray:
    p = pixels.astype(np.int32)
    return p[..., 0] + 256 * p[..., 1] + 65536 * p[..., 2]


@pytest.mark.parametrize("compiled", [True, False])
@pytest.mark.parametrize("channels", [3, 4])
@pytest.mark.parametrize("filters", ["none", "sub", "up", "average", "paeth", "mixed", "mixed-no-average"])
def test_every_filter_decodes_to_the_ids_libspng_gives(channels, filters, compiled, tmp_path):
    rng = np.random.default_rng(channels * 10 + len(filters))
    height, width = 9, 17
    pixels = label_image(rng, height, width, channels)
    mixed = [int(k) for k in rng.integers(0, 5, height)]
    kinds = {"none": [0] * height, "sub": [1] * height, "up": [2] * height, "average": [3] * height,
             "paeth": [4] * height, "mixed": mixed, "mixed-no-average": [k if k != 3 else 4 for k in mixed]}[filters]
    data = encode_png(pixels, kinds, idat_parts=3 if filters.startswith("mixed") else 1)
    assert np.array_equal(pyspng.load(data), pixels)       # the hand encoder writes valid PNGs
    ids = png_to_ids(data, compiled=compiled)
    if not compiled and 3 in kinds:    # the numpy unfilter leaves Average rows to libspng
        assert ids is None
        path = tmp_path / "average.png"
        path.write_bytes(data)
        ids = read_panoptic_png(path, compiled=False)
    assert ids is not None and ids.dtype == np.int32
    assert np.array_equal(ids, ids_of(pixels))


@pytest.mark.parametrize("compiled", [True, False])
@pytest.mark.parametrize("channels", [3, 4])
def test_files_written_by_pil_and_opencv_decode_exactly(compiled, channels):
    import cv2

    pixels = label_image(np.random.default_rng(1), 64, 96, channels)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    assert np.array_equal(png_to_ids(buffer.getvalue(), compiled=compiled), ids_of(pixels))
    ok, encoded = cv2.imencode(".png", np.ascontiguousarray(pixels[..., [2, 1, 0, 3][:channels]]))
    assert ok and np.array_equal(png_to_ids(encoded.tobytes(), compiled=compiled), ids_of(pixels))


def test_other_formats_are_left_to_libspng(tmp_path):
    rng = np.random.default_rng(2)
    pixels = label_image(rng, 6, 8, 3)
    interlaced = encode_png(pixels, [0] * 6, interlace=1)
    grey = encode_png(pixels[..., :1], [0] * 6, colour=0)
    palette = io.BytesIO()
    Image.fromarray(pixels).convert("P").save(palette, format="PNG")
    for data in (interlaced, grey, palette.getvalue(), b"not a png"):
        assert png_to_ids(data) is None and png_to_ids(data, compiled=False) is None
    # a palette PNG still reads, through libspng
    path = tmp_path / "palette.png"
    path.write_bytes(palette.getvalue())
    expected = np.asarray(Image.open(io.BytesIO(palette.getvalue())).convert("RGB"))
    assert np.array_equal(read_panoptic_png(path), ids_of(expected))


def test_damage_is_refused_and_reported_by_name(tmp_path):
    pixels = label_image(np.random.default_rng(3), 6, 8, 3)
    good = encode_png(pixels, [1] * 6)
    height, width, channels, stream = parse_png(good)
    assert (height, width, channels) == (6, 8, 3)
    bad_crc = bytearray(good)
    bad_crc[-20] ^= 0xFF                                   # inside the IDAT chunk
    bad_filter = _png_with_raw(pixels, filter_byte=7)
    truncated = good[:len(good) // 2]
    for data in (bytes(bad_crc), bad_filter, truncated):
        assert png_to_ids(data) is None and png_to_ids(data, compiled=False) is None
    path = tmp_path / "damaged.png"
    path.write_bytes(truncated)               # libspng then words the error, naming the file
    with pytest.raises(CocoFormatError, match="damaged.png"):
        read_panoptic_png(path)


def _png_with_raw(pixels: np.ndarray, filter_byte: int) -> bytes:
    """A PNG whose first scanline carries an undefined filter type."""
    height, width, channels = pixels.shape
    raw = bytearray(_filtered(pixels, [0] * height))
    raw[0] = filter_byte
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", header) + _chunk(b"IDAT", zlib.compress(bytes(raw)))
            + _chunk(b"IEND", b""))
