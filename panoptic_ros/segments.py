"""Area and bounding box of every segment of a panoptic id map, in one vectorised pass.

Works on horizontal runs of equal ids, so the cost after one pass over the pixels is
proportional to the number of runs; no mask is made per segment. The id encodings stay
in :mod:`panoptic_ros.types`, which builds on this module; only the void id and the error
for malformed panoptic data are defined here, because both modules need them.
"""
from __future__ import annotations

import numpy as np

VOID = 0  # the panoptic id of unlabelled pixels


class PanopticFormatError(ValueError):
    """Panoptic data that contradicts itself (ids, segments, sizes, categories)."""


def segment_stats(panoptic: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Area and bounding box of every non-void id in a panoptic map.

    Args:
        panoptic: (H, W) non-negative integer ids.
    Returns:
        ids (K,) int64 ascending, areas (K,) int64, bboxes (K, 4) int64 as x, y, w, h.
    """
    if panoptic.ndim != 2 or panoptic.size == 0:
        raise PanopticFormatError(f"panoptic map must be a non-empty 2-D array, got shape {panoptic.shape}")
    rows, first_cols, last_cols, values = _horizontal_runs(panoptic)
    ids, inverse = np.unique(values, return_inverse=True)
    areas = np.bincount(inverse, weights=last_cols - first_cols + 1, minlength=len(ids)).astype(np.int64)
    x0 = np.full(len(ids), np.iinfo(np.int64).max, np.int64)
    y0 = x0.copy()
    x1 = np.full(len(ids), -1, np.int64)
    y1 = x1.copy()
    np.minimum.at(x0, inverse, first_cols)
    np.maximum.at(x1, inverse, last_cols)
    np.minimum.at(y0, inverse, rows)
    np.maximum.at(y1, inverse, rows)
    bboxes = np.stack([x0, y0, x1 - x0 + 1, y1 - y0 + 1], axis=1)
    keep = ids != VOID
    return ids[keep].astype(np.int64), areas[keep], bboxes[keep]


def _horizontal_runs(image: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Maximal horizontal runs of equal values, row-major.

    Returns:
        rows, first columns, last columns, values; each (R,).
    """
    width = image.shape[1]
    starts = np.ones(image.shape, dtype=bool)
    np.not_equal(image[:, 1:], image[:, :-1], out=starts[:, 1:])
    rows, first_cols = np.nonzero(starts)
    last_cols = np.empty_like(first_cols)
    last_cols[:-1] = first_cols[1:] - 1
    last_cols[:-1][rows[1:] != rows[:-1]] = width - 1
    last_cols[-1] = width - 1
    return rows.astype(np.int64), first_cols.astype(np.int64), last_cols.astype(np.int64), image[rows, first_cols]
