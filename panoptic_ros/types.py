"""The one result type (:class:`PanopticResult`) and the id encodings around it.

Panoptic ids follow the Cityscapes convention: ``id = category_id * LABEL_DIVISOR +
instance`` with ``0`` = VOID. ``category_id`` is the dataset's official category id
(never 0). Stuff segments have instance 0; a *thing* segment with instance 0 is a crowd
region (a group of objects labelled as one, e.g. a dense crowd of persons). Non-crowd
thing instances are numbered from 1.

COCO panoptic PNGs store segment ids as ``R + 256 G + 256² B``
(:func:`rgb2id` / :func:`id2rgb`). Cityscapes ``*_instanceIds.png`` store things as
``label_id * 1000 + k`` with k from 0, and stuff or crowd regions as ``label_id``.
This module owns all three encodings. Segment areas and boxes are computed by
:func:`panoptic_ros.segments.segment_stats`, which with ``VOID`` (0) and
:class:`PanopticFormatError` lives below this module (segments imports nothing from here).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping, Sequence

import numpy as np

from panoptic_ros.labels import CITYSCAPES_LABEL_BY_ID, LabelSpace
from panoptic_ros.segments import VOID, PanopticFormatError, segment_stats

LABEL_DIVISOR = 1000

def encode_id(category_id: int, instance: int = 0) -> int:
    """Panoptic id of ``instance`` of ``category_id``."""
    if category_id <= 0 or not 0 <= instance < LABEL_DIVISOR:
        raise PanopticFormatError(f"cannot encode category {category_id} instance {instance}")
    return category_id * LABEL_DIVISOR + instance


def rgb2id(rgb: np.ndarray) -> np.ndarray:
    """COCO panoptic PNG colours to segment ids.

    Args:
        rgb: (H, W, 3) uint8.
    Returns:
        (H, W) int32 ids ``R + 256 G + 256² B``.
    """
    if rgb.ndim != 3 or rgb.shape[2] != 3:
        raise PanopticFormatError(f"expected an (H, W, 3) colour image, got shape {rgb.shape}")
    rgb = rgb.astype(np.int32)
    return rgb[..., 0] + 256 * rgb[..., 1] + 256 * 256 * rgb[..., 2]


def id2rgb(ids: np.ndarray) -> np.ndarray:
    """Segment ids to COCO panoptic PNG colours.

    Args:
        ids: (H, W) integer ids in ``[0, 2**24)``.
    Returns:
        (H, W, 3) uint8.
    """
    ids = np.asarray(ids)
    if ids.size and (ids.min() < 0 or ids.max() >= 1 << 24):
        raise PanopticFormatError("segment ids must lie in [0, 2**24) to be stored as RGB")
    ids = ids.astype(np.uint32)
    return np.stack([ids & 255, (ids >> 8) & 255, (ids >> 16) & 255], axis=-1).astype(np.uint8)


@dataclass(frozen=True)
class Segment:
    """One segment of a panoptic map.

    Attributes:
        id: panoptic id ``category_id * LABEL_DIVISOR + instance``.
        category_id: official category id.
        is_thing: category is a thing class.
        area: pixel count.
        bbox: ``(x, y, width, height)`` in pixels, COCO convention.
        score: confidence in [0, 1]; 1.0 for ground truth.
    """

    id: int
    category_id: int
    is_thing: bool
    area: int
    bbox: tuple[int, int, int, int]
    score: float = 1.0

    @property
    def instance(self) -> int:
        return self.id % LABEL_DIVISOR

    @property
    def iscrowd(self) -> bool:
        """A thing region without an instance number (COCO ``iscrowd``)."""
        return self.is_thing and self.instance == 0


@dataclass(frozen=True, eq=False)
class PanopticResult:
    """A panoptic segmentation of one image: the id map and its segments.

    Attributes:
        panoptic: (H, W) int32 panoptic ids (``category_id * 1000 + instance``, 0 = VOID).
        segments: one :class:`Segment` per non-void id, ordered by id.

    Build one with :meth:`from_panoptic_map` (computes areas and boxes) or a converter;
    the constructor checks the cheap invariants, :meth:`validate` checks everything.
    """

    panoptic: np.ndarray
    segments: tuple[Segment, ...] = field(default=())

    def __post_init__(self) -> None:
        pan = self.panoptic
        if not isinstance(pan, np.ndarray) or pan.ndim != 2 or pan.dtype != np.int32:
            raise PanopticFormatError(
                f"panoptic must be an (H, W) int32 array, got {type(pan).__name__} "
                f"{getattr(pan, 'dtype', '')} {getattr(pan, 'shape', '')}")
        object.__setattr__(self, "segments", tuple(self.segments))
        seen = set()
        for seg in self.segments:
            if seg.id == VOID or seg.id // LABEL_DIVISOR != seg.category_id:
                raise PanopticFormatError(
                    f"segment id {seg.id} does not encode category {seg.category_id} "
                    f"(id = category_id * {LABEL_DIVISOR} + instance)")
            if seg.id in seen:
                raise PanopticFormatError(f"segment id {seg.id} appears twice")
            seen.add(seg.id)

    @classmethod
    def from_panoptic_map(
        cls,
        panoptic: np.ndarray,
        label_space: LabelSpace,
        scores: Mapping[int, float] | None = None,
    ) -> "PanopticResult":
        """Build a result from an id map, computing every segment's area and box.

        Args:
            panoptic: (H, W) integer panoptic ids.
            label_space: categories the ids refer to (decides thing/stuff).
            scores: optional confidence per panoptic id (missing ids get 1.0).
        Raises:
            PanopticFormatError: an id encodes a category outside ``label_space``.
        """
        panoptic = np.ascontiguousarray(panoptic, dtype=np.int32)
        ids, areas, bboxes = segment_stats(panoptic)
        scores = scores or {}
        segments = []
        for seg_id, area, bbox in zip(ids.tolist(), areas.tolist(), bboxes.tolist()):
            category_id = seg_id // LABEL_DIVISOR
            if category_id not in label_space:
                raise PanopticFormatError(
                    f"panoptic id {seg_id} encodes category {category_id}, "
                    f"which is not in label space {label_space.name!r}")
            segments.append(Segment(seg_id, category_id, category_id in label_space.thing_ids,
                                    area, tuple(bbox), float(scores.get(seg_id, 1.0))))
        return cls(panoptic, tuple(segments))

    @property
    def height(self) -> int:
        return self.panoptic.shape[0]

    @property
    def width(self) -> int:
        return self.panoptic.shape[1]

    def segment(self, segment_id: int) -> Segment:
        """The segment with this panoptic id."""
        for seg in self.segments:
            if seg.id == segment_id:
                return seg
        raise KeyError(f"no segment with id {segment_id}")

    def category_map(self) -> np.ndarray:
        """(H, W) int32 category ids, 0 for VOID."""
        return self.panoptic // LABEL_DIVISOR

    def semantic_map(self, label_space: LabelSpace) -> np.ndarray:
        """(H, W) uint8 train indices of ``label_space``, ``IGNORE_INDEX`` (255) for VOID."""
        lut = np.full(self.panoptic.max(initial=0) // LABEL_DIVISOR + 1, 255, dtype=np.uint8)
        known = label_space.train_index_of_category_id
        n = min(len(lut), len(known))
        lut[:n] = known[:n]
        return lut[self.category_map()]

    def instance_map(self) -> np.ndarray:
        """(H, W) uint16 instance index: 1..N over the non-crowd thing segments in
        segment order (unique across classes), 0 for stuff, crowd and VOID."""
        things = [s.id for s in self.segments if s.is_thing and not s.iscrowd]
        # Segments may be absent from the map (e.g. a subsampled map keeps the full list).
        lut = np.zeros(max(self.panoptic.max(initial=0), *things, 0) + 1, dtype=np.uint16)
        lut[things] = np.arange(1, len(things) + 1, dtype=np.uint16)
        return lut[self.panoptic]

    def validate(self) -> "PanopticResult":
        """Check that segments and map agree exactly (ids, areas, boxes); returns self."""
        ids, areas, bboxes = segment_stats(self.panoptic)
        expected = {i: (a, tuple(b)) for i, a, b in zip(ids.tolist(), areas.tolist(), bboxes.tolist())}
        listed = {s.id: (s.area, tuple(s.bbox)) for s in self.segments}
        missing = sorted(set(expected) - set(listed))
        extra = sorted(set(listed) - set(expected))
        if missing or extra:
            raise PanopticFormatError(
                f"ids in the map without a segment: {missing[:10]}; segments absent from the map: {extra[:10]}")
        wrong = [i for i in expected if expected[i] != listed[i]]
        if wrong:
            raise PanopticFormatError(f"area or bbox disagrees with the map for segment ids {wrong[:10]}")
        return self

    def resize(self, width: int, height: int, *, out: np.ndarray | None = None) -> "PanopticResult":
        """Nearest-neighbour resize; segments that vanish are dropped, scores kept.

        Centre-aligned (``INTER_NEAREST_EXACT``): output pixel x takes source pixel
        floor((x + 0.5) * W / width), the one under its centre, so the labels line up with
        a bilinearly resized image. Plain ``INTER_NEAREST`` (floor(x * W / width)) shifts
        them by up to half a source pixel towards the top left for non-integer ratios.

        Args:
            out: (height, width) int32 array to write the id map into (it becomes the
                result's ``panoptic``), e.g. the pixels of a message being built.
        """
        import cv2

        if out is not None and (out.shape != (height, width) or out.dtype != np.int32):
            raise ValueError(f"out must be a ({height}, {width}) int32 array, got {out.dtype} {out.shape}")
        if (width, height) == (self.width, self.height):
            if out is None:
                return self
            np.copyto(out, self.panoptic)
            return PanopticResult(out, self.segments)   # the same map: areas and boxes hold
        # OpenCV writes into ``out`` only when it is one contiguous block (a view with a
        # column step is refused): other views get a copy below
        dst = out if out is not None and out.flags.c_contiguous else None
        resized = cv2.resize(self.panoptic, (width, height), dst=dst, interpolation=cv2.INTER_NEAREST_EXACT)
        if out is not None and resized is not out:  # OpenCV allocated anew (it writes in place when it can)
            np.copyto(out, resized)
            resized = out
        return self.with_panoptic(resized)

    def with_panoptic(self, panoptic: np.ndarray) -> "PanopticResult":
        """These segments on a new id map (after a resize, crop, flip, pad ...).

        Areas and boxes are recomputed from ``panoptic``; categories and scores are kept;
        segments absent from ``panoptic`` are dropped.

        Args:
            panoptic: (H', W') int32 ids, each one of this result's segment ids or VOID.
        Raises:
            PanopticFormatError: ``panoptic`` holds an id that is not one of the segments.
        """
        ids, areas, bboxes = segment_stats(panoptic)
        by_id = {s.id: s for s in self.segments}
        unknown = [i for i in ids.tolist() if i not in by_id]
        if unknown:
            raise PanopticFormatError(f"ids {unknown[:10]} of the new map are not segments of this result")
        segments = tuple(
            Segment(i, by_id[i].category_id, by_id[i].is_thing, a, tuple(b), by_id[i].score)
            for i, a, b in zip(ids.tolist(), areas.tolist(), bboxes.tolist()))
        return PanopticResult(panoptic, segments)

    # ---- COCO panoptic format -------------------------------------------------------

    def to_coco(self, image_id: int | str, file_name: str) -> tuple[np.ndarray, dict]:
        """The COCO panoptic PNG (segment id = panoptic id) and its annotation entry.

        Returns:
            (H, W, 3) uint8 PNG colours, and ``{"image_id", "file_name", "segments_info"}``
            where each segment has ``id, category_id, iscrowd, area, bbox`` (+ ``score``).
        """
        info = [{"id": s.id, "category_id": s.category_id, "iscrowd": int(s.iscrowd),
                 "area": s.area, "bbox": list(s.bbox), "score": s.score} for s in self.segments]
        return id2rgb(self.panoptic), {"image_id": image_id, "file_name": file_name, "segments_info": info}

    @classmethod
    def from_coco(
        cls,
        png_rgb: np.ndarray,
        segments_info: Sequence[Mapping],
        label_space: LabelSpace,
        source: str = "",
    ) -> "PanopticResult":
        """Read a COCO panoptic PNG and its ``segments_info``.

        COCO segment ids are arbitrary; they are re-encoded as panoptic ids. Non-crowd
        thing segments of a category are numbered 1, 2, ... in ascending order of their
        COCO id; stuff and crowd segments get instance 0 (several of one category merge).

        Args:
            png_rgb: (H, W, 3) uint8 PNG colours.
            segments_info: COCO segment dicts (``id``, ``category_id``, optional
                ``iscrowd`` and ``score``).
            label_space: the categories.
            source: file name quoted in errors.
        Raises:
            PanopticFormatError: ids missing from the PNG or from ``segments_info``,
                duplicate ids, unknown categories.
        """
        where = f"{source}: " if source else ""
        coco_ids = rgb2id(png_rgb)
        present = np.unique(coco_ids)
        present = set(present[present != VOID].tolist())
        by_coco_id: dict[int, Mapping] = {}
        for info in segments_info:
            sid = int(info["id"])
            if sid in by_coco_id:
                raise PanopticFormatError(f"{where}segment id {sid} is listed twice in segments_info")
            if int(info["category_id"]) not in label_space:
                raise PanopticFormatError(
                    f"{where}segment {sid} has category {info['category_id']}, unknown to {label_space.name!r}")
            by_coco_id[sid] = info
        absent = sorted(set(by_coco_id) - present)
        if absent:
            raise PanopticFormatError(f"{where}segments_info ids {absent[:10]} do not occur in the PNG")
        unlisted = sorted(present - set(by_coco_id))
        if unlisted:
            raise PanopticFormatError(f"{where}PNG ids {unlisted[:10]} have no entry in segments_info")

        remap, scores = _coco_to_panoptic_ids(by_coco_id, label_space)
        lut_keys = np.array(sorted(remap), dtype=np.int64)
        lut_vals = np.array([remap[k] for k in lut_keys.tolist()], dtype=np.int32)
        panoptic = np.zeros(coco_ids.shape, dtype=np.int32)
        if len(lut_keys):
            pos = np.searchsorted(lut_keys, coco_ids)
            pos = np.clip(pos, 0, len(lut_keys) - 1)
            hit = lut_keys[pos] == coco_ids
            panoptic[hit] = lut_vals[pos[hit]]
        return cls.from_panoptic_map(panoptic, label_space, scores)

    # ---- Cityscapes ids ---------------------------------------------------------------

    def to_cityscapes(self) -> tuple[np.ndarray, np.ndarray]:
        """Cityscapes ``labelIds`` and ``instanceIds`` images.

        Returns:
            label_ids (H, W) uint8 (0 = unlabeled for VOID) and instance_ids (H, W) int32
            (``label_id * 1000 + k`` with k from 0 for thing instances, ``label_id`` for
            stuff and crowd regions, 0 for VOID).
        """
        category = self.category_map()
        instance = self.panoptic % LABEL_DIVISOR
        instance_ids = np.where(instance > 0, category * LABEL_DIVISOR + instance - 1, category)
        return category.astype(np.uint8), instance_ids.astype(np.int32)

    @classmethod
    def from_cityscapes(cls, instance_ids: np.ndarray, label_space: LabelSpace) -> "PanopticResult":
        """Decode a Cityscapes ``instanceIds`` image.

        Labels that are not evaluated (``ignoreInEval``, e.g. caravan, ego vehicle) become
        VOID; thing regions without an instance number become crowd segments.

        Args:
            instance_ids: (H, W) integer Cityscapes instance ids.
            label_space: the evaluated categories (normally ``labels.CITYSCAPES``).
        """
        instance_ids = np.asarray(instance_ids, dtype=np.int64)
        label = np.where(instance_ids >= LABEL_DIVISOR, instance_ids // LABEL_DIVISOR, instance_ids)
        unknown = sorted(set(np.unique(label).tolist()) - set(CITYSCAPES_LABEL_BY_ID))
        if unknown:
            raise PanopticFormatError(f"Cityscapes label ids {unknown[:10]} do not exist")
        evaluated = np.zeros(max(CITYSCAPES_LABEL_BY_ID) + 1, dtype=bool)
        evaluated[[i for i in CITYSCAPES_LABEL_BY_ID if i in label_space]] = True
        instance = np.where(instance_ids >= LABEL_DIVISOR, instance_ids % LABEL_DIVISOR + 1, 0)
        if instance.max(initial=0) >= LABEL_DIVISOR:
            raise PanopticFormatError("a Cityscapes instance number reaches 999; cannot re-encode")
        panoptic = np.where(evaluated[label], label * LABEL_DIVISOR + instance, VOID)
        return cls.from_panoptic_map(panoptic.astype(np.int32), label_space)


def _coco_to_panoptic_ids(
    by_coco_id: Mapping[int, Mapping], label_space: LabelSpace
) -> tuple[dict[int, int], dict[int, float]]:
    """COCO segment id -> panoptic id, and panoptic id -> score."""
    remap: dict[int, int] = {}
    scores: dict[int, float] = {}
    next_instance: dict[int, int] = {}
    for coco_id in sorted(by_coco_id):
        info = by_coco_id[coco_id]
        category_id = int(info["category_id"])
        numbered = category_id in label_space.thing_ids and not info.get("iscrowd", 0)
        instance = 0
        if numbered:
            instance = next_instance.get(category_id, 0) + 1
            next_instance[category_id] = instance
        remap[coco_id] = encode_id(category_id, instance)
        if "score" in info:
            scores[remap[coco_id]] = float(info["score"])
    return remap, scores

