"""PNG scanline filters undone with numpy, for label images (COCO panoptic PNGs).

The alternative to the compiled loop of :mod:`panoptic_ros.eval.png_ids` where few images
are decoded: numba's import and the loading of its cached machine code cost about a
second per process (several on the first run after an install, which compiles), more
than decoding a few dozen images this way; per image this path is slower. The filters
(PNG spec section 9) are undone on whole rows of pixel words ``R + 256 G + 256² B`` (one
little-endian 32-bit read per pixel through a strided view, the byte after the pixel
masked off), exploiting that label images are flat:

- None rows are their residuals; Sub rows (all at once) are running sums of their
  residuals, per byte lane, which change only at the few pixels whose residual is not
  zero: the sums are taken over those pixels and repeated over the runs between them.
- Up rows, run by run: running sums down the columns from the row above the run, per
  byte lane (the lanes spread 21 bits apart in 64-bit words, so that one addition adds
  all three without carries between them).
- Paeth rows: where the row above is flat (``b == c``) Paeth predicts the left byte, so
  the row is a running sum there too; only at the bytes where the row above changes does
  the left byte's value matter. Those (a few dozen per row) are walked in Python; one
  running sum then fills the row.
- Average rows (PIL's and OpenCV's writers practically never choose them for label
  images) have no such shortcut: :func:`unfilter_to_words` returns None for them.
"""
from __future__ import annotations

import numpy as np

NONE, SUB, UP, AVERAGE, PAETH = range(5)   # PNG filter types
_RGB = np.uint32(0xFFFFFF)


def residual_words(raw: np.ndarray, height: int, width: int, channels: int) -> np.ndarray:
    """(H, W) uint32: each pixel's filtered bytes R, G, B as ``R + 256 G + 256² B``.

    Args:
        raw: (H * (W * C + 1) + 1,) uint8, the inflated scanlines (each after its filter
            byte) and one spare byte, which the last pixel's 32-bit read reaches.
    """
    words = np.ndarray((height, width), dtype="<u4", buffer=raw, offset=1,
                       strides=(width * channels + 1, channels))
    residuals = np.ascontiguousarray(words)   # numpy copies unaligned words fast, computes on them slowly
    residuals &= _RGB
    return residuals


def _lane_bytes(words: np.ndarray) -> np.ndarray:
    """(..., 3) uint8: the R, G, B bytes of (...) uint32 words (a copy)."""
    return words.astype("<u4").view(np.uint8).reshape(*words.shape, 4)[..., :3]


def _words_of_bytes(lanes: np.ndarray) -> np.ndarray:
    """(...) uint32 words ``R + 256 G + 256² B`` of (..., 3) uint8 lanes."""
    lanes = lanes.astype(np.uint32)
    return lanes[..., 0] | (lanes[..., 1] << 8) | (lanes[..., 2] << 16)


def _unsub_rows(residuals: np.ndarray) -> np.ndarray:
    """Sub rows: (N, W) uint32 residual words -> pixel words (running byte-lane sums).

    A row's value changes only at its pixels with a non-zero residual (the events), and at
    its start (0 left of the first pixel): the running sums are taken over the events of
    all rows at once, restarted at each row, and repeated over the runs between them."""
    rows, width = residuals.shape
    flat = residuals.ravel()
    starts = np.arange(rows) * width
    is_event = flat != 0
    is_event[starts] = True
    events = np.flatnonzero(is_event)
    lanes = _lane_bytes(flat[events]).astype(np.int64)
    totals = np.cumsum(lanes, axis=0)
    first = np.searchsorted(events, starts)          # each row's first event: its start
    before = totals[first] - lanes[first]            # sums of the rows above, to take off
    row_of_event = np.repeat(np.arange(rows), np.diff(np.append(first, events.size)))
    values = _words_of_bytes(((totals - before[row_of_event]) & 0xFF).astype(np.uint8))
    return np.repeat(values, np.diff(np.append(events, flat.size))).reshape(rows, width)


def _paeth(a: int, b: int, c: int) -> int:
    """Paeth's prediction from the left, above and above-left bytes (PNG spec 9.4)."""
    pa, pb, pc = abs(b - c), abs(a - c), abs(a + b - 2 * c)
    return a if pa <= pb and pa <= pc else (b if pb <= pc else c)


def _unpaeth_row(residuals: np.ndarray, above: np.ndarray) -> np.ndarray:
    """One Paeth row: (W,) uint32 words from its residual words and the row above's.

    Per byte lane, Paeth adds the left byte wherever the row above is flat (``b == c``):
    the row is a running sum there. The other bytes (the breaks), and each lane's first
    (its left byte is 0), are walked in order in Python: a break's value needs the byte
    before it, which is the previous break's value plus the residuals between them. A
    running sum of the residuals, each break's replaced by its step from the byte before
    it, then gives the row. Lanes are laid end to end, so one pass does all three."""
    r = _lane_bytes(residuals).T.ravel().astype(np.int64)        # (3 W,) lane-major
    b = _lane_bytes(above).T
    c = np.zeros_like(b)
    c[:, 1:] = b[:, :-1]
    is_break = b != c
    is_break[:, 0] = True
    breaks = np.flatnonzero(is_break.ravel())
    run_sums = (np.add.reduceat(r, breaks) - r[breaks]).tolist()
    width = residuals.size
    steps = r.copy()
    before = 0                                                     # the byte before, lane-major
    walk = zip(breaks.tolist(), r[breaks].tolist(), b.ravel()[breaks].tolist(), c.ravel()[breaks].tolist(), run_sums)
    for i, ri, bi, ci, run in walk:
        value = (ri + _paeth(0 if i % width == 0 else before, bi, ci)) & 0xFF
        steps[i] = value - before
        before = (value + run) & 0xFF
    lanes = (np.cumsum(steps) & 0xFF).astype(np.uint8).reshape(3, width).T
    return _words_of_bytes(lanes)


def _spread(words: np.ndarray) -> np.ndarray:
    """uint32 words -> int64 with the byte lanes 21 bits apart: sums of up to 8000 such
    values keep every lane's total in its own field."""
    words = words.astype(np.int64)
    return (words & 0xFF) | ((words & 0xFF00) << 13) | ((words & 0xFF0000) << 26)


def _gather(spread: np.ndarray) -> np.ndarray:
    """Inverse of :func:`_spread`, each lane taken mod 256: uint32 words."""
    return ((spread & 0xFF) | ((spread >> 13) & 0xFF00) | ((spread >> 26) & 0xFF0000)).astype(np.uint32)


def _unup_rows(above: np.ndarray, residuals: np.ndarray) -> np.ndarray:
    """A run of consecutive Up rows: (N, W) words from the row above the run (W,) and the
    run's residual words (N, W): running byte-lane sums down the columns."""
    sums = _spread(residuals)
    sums[0] += _spread(above)
    for k in range(1, len(sums)):   # row by row: numpy's cumsum down columns is far slower
        sums[k] += sums[k - 1]
    return _gather(sums)


def unfilter_to_words(kinds: np.ndarray, residuals: np.ndarray) -> np.ndarray | None:
    """(H, W) uint32 pixel words from per-row filter types (H,) and residual words
    (H, W); None where a row has filter Average or an unknown type.

    None and Sub rows need nothing above them and are done first, all at once; then, top
    to bottom, runs of Up rows and single Paeth rows, which need the row above."""
    if np.any((kinds == AVERAGE) | (kinds > PAETH)):
        return None
    pixels = np.empty_like(residuals)
    plain = np.flatnonzero(kinds == NONE)
    pixels[plain] = residuals[plain]
    sub = np.flatnonzero(kinds == SUB)
    if sub.size:
        pixels[sub] = _unsub_rows(residuals[sub])
    zero = np.zeros(residuals.shape[1], np.uint32)
    changes = np.flatnonzero(np.diff(kinds)) + 1
    for start, stop in zip([0, *changes.tolist()], [*changes.tolist(), kinds.size]):
        above = pixels[start - 1] if start else zero
        if kinds[start] == UP:
            pixels[start:stop] = _unup_rows(above, residuals[start:stop])
        elif kinds[start] == PAETH:
            for y in range(start, stop):
                pixels[y] = _unpaeth_row(residuals[y], pixels[y - 1] if y else zero)
    return pixels
