"""Isolated twins: two identical things side by side on a plain street.

In a SynthStreet scene, twins (one sprite drawn twice at one depth) still differ in what
surrounds them: other objects, building facades, kerbs. A network without coordinate
channels can learn to tell them apart by that context. :func:`isolate_twins` removes it:
it keeps one twin and pastes two copies of it, a gap apart and centred about the image's
vertical axis, onto a background whose every row is one colour and one stuff class (the
row's median colour and most common stuff class in the source scene). The two copies then
differ only in where they are, which is what PanoNet's coordinate channels encode (the
paper's Fig. 5).
"""
from __future__ import annotations

import numpy as np

from panoptic_ros.labels import CITYSCAPES
from panoptic_ros.sample import Sample
from panoptic_ros.types import LABEL_DIVISOR, PanopticResult


def plain_rows(sample: Sample) -> tuple[np.ndarray, np.ndarray]:
    """Each row's median stuff colour and most common stuff id.

    Returns:
        colours (H, 3) uint8 and ids (H,) int32; rows without stuff pixels take the
        nearest row that has some (rows below first).
    """
    pan, image = sample.target.panoptic, sample.image
    is_stuff = (pan > 0) & ~CITYSCAPES.is_thing_of_category_id[pan // LABEL_DIVISOR]
    height = pan.shape[0]
    colours = np.zeros((height, 3), np.uint8)
    ids = np.zeros(height, np.int32)
    known = np.zeros(height, bool)
    for y in range(height):
        row = is_stuff[y]
        if row.any():
            colours[y] = np.median(image[y, row], axis=0).astype(np.uint8)
            values, counts = np.unique(pan[y, row], return_counts=True)
            ids[y], known[y] = values[np.argmax(counts)], True
    if not known.any():
        raise ValueError(f"{sample.image_id}: no stuff pixels to build a plain background from")
    rows = np.flatnonzero(known)
    nearest = rows[np.abs(rows[None, :] - np.arange(height)[:, None]).argmin(axis=1)]
    return colours[nearest], ids[nearest]


def copies_fit(thing_width: int, gap_share: float, image_width: int) -> bool:
    """Whether two copies ``thing_width`` wide and their gap (``gap_share`` of that width,
    at least 4 pixels) fit in 80 % of ``image_width``."""
    return 2 * thing_width + max(4, round(gap_share * thing_width)) <= 0.8 * image_width


def isolate_twins(sample: Sample, segment_id: int, gap_share: float = 0.5) -> Sample:
    """Two copies of thing ``segment_id`` side by side on a plain background.

    Args:
        sample: a scene whose segment ``segment_id`` is a thing instance.
        segment_id: the thing to copy (its mask and pixels, at its own rows).
        gap_share: the gap between the copies as a share of the thing's width (at least
            4 pixels).
    Returns:
        A sample of the same size: rows of one colour and one stuff class, and the two
        copies as instances 1 (left) and 2 (right) of the thing's category, placed
        symmetrically about the centre column. ``image_id`` gets ``_isolated``.
    Raises:
        ValueError: the segment is not a thing instance, or two copies do not fit in 80 %
            of the width.
    """
    segment = sample.target.segment(segment_id)
    if not segment.is_thing or segment.iscrowd:
        raise ValueError(f"{sample.image_id}: segment {segment_id} is not a thing instance")
    x, y, w, h = segment.bbox
    width = sample.image.shape[1]
    gap = max(4, round(gap_share * w))
    if not copies_fit(w, gap_share, width):
        raise ValueError(f"{sample.image_id}: two copies of segment {segment_id} ({w} px wide) "
                         f"do not fit in 80 % of {width} px")
    mask = sample.target.panoptic[y:y + h, x:x + w] == segment_id
    pixels = sample.image[y:y + h, x:x + w]
    colours, ids = plain_rows(sample)
    image = np.repeat(colours[:, None, :], width, axis=1)
    panoptic = np.repeat(ids[:, None], width, axis=1)
    left = (width - 2 * w - gap) // 2
    for instance, x0 in ((1, left), (2, left + w + gap)):
        image[y:y + h, x0:x0 + w][mask] = pixels[mask]
        panoptic[y:y + h, x0:x0 + w][mask] = segment.category_id * LABEL_DIVISOR + instance
    target = PanopticResult.from_panoptic_map(panoptic, CITYSCAPES)
    return Sample(image, target, sample.image_id + "_isolated")
