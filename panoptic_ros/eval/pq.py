"""Panoptic quality (PQ = SQ x RQ) with exactly the rules of the official evaluation.

The reference is ``pq_compute_single_core`` + ``average_pq`` of COCO's panopticapi and of
cityscapesscripts' ``evalPanopticSemanticLabeling`` (the same rules). That code builds,
per image, a Python dict over ``np.unique`` of a uint64 (gt id, pred id) map and loops
over it. Here the maps are cut into horizontal runs on which both ids are constant, the
run ids go to compact segment indices through a lookup table, one ``np.bincount`` (run
lengths as weights) gives the whole (gt segment x pred segment) intersection table, and
array operations on that small table apply the rules. The counts are identical, and the
IoUs are summed in the official order, so one process gives bit-identical results.

Rules, per image (``segments_info`` lists are read as dicts keyed by id, so for a
repeated id the last entry wins, as in the official code):

- A GT pixel is VOID when its id is 0. GT ids that are absent from ``segments_info`` are
  *not* VOID: like the official code they match nothing and are not removed from unions.
- A (GT, pred) pair with the same category, a non-crowd GT and a non-empty intersection
  is a TP when ``IoU > 0.5`` (strictly), ``IoU = inter / (area_pred + area_gt - inter -
  pred pixels on GT VOID)``. GT areas are the listed ``area`` (the official code reads
  them from the JSON; the pixel count where none is listed), prediction areas are pixel
  counts.
- Every unmatched non-crowd GT segment is a FN. Crowd GT segments (``iscrowd == 1``) are
  never matched; per category only the *last* listed crowd segment is remembered.
- An unmatched prediction is a FP unless more than half of its pixels lie on GT VOID plus
  the remembered crowd segment of its own category.
- Predictions must list every non-zero id of their PNG and only ids present in it, with
  categories that are evaluated; otherwise :class:`PanopticFormatError`.

Summaries: per category ``PQ = sum IoU / (TP + FP/2 + FN/2)``, ``SQ = sum IoU / TP`` (the
integer 0 without TPs), ``RQ = TP / (TP + FP/2 + FN/2)``; categories with no TP, FP or FN
get zeros and do not count in ``n`` nor in the All/Things/Stuff means. The one deviation
for valid input: where a group has ``n == 0`` the official code divides by zero; here it
reports zeros. Input the official code would misread is refused: id 0 listed in
``segments_info`` (VOID pixels would become a segment), maps of different sizes, ids
outside [0, 2**24).
"""
from __future__ import annotations

import threading
from typing import Mapping, NamedTuple, Sequence

import numpy as np

from panoptic_ros.labels import LabelSpace
from panoptic_ros.types import VOID, PanopticFormatError, PanopticResult

MAX_SEGMENT_ID = 1 << 24    # COCO PNG ids are 24-bit colours
_VOID_BUCKET, _FIRST_SEGMENT = 1, 2   # bucket 0 = id not listed in segments_info


class _Segments(NamedTuple):
    """The segments of one image side, in listing order (K segments)."""

    ids: np.ndarray        # (K,) int64 segment ids
    category: np.ndarray   # (K,) int64 index into the evaluated categories, -1 = not evaluated
    crowd: np.ndarray      # (K,) bool, iscrowd == 1
    area: np.ndarray       # (K,) float64 listed area, NaN = count the pixels


class PanopticEvaluator:
    """Accumulates PQ statistics over images; :meth:`summarize` gives the official dict.

    Args:
        categories: the evaluated categories: a :class:`LabelSpace`, or COCO category
            dicts (``id``, ``isthing``, optional ``name``) as in a GT JSON. Their order is
            the order of ``per_class``.
        keep_matches: also keep every image's matches (:attr:`matches`), so that
            evaluators of consecutive shards of a dataset merge, in order, into the IoU
            sums of one evaluator that saw every image, bit for bit.
    """

    def __init__(self, categories: LabelSpace | Sequence[Mapping], *, keep_matches: bool = False):
        if isinstance(categories, LabelSpace):
            rows = [(c.id, c.is_thing, c.name) for c in categories.categories]
        else:
            rows = _coco_category_rows(categories)
        self.category_ids: tuple[int, ...] = tuple(r[0] for r in rows)
        self.is_thing = np.array([r[1] for r in rows], dtype=bool)
        self.names: tuple[str, ...] = tuple(r[2] for r in rows)
        self._index = {cid: i for i, cid in enumerate(self.category_ids)}
        n = len(rows)
        self.tp = np.zeros(n, np.int64)
        self.fp = np.zeros(n, np.int64)
        self.fn = np.zeros(n, np.int64)
        self.iou = np.zeros(n, np.float64)
        self.num_images = 0
        self.matches: list[tuple[np.ndarray, np.ndarray]] | None = [] if keep_matches else None
        """Per image, the category index (M,) and IoU (M,) of its M matches, in summing order."""

    def __repr__(self) -> str:
        return f"PanopticEvaluator({len(self.category_ids)} categories, {self.num_images} images)"

    # ---- accumulation ------------------------------------------------------------------

    def add(self, gt: PanopticResult, pred: PanopticResult) -> None:
        """Add one image given as results (GT crowd = thing segment with instance 0)."""
        gt_segments = self._segments_of_result(gt, is_gt=True)
        pred_segments = self._segments_of_result(pred, is_gt=False)
        self._accumulate(gt.panoptic, gt_segments, pred.panoptic, pred_segments, "ground truth", "prediction")

    def add_coco(
        self,
        gt_ids: np.ndarray,
        gt_segments_info: Sequence[Mapping],
        pred_ids: np.ndarray,
        pred_segments_info: Sequence[Mapping],
        *,
        gt_source: str = "ground truth",
        pred_source: str = "prediction",
    ) -> None:
        """Add one image in raw COCO panoptic form.

        Args:
            gt_ids: (H, W) non-negative integer segment ids of the GT PNG (0 = VOID).
            gt_segments_info: GT segment dicts (``id``, ``category_id``, ``iscrowd``,
                optional ``area``).
            pred_ids: (H, W) segment ids of the prediction PNG.
            pred_segments_info: prediction segment dicts (``id``, ``category_id``).
            gt_source, pred_source: names quoted in error messages (e.g. the PNG paths).
        Raises:
            PanopticFormatError: sizes differ, ids out of range, a prediction id listed
                but absent from its PNG or present but not listed, unknown categories.
        """
        gt_segments = self._segments_of_info(gt_segments_info, gt_source, is_gt=True)
        pred_segments = self._segments_of_info(pred_segments_info, pred_source, is_gt=False)
        self._accumulate(gt_ids, gt_segments, pred_ids, pred_segments, gt_source, pred_source)

    def merge(self, other: "PanopticEvaluator") -> "PanopticEvaluator":
        """Add another evaluator's statistics (same categories) into this one; returns self.

        When both keep their matches, ``other``'s IoUs are added match by match in its
        order: merging the evaluators of consecutive shards in order then gives the sums
        of one evaluator over all their images exactly (floating-point addition is not
        associative, so adding the shards' sums could differ in the last bits).
        """
        if other.category_ids != self.category_ids or not np.array_equal(other.is_thing, self.is_thing):
            raise ValueError("cannot merge PanopticEvaluators over different categories")
        self.tp += other.tp
        self.fp += other.fp
        self.fn += other.fn
        if self.matches is not None and other.matches is not None:
            for categories, ious in other.matches:
                self._add_matches(categories, ious)
        else:
            self.iou += other.iou
            self.matches = None   # no longer the matches of every image counted
        self.num_images += other.num_images
        return self

    def _accumulate(self, gt_ids, gt: _Segments, pred_ids, pred: _Segments, gt_source, pred_source) -> None:
        tp, fp, fn, matched_category, matched_iou = _image_counts(
            gt_ids, gt, pred_ids, pred, len(self.category_ids), gt_source=gt_source, pred_source=pred_source)
        self.tp += tp
        self.fp += fp
        self.fn += fn
        self._add_matches(matched_category, matched_iou)
        self.num_images += 1

    def _add_matches(self, categories: np.ndarray, ious: np.ndarray) -> None:
        """Add one image's matches: category index (M,) and IoU (M,), in summing order."""
        # One addition per match in the official order keeps the sums bit-identical to it.
        for category, iou in zip(categories.tolist(), ious.tolist()):
            self.iou[category] += iou
        if self.matches is not None:
            self.matches.append((categories, ious))

    def _segments_of_info(self, segments_info: Sequence[Mapping], source: str, *, is_gt: bool) -> _Segments:
        by_id: dict[int, Mapping] = {}
        for seg in segments_info:
            try:
                by_id[_as_segment_id(seg["id"])] = seg
            except (KeyError, TypeError, ValueError):
                raise PanopticFormatError(f"{source}: segments_info entry {seg!r} has no valid integer id") from None
        infos = list(by_id.values())
        category = np.array([self._index.get(_category_key(s.get("category_id")), -1) for s in infos], np.int64)
        if is_gt:
            crowd = np.array([s.get("iscrowd", 0) == 1 for s in infos], bool)
            try:
                area = np.array([s.get("area", np.nan) for s in infos], np.float64)
            except (TypeError, ValueError):
                raise PanopticFormatError(f"{source}: segments_info holds an area that is not a number") from None
        else:
            unknown = [s.get("category_id") for s, c in zip(infos, category) if c < 0]
            if unknown:
                raise PanopticFormatError(f"{source}: segments have categories {unknown[:10]} that are not evaluated")
            crowd = np.zeros(len(infos), bool)
            area = np.full(len(infos), np.nan)
        return _Segments(np.array(list(by_id), np.int64), category, crowd, area)

    def _segments_of_result(self, result: PanopticResult, *, is_gt: bool) -> _Segments:
        category = np.array([self._index.get(s.category_id, -1) for s in result.segments], np.int64)
        if not is_gt and (category < 0).any():
            unknown = sorted({s.category_id for s, c in zip(result.segments, category) if c < 0})
            raise PanopticFormatError(f"prediction: categories {unknown[:10]} are not evaluated")
        crowd = np.array([is_gt and s.iscrowd for s in result.segments], bool)
        area = np.array([s.area if is_gt else np.nan for s in result.segments], np.float64)
        return _Segments(np.array([s.id for s in result.segments], np.int64), category, crowd, area)

    # ---- summary -----------------------------------------------------------------------

    def summarize(self) -> dict:
        """The dict of the official ``evaluatePanoptic``: ``All``/``Things``/``Stuff``
        (``pq``, ``sq``, ``rq`` as fractions, ``n``) and ``per_class`` keyed by the integer
        category id (``pq``, ``sq``, ``rq``)."""
        results: dict = {}
        for name, isthing in (("All", None), ("Things", True), ("Stuff", False)):
            results[name], per_class = self._average(isthing)
            if name == "All":
                results["per_class"] = per_class
        return results

    def _average(self, isthing: bool | None) -> tuple[dict, dict]:
        pq = sq = rq = 0.0
        n = 0
        per_class: dict[int, dict] = {}
        for i, category_id in enumerate(self.category_ids):
            if isthing is not None and bool(self.is_thing[i]) != isthing:
                continue
            tp, fp, fn, iou = int(self.tp[i]), int(self.fp[i]), int(self.fn[i]), float(self.iou[i])
            if tp + fp + fn == 0:
                per_class[category_id] = {"pq": 0.0, "sq": 0.0, "rq": 0.0}
                continue
            n += 1
            denominator = tp + 0.5 * fp + 0.5 * fn
            scores = {"pq": iou / denominator, "sq": iou / tp if tp != 0 else 0, "rq": tp / denominator}
            per_class[category_id] = scores
            pq, sq, rq = pq + scores["pq"], sq + scores["sq"], rq + scores["rq"]
        if n == 0:  # the official code raises ZeroDivisionError here
            return {"pq": 0.0, "sq": 0.0, "rq": 0.0, "n": 0}, per_class
        return {"pq": pq / n, "sq": sq / n, "rq": rq / n, "n": n}, per_class


def _image_counts(
    gt_ids: np.ndarray,
    gt: _Segments,
    pred_ids: np.ndarray,
    pred: _Segments,
    num_categories: int,
    *,
    gt_source: str = "ground truth",
    pred_source: str = "prediction",
) -> tuple[np.ndarray, ...]:
    """TP, FP, FN counts per category and the IoU of every match for one image.

    Args:
        gt_ids, pred_ids: (H, W) integer segment id maps, 0 = VOID.
        gt, pred: their segments (category indices into ``num_categories``).
        num_categories: C, the number of evaluated categories.
        gt_source, pred_source: names quoted in error messages.
    Returns:
        tp, fp, fn (C,) int64; category index (M,) and IoU (M,) of the M matches, ordered
        by (gt id, pred id).
    """
    gt_ids, pred_ids = np.asarray(gt_ids), np.asarray(pred_ids)
    if gt_ids.ndim != 2:
        raise PanopticFormatError(f"{gt_source}: expected an (H, W) id map, got shape {gt_ids.shape}")
    if pred_ids.shape != gt_ids.shape:
        raise PanopticFormatError(
            f"{pred_source}: size {_size(pred_ids)} differs from the ground truth's {_size(gt_ids)}")
    table = _intersections(gt_ids, gt.ids, gt_source, pred_ids, pred.ids, pred_source)
    _check_prediction_ids(pred_ids, pred.ids, table.sum(axis=0), pred_source)
    inter = table[_FIRST_SEGMENT:, _FIRST_SEGMENT:]          # (Kg, Kp) segment x segment
    pred_area = table[:, _FIRST_SEGMENT:].sum(axis=0)       # (Kp,)
    pred_void = table[_VOID_BUCKET, _FIRST_SEGMENT:]        # (Kp,) pred pixels on GT VOID
    gt_area = np.where(np.isnan(gt.area), table[_FIRST_SEGMENT:].sum(axis=1), gt.area)

    evaluated_gt = (gt.category >= 0) & ~gt.crowd
    candidate = (evaluated_gt[:, None] & (gt.category[:, None] == pred.category[None, :])) & (inter > 0)
    union = pred_area[None, :] + gt_area[:, None] - inter - pred_void[None, :]
    iou = np.zeros(inter.shape)
    with np.errstate(divide="ignore", invalid="ignore"):   # only inconsistent listed areas reach 0
        np.divide(inter, union, out=iou, where=candidate)
    match = candidate & (iou > 0.5)
    rows, cols = np.nonzero(match)
    order = np.lexsort((pred.ids[cols], gt.ids[rows]))   # the official loop's (gt id, pred id) order
    rows, cols = rows[order], cols[order]
    tp = np.bincount(gt.category[rows], minlength=num_categories).astype(np.int64)
    missed = evaluated_gt & ~match.any(axis=1)
    fn = np.bincount(gt.category[missed], minlength=num_categories).astype(np.int64)
    fp = _false_positives(inter, pred_area, pred_void, gt, pred, ~match.any(axis=0), num_categories)
    return tp, fp, fn, gt.category[rows], iou[rows, cols]


def _false_positives(inter, pred_area, pred_void, gt: _Segments, pred: _Segments, unmatched, num_categories):
    """(C,) int64 FP counts: unmatched predictions not mostly on VOID + same-class crowd."""
    crowd_of_category = np.full(num_categories, -1, np.int64)
    for k in np.flatnonzero(gt.crowd & (gt.category >= 0)):   # the last listed crowd wins
        crowd_of_category[gt.category[k]] = k
    crowd_row = crowd_of_category[pred.category]              # (Kp,)
    ignored = pred_void.astype(np.int64)
    has_crowd = crowd_row >= 0
    ignored[has_crowd] += inter[crowd_row[has_crowd], np.flatnonzero(has_crowd)]
    counted = unmatched & ~(ignored / pred_area > 0.5)
    return np.bincount(pred.category[counted], minlength=num_categories).astype(np.int64)


def _intersections(gt_ids, gt_segment_ids, gt_source, pred_ids, pred_segment_ids, pred_source) -> np.ndarray:
    """(2 + Kg, 2 + Kp) int64 pixel counts of (gt bucket, pred bucket) pairs; bucket 0 =
    id not listed, 1 = VOID, 2 + k = k-th listed segment.

    Works on maximal horizontal runs on which both maps are constant (a few per cent of
    the pixels in real label maps), so only two comparisons touch every pixel.
    """
    for ids, source in ((gt_ids, gt_source), (pred_ids, pred_source)):
        if not np.issubdtype(ids.dtype, np.integer):
            raise PanopticFormatError(f"{source}: segment ids must be integers, got {ids.dtype}")
    gt_ids, pred_ids = np.ascontiguousarray(gt_ids), np.ascontiguousarray(pred_ids)
    starts = _run_starts(gt_ids, pred_ids)
    lengths = np.diff(starts, append=gt_ids.size)
    gt_bucket, num_gt = _buckets(gt_ids.ravel()[starts], gt_segment_ids, gt_source)
    pred_bucket, num_pred = _buckets(pred_ids.ravel()[starts], pred_segment_ids, pred_source)
    joint = np.multiply(gt_bucket, num_pred, dtype=np.intp)
    joint += pred_bucket
    counts = np.bincount(joint, weights=lengths, minlength=num_gt * num_pred)   # float64: exact below 2**53
    return counts.astype(np.int64).reshape(num_gt, num_pred)


def _run_starts(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Flat indices where a run of equal (a, b) values starts, each row starting anew.

    Args:
        a, b: (H, W) C-contiguous maps.
    Returns:
        (R,) int64 ascending.
    """
    if a.size == 0:
        return np.zeros(0, np.intp)
    # Flat 1-D comparisons run faster than row-wise 2-D slices; row starts are set after.
    width = a.shape[1]
    a, b = a.ravel(), b.ravel()
    change = np.empty(a.size, bool)
    change[0] = True
    np.not_equal(a[1:], a[:-1], out=change[1:])
    change[1:] |= b[1:] != b[:-1]
    change[::width] = True
    return np.flatnonzero(change)


def _buckets(ids: np.ndarray, segment_ids: np.ndarray, source: str) -> tuple[np.ndarray, int]:
    """Bucket of every id through a lookup table (no sort).

    Returns:
        buckets (same shape as ``ids``) and the bucket count 2 + K.
    """
    if (segment_ids == VOID).any():
        raise PanopticFormatError(f"{source}: segments_info lists id 0, which is VOID")
    top = max(int(ids.max(initial=0)), int(segment_ids.max(initial=0)))
    low = min(int(ids.min(initial=0)), int(segment_ids.min(initial=0)))
    if low < 0 or top >= MAX_SEGMENT_ID:
        raise PanopticFormatError(f"{source}: segment ids must lie in [0, 2**24), found {low if low < 0 else top}")
    num = _FIRST_SEGMENT + len(segment_ids)
    if num > np.iinfo(np.uint16).max:
        table = np.zeros(top + 1, np.int32)
    else:
        table = _zeroed_table(top + 1)
    try:
        table[VOID] = _VOID_BUCKET
        table[segment_ids] = np.arange(_FIRST_SEGMENT, num)
        return np.take(table, ids), num
    finally:
        table[VOID] = 0
        table[segment_ids] = 0


_scratch = threading.local()


def _zeroed_table(size: int) -> np.ndarray:
    """A zero uint16 table of at least ``size`` entries, kept per thread: COCO ids are
    24-bit colours, and zeroing a fresh 2**24-entry table per image would cost more than
    the rest of the evaluation. Callers restore the entries they set to zero."""
    table = getattr(_scratch, "table", None)
    if table is None or len(table) < size:
        table = np.zeros(1 << max(16, (size - 1).bit_length()), np.uint16)
        _scratch.table = table
    return table


def _check_prediction_ids(pred_ids, segment_ids, bucket_area, source) -> None:
    """Every non-zero PNG id is listed and every listed id occurs (the official checks)."""
    if bucket_area[0]:
        unlisted = np.setdiff1d(np.unique(pred_ids), np.append(segment_ids, VOID))
        raise PanopticFormatError(
            f"{source}: PNG segment ids {unlisted[:10].tolist()} are not listed in segments_info")
    absent = segment_ids[bucket_area[_FIRST_SEGMENT:] == 0]
    if len(absent):
        raise PanopticFormatError(
            f"{source}: segments_info ids {absent[:10].tolist()} do not occur in the PNG")


def _coco_category_rows(categories: Sequence[Mapping]) -> list[tuple[int, bool, str]]:
    """(id, is_thing, name) per COCO category dict; a repeated id keeps its first place
    and its last entry (dict semantics, as the official code)."""
    rows: dict[int, tuple[int, bool, str]] = {}
    for cat in categories:
        if not isinstance(cat, Mapping) or "id" not in cat or "isthing" not in cat:
            raise PanopticFormatError(f"category {cat!r} lacks 'id' or 'isthing'")
        cid = _category_key(cat["id"])
        rows[cid] = (cid, cat["isthing"] == 1, str(cat.get("name", cid)))
    return list(rows.values())


def _category_key(value):
    """Integral category ids as int (JSON gives ints); anything else stays as is and
    therefore matches no evaluated category."""
    if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
        return int(value)
    return value


def _as_segment_id(value) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer, float)) or int(value) != value:
        raise ValueError(value)
    return int(value)


def _size(ids: np.ndarray) -> str:
    return f"{ids.shape[1]}x{ids.shape[0]}" if ids.ndim == 2 else f"shape {ids.shape}"
