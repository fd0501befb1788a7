"""Training targets of PanoNet and CIAE, per image, from a (transformed) panoptic target.

Pure numpy, vectorised: every map is built by sampling the panoptic id map on a grid and
looking ids up in small per-image tables; no per-segment masks are made.

Sampling grid. A map of stride ``s`` has ``ceil(H / s) x ceil(W / s)`` cells (what
stride-2 convolutions with "same" padding produce); cell ``(i, j)`` takes the label of
pixel ``(s//2 + i*s, s//2 + j*s)``, its centre. Cells whose centre falls outside the image
(only when ``s`` does not divide the size) are VOID.

Coordinates. Boxes are continuous pixel coordinates where pixel ``(row, col)`` covers
``[col, col+1) x [row, row+1)``, i.e. a segment with COCO box ``(x, y, w, h)`` has
``x0, y0, x1, y1 = x, y, x + w, y + h``. An FCOS location is the point
``(s//2 + j*s, s//2 + i*s)`` (as in FCOS), so a box decodes as
``(px - l, py - t, px + r, py + b)``; inside a mask ``l, t >= 0`` and ``r, b >= 1``.

Conventions (see the project's Targets contract):

* PanoNet, for s in 4, 8, 16: ``semantic_{s}`` train indices (255 ignore = VOID);
  ``instance_{s}`` 1..N numbering the non-crowd thing segments of the whole image in
  panoptic-id order (the same instance has the same number at every scale, so a small
  instance may be missing from coarse maps), 0 for stuff, crowd and VOID.
* CIAE FCOS on P3..P7: a location is positive iff its pixel lies inside a non-crowd thing
  mask and ``lo <= max(l, t, r, b) <= hi`` for the level's range (inclusive bounds, as in
  FCOS). Masks do not overlap, so no ambiguity rule is needed. Crowd regions are negative
  (there is no ignore label for the detector). Negatives have zero boxes and center-ness.
* CIAE embedding targets at 1/4: the segment list is the stuff classes present (ordered by
  merged index) followed by the non-crowd thing instances present (panoptic-id order);
  "present" means at least one cell of the 1/4 grid, so every segment has pixels. Crowd
  cells are -1 in ``segment_map`` but get the merged thing class in ``category_map``
  (they are known to be things, which the category-aware loss can use); VOID is -1 / 255.
  Stuff rows of ``segment_boxes`` are the whole image ``(0, 0, W, H)``.
"""
from __future__ import annotations

import math
from functools import lru_cache
from typing import Mapping, Sequence

import numpy as np

from panoptic_ros.labels import IGNORE_INDEX, LabelSpace
# Strides and map sizes come from the models, so targets and outputs cannot drift apart.
from panoptic_ros.models.ciae import EMBED_STRIDE, HEAD_STRIDES
from panoptic_ros.models.common import strided_size
from panoptic_ros.models.icnet import GUIDANCE_STRIDES
from panoptic_ros.types import LABEL_DIVISOR, VOID, PanopticResult

FCOS_SIZE_RANGES = ((0.0, 64.0), (64.0, 128.0), (128.0, 256.0), (256.0, 512.0), (512.0, math.inf))
"""Object sizes (max(l, t, r, b), input pixels) each FCOS level P3..P7 is responsible for."""


def sample_grid(panoptic: np.ndarray, stride: int) -> np.ndarray:
    """Ids at the centre pixel of every ``stride`` x ``stride`` cell.

    Args:
        panoptic: (H, W) int32 panoptic ids.
        stride: cell size.
    Returns:
        (ceil(H/stride), ceil(W/stride)) int32; VOID where the centre lies outside.
    """
    height, width = panoptic.shape
    gh, gw = strided_size(height, width, stride)
    half = stride // 2
    sampled = panoptic[half::stride, half::stride]
    if sampled.shape == (gh, gw):
        return np.ascontiguousarray(sampled)
    out = np.full((gh, gw), VOID, np.int32)
    out[: sampled.shape[0], : sampled.shape[1]] = sampled
    return out


@lru_cache(maxsize=16)
def fcos_locations(height: int, width: int) -> tuple[np.ndarray, np.ndarray]:
    """FCOS locations of P3..P7 in level order, row-major within a level.

    Returns:
        points (N, 2) float32 ``(x, y)`` in input pixels, and level (N,) int64 (0 = P3);
        read-only (cached per size).
    """
    points, levels = [], []
    for level, stride in enumerate(HEAD_STRIDES):
        gh, gw = strided_size(height, width, stride)
        ys, xs = np.meshgrid(stride // 2 + stride * np.arange(gh), stride // 2 + stride * np.arange(gw),
                             indexing="ij")
        points.append(np.stack([xs.ravel(), ys.ravel()], axis=1))
        levels.append(np.full(gh * gw, level, np.int64))
    points, levels = np.concatenate(points).astype(np.float32), np.concatenate(levels)
    points.flags.writeable = levels.flags.writeable = False
    return points, levels


def panonet_targets(target: PanopticResult, label_space: LabelSpace) -> dict[str, np.ndarray]:
    """PanoNet's semantic and instance maps at 1/4, 1/8 and 1/16.

    Args:
        target: the image's panoptic target, (H, W).
        label_space: the categories (train indices = positions in it).
    Returns:
        ``semantic_{s}`` and ``instance_{s}`` for s in 4, 8, 16, each (ceil(H/s), ceil(W/s))
        int64 (see the module docstring for the values).
    """
    out = {}
    for stride in GUIDANCE_STRIDES:
        # Same segments on the sampled map: semantic_map/instance_map then number instances
        # identically at every stride.
        coarse = PanopticResult(sample_grid(target.panoptic, stride), target.segments)
        out[f"semantic_{stride}"] = coarse.semantic_map(label_space).astype(np.int64)
        out[f"instance_{stride}"] = coarse.instance_map().astype(np.int64)
    return out


INSTANCE_SLOTS = "instance_slots"
"""Batch target key of :func:`instance_slots_of` (a plain int)."""


def instance_slots_of(per_image: Sequence[Mapping[str, np.ndarray]]) -> int:
    """1 + the largest instance number in a batch of :func:`panonet_targets` (every
    stride): computed on the host with the targets, so the discriminative loss reads
    nothing back from the device."""
    return 1 + max(int(t[f"instance_{s}"].max(initial=0)) for t in per_image for s in GUIDANCE_STRIDES)


def ciae_targets(target: PanopticResult, label_space: LabelSpace) -> dict[str, np.ndarray]:
    """CIAE's FCOS targets (P3..P7) and embedding targets (1/4).

    Args:
        target: the image's panoptic target, (H, W).
        label_space: the categories.
    Returns:
        ``fcos_labels`` (N,) int64 thing-class index or -1; ``fcos_boxes`` (N, 4) float32
        l, t, r, b; ``fcos_centerness`` (N,) float32; ``segment_map`` (H4, W4) int64;
        ``category_map`` (H4, W4) int64; ``segment_category`` (K,) int64;
        ``segment_is_thing`` (K,) bool; ``segment_boxes`` (K, 4) float32 x0, y0, x1, y1.
        N = locations over P3..P7 (:func:`fcos_locations`), H4 = ceil(H/4), W4 = ceil(W/4).
    """
    return {**fcos_targets(target, label_space), **embedding_targets(target, label_space)}


def _thing_instances(target: PanopticResult) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Non-crowd thing segments in id order: ids (T,), category ids (T,), boxes (T, 4) xyxy."""
    things = [s for s in target.segments if s.is_thing and not s.iscrowd]
    ids = np.array([s.id for s in things], np.int64)
    categories = np.array([s.category_id for s in things], np.int64)
    boxes = np.array([(x, y, x + w, y + h) for x, y, w, h in (s.bbox for s in things)], np.float32)
    return ids, categories, boxes.reshape(-1, 4)


def _positions(ids: np.ndarray, values: np.ndarray) -> np.ndarray:
    """Position of each of ``values`` (panoptic ids) in ``ids``, -1 where absent; shape of values."""
    table = np.full(max(int(values.max(initial=0)), int(ids.max(initial=0))) + 1, -1, np.int32)
    table[ids] = np.arange(len(ids), dtype=np.int32)
    return table[values]


def fcos_targets(target: PanopticResult, label_space: LabelSpace) -> dict[str, np.ndarray]:
    """FCOS targets with mask-based positives; see :func:`ciae_targets`."""
    height, width = target.panoptic.shape
    points, levels = fcos_locations(height, width)
    sampled = np.concatenate([sample_grid(target.panoptic, s).ravel() for s in HEAD_STRIDES])
    ids, categories, boxes = _thing_instances(target)
    instance = _positions(ids, sampled)
    inside = instance >= 0
    box = boxes[instance[inside]]
    px, py = points[inside, 0], points[inside, 1]
    ltrb = np.stack([px - box[:, 0], py - box[:, 1], box[:, 2] - px, box[:, 3] - py], axis=1)
    bounds = np.asarray(FCOS_SIZE_RANGES, np.float32)[levels[inside]]
    extent = ltrb.max(axis=1)
    in_range = (extent >= bounds[:, 0]) & (extent <= bounds[:, 1])
    positive = np.flatnonzero(inside)[in_range]
    ltrb = ltrb[in_range]

    labels = np.full(len(sampled), -1, np.int64)
    labels[positive] = _thing_class_lookup(label_space)[categories[instance[positive]]]
    out_boxes = np.zeros((len(sampled), 4), np.float32)
    out_boxes[positive] = ltrb
    lr, tb = ltrb[:, [0, 2]], ltrb[:, [1, 3]]
    centerness = np.zeros(len(sampled), np.float32)
    centerness[positive] = np.sqrt(lr.min(axis=1) / lr.max(axis=1) * tb.min(axis=1) / tb.max(axis=1))
    return {"fcos_labels": labels, "fcos_boxes": out_boxes, "fcos_centerness": centerness}


def embedding_targets(target: PanopticResult, label_space: LabelSpace) -> dict[str, np.ndarray]:
    """CIAE's 1/4-scale segment and merged-category maps; see :func:`ciae_targets`."""
    height, width = target.panoptic.shape
    sampled = sample_grid(target.panoptic, EMBED_STRIDE)
    merged = _merged_category_lookup(label_space)
    num_stuff = len(label_space.stuff_ids)
    category_map = merged[sampled // LABEL_DIVISOR]   # VOID: id 0 -> category 0 -> 255

    stuff = sorted((s for s in target.segments if not s.is_thing), key=lambda s: merged[s.category_id])
    thing_ids, _, thing_boxes = _thing_instances(target)
    candidate_ids = np.concatenate([np.array([s.id for s in stuff], np.int64), thing_ids])
    candidate = _positions(candidate_ids, sampled)
    present = np.bincount(candidate[candidate >= 0], minlength=len(candidate_ids)) > 0
    compact = np.cumsum(present) - 1
    segment_map = np.full(sampled.shape, -1, np.int64)
    hit = candidate >= 0
    segment_map[hit] = compact[candidate[hit]]

    categories = np.concatenate([[merged[s.category_id] for s in stuff], np.full(len(thing_ids), num_stuff)])
    is_thing = np.arange(len(candidate_ids)) >= len(stuff)
    boxes = np.concatenate([np.tile(np.array([0, 0, width, height], np.float32), (len(stuff), 1)),
                            thing_boxes]).reshape(-1, 4)
    return {
        "segment_map": segment_map,
        "category_map": category_map,
        "segment_category": categories.astype(np.int64)[present],
        "segment_is_thing": is_thing[present],
        "segment_boxes": boxes.astype(np.float32)[present],
    }


@lru_cache(maxsize=8)
def _thing_class_lookup(label_space: LabelSpace) -> np.ndarray:
    """(max_id + 1,) int64: category id -> thing-class index 0..C_th-1 (label-space order), -1."""
    table = np.full(max(label_space.ids) + 1, -1, np.int64)
    things = [label_space.ids[i] for i in label_space.thing_train_indices]
    table[things] = np.arange(len(things))
    return table


@lru_cache(maxsize=8)
def _merged_category_lookup(label_space: LabelSpace) -> np.ndarray:
    """(max_id + 1,) int64: category id -> CIAE merged class (stuff 0..C_st-1, things C_st), 255."""
    table = np.full(max(label_space.ids) + 1, IGNORE_INDEX, np.int64)
    stuff = [label_space.ids[i] for i in label_space.stuff_train_indices]
    table[stuff] = np.arange(len(stuff))
    table[list(label_space.thing_ids)] = len(stuff)
    return table
