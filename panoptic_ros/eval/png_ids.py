"""Fast path for reading COCO panoptic PNGs: 8-bit RGB / RGBA, not interlaced.

Evaluating a 2048x1024 pair means decoding two 6 MB images; with zlib's inflate that is
most of the evaluator's time (``bench/eval_speed.py`` prints the split). Here the IDAT
stream is inflated with libdeflate (``deflate``), about 20x faster than zlib on these
flat label images, and the scanline filters (None, Sub, Up, Average, Paeth; PNG spec
section 9) are undone by a small compiled loop (numba) that also packs each pixel into
its id ``R + 256 G + 256² B`` in the same pass. Where few images are decoded, numba's
import and cache loading (about a second per process) cost more than they save: callers
then pass ``compiled=False`` and the filters are undone with numpy instead
(:mod:`panoptic_ros.eval.png_numpy`; same ids, slower per image).

:func:`png_to_ids` returns ``None`` for anything it does not handle (another colour type
or bit depth, interlacing, a damaged file, the libraries missing); the caller then decodes
with libspng, which also produces the error message for broken files.
"""
from __future__ import annotations

import functools
import struct
import sys
import zlib

import numpy as np

from panoptic_ros.eval.png_numpy import residual_words, unfilter_to_words
from panoptic_ros.serialized.compressed import PNG_SIGNATURE

CHANNELS = {2: 3, 6: 4}   # PNG colour type -> channels (truecolour, truecolour + alpha)


def parse_png(data: bytes) -> tuple[int, int, int, bytes] | None:
    """(height, width, channels, concatenated IDAT data) of an 8-bit RGB/RGBA PNG, else None.

    Chunk CRCs are checked for IHDR and IDAT; a mismatch returns None.
    """
    if not data.startswith(PNG_SIGNATURE):
        return None
    pos, header, parts = len(PNG_SIGNATURE), None, []
    while pos + 12 <= len(data):
        length, kind = struct.unpack_from(">I4s", data, pos)
        end = pos + 12 + length
        if end > len(data):
            return None
        if kind in (b"IHDR", b"IDAT"):
            body = data[pos + 8:pos + 8 + length]
            if zlib.crc32(data[pos + 4:pos + 8 + length]) != struct.unpack_from(">I", data, end - 4)[0]:
                return None
            if kind == b"IHDR":
                header = body
            else:
                parts.append(body)
        elif kind == b"IEND":
            break
        pos = end
    if header is None or len(header) != 13 or not parts:
        return None
    width, height, depth, colour, compression, filtering, interlace = struct.unpack(">IIBBBBB", header)
    if depth != 8 or colour not in CHANNELS or compression or filtering or interlace or not width or not height:
        return None
    return height, width, CHANNELS[colour], b"".join(parts)


def _paeth(a, b, c):  # pragma: no cover - compiled by numba
    pa, pb, pc = abs(b - c), abs(a - c), abs(a + b - 2 * c)
    return a if pa <= pb and pa <= pc else (b if pb <= pc else c)


def _unfilter_rgb_row(row, prev, cur, ids, kind):  # pragma: no cover - compiled by numba
    """One RGB scanline: ``cur`` = ``row`` ((W * 3,) uint8) with filter ``kind`` undone
    against ``prev``; ``ids`` ((W,) int32) gets each pixel's ``R + 256 G + 256² B``.

    A separate pixel loop per filter type (the type is fixed along a row) with the left
    pixel's channels in scalars: Sub, Average and Paeth depend on them, and the three
    channel chains then run side by side instead of through memory (about 5x faster than
    one loop that branches on the type per pixel)."""
    l0 = l1 = l2 = np.int32(0)             # left pixel (zero left of the first one)
    if kind == 0:
        for j in range(ids.size):
            k = 3 * j
            l0, l1, l2 = np.int32(row[k]), np.int32(row[k + 1]), np.int32(row[k + 2])
            cur[k], cur[k + 1], cur[k + 2] = l0, l1, l2
            ids[j] = l0 | (l1 << 8) | (l2 << 16)
    elif kind == 1:
        for j in range(ids.size):
            k = 3 * j
            l0 = (np.int32(row[k]) + l0) & 0xFF
            l1 = (np.int32(row[k + 1]) + l1) & 0xFF
            l2 = (np.int32(row[k + 2]) + l2) & 0xFF
            cur[k], cur[k + 1], cur[k + 2] = l0, l1, l2
            ids[j] = l0 | (l1 << 8) | (l2 << 16)
    elif kind == 2:
        for j in range(ids.size):
            k = 3 * j
            l0 = (np.int32(row[k]) + np.int32(prev[k])) & 0xFF
            l1 = (np.int32(row[k + 1]) + np.int32(prev[k + 1])) & 0xFF
            l2 = (np.int32(row[k + 2]) + np.int32(prev[k + 2])) & 0xFF
            cur[k], cur[k + 1], cur[k + 2] = l0, l1, l2
            ids[j] = l0 | (l1 << 8) | (l2 << 16)
    elif kind == 3:
        for j in range(ids.size):
            k = 3 * j
            l0 = (np.int32(row[k]) + ((l0 + np.int32(prev[k])) >> 1)) & 0xFF
            l1 = (np.int32(row[k + 1]) + ((l1 + np.int32(prev[k + 1])) >> 1)) & 0xFF
            l2 = (np.int32(row[k + 2]) + ((l2 + np.int32(prev[k + 2])) >> 1)) & 0xFF
            cur[k], cur[k + 1], cur[k + 2] = l0, l1, l2
            ids[j] = l0 | (l1 << 8) | (l2 << 16)
    else:
        c0 = c1 = c2 = np.int32(0)         # upper-left pixel
        for j in range(ids.size):
            k = 3 * j
            b0, b1, b2 = np.int32(prev[k]), np.int32(prev[k + 1]), np.int32(prev[k + 2])
            l0 = (np.int32(row[k]) + _paeth(l0, b0, c0)) & 0xFF
            l1 = (np.int32(row[k + 1]) + _paeth(l1, b1, c1)) & 0xFF
            l2 = (np.int32(row[k + 2]) + _paeth(l2, b2, c2)) & 0xFF
            c0, c1, c2 = b0, b1, b2
            cur[k], cur[k + 1], cur[k + 2] = l0, l1, l2
            ids[j] = l0 | (l1 << 8) | (l2 << 16)


def _unfilter_row(row, prev, cur, kind, channels):  # pragma: no cover - compiled by numba
    """Any channel count, byte by byte (RGBA label PNGs are rare): ``cur`` = ``row`` with
    filter ``kind`` undone against ``prev``."""
    for i in range(row.size):
        a = np.int32(cur[i - channels]) if i >= channels else np.int32(0)
        b = np.int32(prev[i])
        c = np.int32(prev[i - channels]) if i >= channels else np.int32(0)
        x = np.int32(row[i])
        if kind == 1:
            x += a
        elif kind == 2:
            x += b
        elif kind == 3:
            x += (a + b) >> 1
        elif kind == 4:
            x += _paeth(a, b, c)
        cur[i] = x & 0xFF


def _unfilter_to_ids(raw, height, width, channels, ids):  # pragma: no cover - compiled by numba
    """Undo the scanline filters of ``raw`` ((H, W * C + 1) uint8, filter byte first) and
    write (H, W) int32 ids; returns False on an unknown filter type."""
    prev = np.zeros(width * channels, np.uint8)
    cur = np.zeros(width * channels, np.uint8)
    for y in range(height):
        kind = raw[y, 0]
        if kind > 4:
            return False
        if channels == 3:
            _unfilter_rgb_row(raw[y, 1:], prev, cur, ids[y], kind)
        else:
            _unfilter_row(raw[y, 1:], prev, cur, kind, channels)
            for j in range(width):
                k = j * channels
                ids[y, j] = np.int32(cur[k]) | (np.int32(cur[k + 1]) << 8) | (np.int32(cur[k + 2]) << 16)
        prev, cur = cur, prev
    return True


@functools.lru_cache(maxsize=1)
def _compiled_unfilter():
    """The compiled unfilter, or None without ``numba``.

    Imported on first use: numba takes a while to import and only evaluation needs it.
    Compiled functions are cached on disk next to this file (``cache=True``); where that
    folder is not writable numba compiles once per process (a few seconds)."""
    global _paeth, _unfilter_row, _unfilter_rgb_row
    try:
        from numba import njit
    except ImportError:  # pragma: no cover - it is in requirements-runtime.txt
        return None
    _paeth = njit(cache=True, inline="always")(_paeth)
    _unfilter_row = njit(cache=True, nogil=True)(_unfilter_row)
    _unfilter_rgb_row = njit(cache=True, nogil=True)(_unfilter_rgb_row)
    return njit(cache=True, nogil=True)(_unfilter_to_ids)


@functools.lru_cache(maxsize=1)
def _inflater():
    """libdeflate's Python module, or None without ``deflate``."""
    try:
        import deflate
    except ImportError:  # pragma: no cover - it is in requirements-runtime.txt
        return None
    return deflate


def _inflate(data: bytes) -> tuple[int, int, int, np.ndarray] | None:
    """(height, width, channels, scanlines) of an 8-bit RGB/RGBA PNG; the scanlines
    ((H * (W * C + 1) + 1,) uint8, each after its filter byte) with one spare byte at the
    end. None where the file is not one, is damaged, or libdeflate is missing."""
    deflate = _inflater()
    parsed = parse_png(data) if deflate is not None else None
    if parsed is None:
        return None
    height, width, channels, stream = parsed
    size = height * (width * channels + 1)
    try:
        inflated = deflate.zlib_decompress(stream, size)
    except deflate.DeflateError:
        return None
    if len(inflated) != size:
        return None
    raw = np.empty(size + 1, np.uint8)
    raw[:size] = np.frombuffer(inflated, np.uint8)
    return height, width, channels, raw


def png_to_ids(data: bytes, *, compiled: bool = True) -> np.ndarray | None:
    """(H, W) int32 ids ``R + 256 G + 256² B`` of PNG bytes, or None (see module doc).

    Args:
        compiled: undo the filters with the compiled loop (fast per image, about a second
            to load once per process), else with numpy (no load; None for files with
            Average rows, and on big-endian machines).
    """
    unfilter = _compiled_unfilter() if compiled else None
    if compiled and unfilter is None:
        return None
    inflated = _inflate(data)
    if inflated is None:
        return None
    height, width, channels, raw = inflated
    if compiled:
        ids = np.empty((height, width), np.int32)
        return ids if unfilter(raw[:-1].reshape(height, -1), height, width, channels, ids) else None
    if sys.byteorder != "little":
        return None
    kinds = raw[:-1].reshape(height, -1)[:, 0]
    words = unfilter_to_words(kinds, residual_words(raw, height, width, channels))
    return None if words is None else words.view(np.int32)
