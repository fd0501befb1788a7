"""PQ statistics on random small maps against a straightforward per-pair reference
(the rules of the official ``pq_compute_single_core``, written out in this file)."""
import re
from collections import defaultdict

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from panoptic_ros.eval.pq import PanopticEvaluator
from panoptic_ros.segments import segment_stats
from panoptic_ros.types import PanopticFormatError, PanopticResult, Segment

CATEGORIES = [{"id": 1, "isthing": 1}, {"id": 2, "isthing": 1}, {"id": 3, "isthing": 0}]


def reference_counts(gt, gt_info, pred, pred_info):
    """Per category id: [tp, fp, fn, iou sum], one (gt, pred) pair at a time."""
    stats = defaultdict(lambda: [0, 0, 0, 0.0])
    gt_segs = {s["id"]: s for s in gt_info}
    pred_segs = {s["id"]: dict(s, area=int((pred == s["id"]).sum())) for s in pred_info}
    inter = defaultdict(int)
    for g, p in zip(gt.ravel().tolist(), pred.ravel().tolist()):
        inter[g, p] += 1
    gt_matched, pred_matched = set(), set()
    for (g, p), n in inter.items():
        if g not in gt_segs or p not in pred_segs or gt_segs[g]["iscrowd"]:
            continue
        if gt_segs[g]["category_id"] != pred_segs[p]["category_id"]:
            continue
        union = pred_segs[p]["area"] + gt_segs[g]["area"] - n - inter.get((0, p), 0)
        if n / union > 0.5:
            stat = stats[gt_segs[g]["category_id"]]
            stat[0] += 1
            stat[3] += n / union
            gt_matched.add(g)
            pred_matched.add(p)
    crowd = {}
    for g, seg in gt_segs.items():
        if g in gt_matched:
            continue
        if seg["iscrowd"]:
            crowd[seg["category_id"]] = g
        else:
            stats[seg["category_id"]][2] += 1
    for p, seg in pred_segs.items():
        if p in pred_matched:
            continue
        ignored = inter.get((0, p), 0) + inter.get((crowd.get(seg["category_id"], -1), p), 0)
        if ignored / seg["area"] <= 0.5:
            stats[seg["category_id"]][1] += 1
    return stats


@st.composite
def image_pairs(draw):
    """GT and prediction maps of up to 5 x 6 pixels over a few ids, and their segment lists."""
    h, w = draw(st.integers(1, 5)), draw(st.integers(1, 6))
    gt = np.array(draw(st.lists(st.sampled_from([0, 11, 12, 13, 14]), min_size=h * w, max_size=h * w)))
    pred = np.array(draw(st.lists(st.sampled_from([0, 21, 22, 23, 24]), min_size=h * w, max_size=h * w)))
    gt, pred = gt.reshape(h, w), pred.reshape(h, w)
    gt_info = [{"id": i, "category_id": draw(st.sampled_from([1, 2, 3])), "iscrowd": int(draw(st.booleans())),
                "area": int((gt == i).sum())} for i in np.unique(gt).tolist() if i]
    pred_info = [{"id": i, "category_id": draw(st.sampled_from([1, 2, 3]))}
                 for i in np.unique(pred).tolist() if i]
    return gt, gt_info, pred, pred_info


@settings(max_examples=300, deadline=None)
@given(image_pairs())
def test_counts_and_iou_sums_equal_the_reference(pair):
    gt, gt_info, pred, pred_info = pair
    evaluator = PanopticEvaluator(CATEGORIES)
    evaluator.add_coco(gt, gt_info, pred, pred_info)
    expected = reference_counts(gt, gt_info, pred, pred_info)
    for i, category in enumerate(evaluator.category_ids):
        tp, fp, fn, iou = expected[category]
        assert (evaluator.tp[i], evaluator.fp[i], evaluator.fn[i]) == (tp, fp, fn), category
        assert abs(evaluator.iou[i] - iou) < 1e-12


@settings(max_examples=100, deadline=None)
@given(st.lists(image_pairs(), min_size=1, max_size=3))
def test_summary_is_pq_sq_rq_of_the_summed_counts(pairs):
    evaluator = PanopticEvaluator(CATEGORIES)
    totals = defaultdict(lambda: [0, 0, 0, 0.0])
    for gt, gt_info, pred, pred_info in pairs:
        evaluator.add_coco(gt, gt_info, pred, pred_info)
        for category, stat in reference_counts(gt, gt_info, pred, pred_info).items():
            totals[category] = [a + b for a, b in zip(totals[category], stat)]
    summary = evaluator.summarize()
    used = []
    for category in (1, 2, 3):
        tp, fp, fn, iou = totals[category]
        got = summary["per_class"][category]
        if tp + fp + fn == 0:
            assert got == {"pq": 0.0, "sq": 0.0, "rq": 0.0}
            continue
        used.append(category)
        assert np.isclose(got["pq"], iou / (tp + fp / 2 + fn / 2), rtol=1e-12, atol=0)
        assert np.isclose(got["rq"], tp / (tp + fp / 2 + fn / 2), rtol=1e-12, atol=0)
        assert np.isclose(got["sq"], iou / tp if tp else 0.0, rtol=1e-12, atol=0)
    assert summary["All"]["n"] == len(used)
    assert summary["Things"]["n"] == len([c for c in used if c != 3])
    if used:
        mean_pq = np.mean([summary["per_class"][c]["pq"] for c in used])
        assert np.isclose(summary["All"]["pq"], mean_pq, rtol=1e-12, atol=0)


# ---- the PanopticResult entry point (add) against the same reference -------------------


def _result(ids: np.ndarray, listed_area: dict[int, int] | None = None) -> PanopticResult:
    """A result whose segment ids encode their category (1, 2 things; 3 stuff); thing
    instance 0 is a crowd region."""
    segments = []
    for i, area, box in zip(*segment_stats(ids)):
        category = int(i) // 1000
        area = (listed_area or {}).get(int(i), int(area))
        segments.append(Segment(int(i), category, category != 3, area, tuple(int(v) for v in box)))
    return PanopticResult(ids.astype(np.int32), segments)


def _info(result: PanopticResult, *, gt: bool) -> list[dict]:
    if gt:
        return [{"id": s.id, "category_id": s.category_id, "iscrowd": int(s.iscrowd), "area": s.area}
                for s in result.segments]
    return [{"id": s.id, "category_id": s.category_id} for s in result.segments]


@st.composite
def result_pairs(draw):
    h, w = draw(st.integers(1, 5)), draw(st.integers(1, 6))
    gt = draw(st.lists(st.sampled_from([0, 1000, 1001, 1002, 2000, 2001, 3000]), min_size=h * w, max_size=h * w))
    pred = draw(st.lists(st.sampled_from([0, 1000, 1001, 1003, 2001, 2002, 3000]), min_size=h * w, max_size=h * w))
    return _result(np.array(gt).reshape(h, w)), _result(np.array(pred).reshape(h, w))


@settings(max_examples=200, deadline=None)
@given(result_pairs())
def test_results_are_scored_like_their_coco_form(pair):
    # GT thing segments with instance 0 are crowd regions; a prediction's never are
    gt, pred = pair
    evaluator = PanopticEvaluator(CATEGORIES)
    evaluator.add(gt, pred)
    expected = reference_counts(gt.panoptic, _info(gt, gt=True), pred.panoptic, _info(pred, gt=False))
    for i, category in enumerate(evaluator.category_ids):
        tp, fp, fn, iou = expected[category]
        assert (evaluator.tp[i], evaluator.fp[i], evaluator.fn[i]) == (tp, fp, fn), category
        assert abs(evaluator.iou[i] - iou) < 1e-12


def test_listed_gt_areas_count_and_listed_prediction_areas_do_not():
    # Official rules: the GT area is the listed one, a prediction's is its pixel count.
    # The prediction covers 3 of the 4 GT pixels: IoU 3/4 with the true areas; with the GT
    # listed as 8 pixels, 3/8: no match.
    gt_ids = np.full((2, 2), 1001)
    pred_ids = np.array([[1001, 1001], [1001, 0]])
    for listed_gt, listed_pred, matched in ((None, None, 1), ({1001: 8}, None, 0), (None, {1001: 100}, 1)):
        evaluator = PanopticEvaluator(CATEGORIES)
        evaluator.add(_result(gt_ids, listed_gt), _result(pred_ids, listed_pred))
        assert evaluator.tp[0] == matched, (listed_gt, listed_pred)


def test_predicted_categories_must_be_evaluated_and_gt_ones_need_not():
    unknown = list(range(4, 16))                       # 12 categories the evaluator lacks
    pred = _result(np.array([[1001, 3000]]))
    pred = PanopticResult(pred.panoptic, [*pred.segments, *(Segment(c * 1000, c, False, 0, (0, 0, 0, 0))
                                                           for c in unknown)])
    with pytest.raises(PanopticFormatError, match=re.escape(f"prediction: categories {unknown[:10]} are not "
                                                            "evaluated") + "$"):
        PanopticEvaluator(CATEGORIES).add(_result(np.array([[1001, 3000]])), pred)
    gt = _result(np.array([[1001, 3000]]))
    gt = PanopticResult(gt.panoptic, [*gt.segments, Segment(9000, 9, False, 0, (0, 0, 0, 0))])
    evaluator = PanopticEvaluator(CATEGORIES)
    evaluator.add(gt, _result(np.array([[1001, 3000]])))     # GT outside the categories: ignored
    assert evaluator.tp.tolist() == [1, 0, 1]


def test_merge_refuses_other_categories_or_thing_flags():
    other_flags = [{"id": 1, "isthing": 1}, {"id": 2, "isthing": 0}, {"id": 3, "isthing": 0}]
    for categories in (other_flags, CATEGORIES[:2]):
        with pytest.raises(ValueError, match="^cannot merge PanopticEvaluators over different categories$"):
            PanopticEvaluator(CATEGORIES).merge(PanopticEvaluator(categories))


def test_size_errors_name_both_sides():
    evaluator = PanopticEvaluator(CATEGORIES)
    with pytest.raises(PanopticFormatError, match=re.escape("prediction: size 3x1 differs from the ground "
                                                            "truth's 2x3") + "$"):
        evaluator.add(_result(np.full((3, 2), 1001)), _result(np.full((1, 3), 1001)))
    with pytest.raises(PanopticFormatError, match=re.escape("p.png: size shape (6,) differs from the ground "
                                                            "truth's 2x3") + "$"):
        evaluator.add_coco(np.full((3, 2), 11), [], np.zeros(6, int), [], pred_source="p.png")


# ---- COCO-form input: defaults, ids and messages -----------------------------------------


def _exact(message: str) -> str:
    return "^" + re.escape(message) + "$"


def test_coco_form_defaults_name_the_sides_and_a_missing_iscrowd_is_not_crowd():
    evaluator = PanopticEvaluator(CATEGORIES)
    with pytest.raises(PanopticFormatError, match=_exact("ground truth: expected an (H, W) id map, got shape (6,)")):
        evaluator.add_coco(np.zeros(6, int), [], np.zeros(6, int), [])
    with pytest.raises(PanopticFormatError, match=_exact("prediction: size 3x1 differs from the ground truth's 2x3")):
        evaluator.add_coco(np.zeros((3, 2), int), [], np.zeros((1, 3), int), [])
    evaluator.add_coco(np.full((2, 2), 11), [{"id": 11, "category_id": 1}],       # no iscrowd key, no area
                       np.full((2, 2), 21), [{"id": 21, "category_id": 1}])
    assert (evaluator.tp[0], evaluator.fp[0], evaluator.fn[0]) == (1, 0, 0)


def test_prediction_id_errors_quote_the_first_ten():
    evaluator = PanopticEvaluator(CATEGORIES)
    ids = np.arange(1, 13).reshape(3, 4)
    with pytest.raises(PanopticFormatError, match=_exact(f"p.png: PNG segment ids {list(range(1, 11))} are not "
                                                         "listed in segments_info")):
        evaluator.add_coco(ids, [], ids, [], pred_source="p.png")
    listed = [{"id": i, "category_id": 1} for i in range(101, 113)]
    with pytest.raises(PanopticFormatError, match=_exact(f"p.png: segments_info ids {list(range(101, 111))} do not "
                                                         "occur in the PNG")):
        evaluator.add_coco(ids, [], np.zeros((3, 4), int), listed, pred_source="p.png")
    unknown = [{"id": i, "category_id": 100 + i} for i in range(1, 13)]
    with pytest.raises(PanopticFormatError, match=_exact(f"p.png: segments have categories "
                                                         f"{list(range(101, 111))} that are not evaluated")):
        evaluator.add_coco(ids, [], ids, unknown, pred_source="p.png")


@pytest.mark.parametrize("bad_id", [1.5, True, "7", None])
def test_segment_ids_must_be_integral_numbers(bad_id):
    with pytest.raises(PanopticFormatError, match="has no valid integer id"):
        PanopticEvaluator(CATEGORIES).add_coco(np.ones((1, 1), int), [{"id": bad_id, "category_id": 1}],
                                               np.zeros((1, 1), int), [])


def test_integral_float_ids_and_category_ids_of_other_types():
    evaluator = PanopticEvaluator(CATEGORIES)
    evaluator.add_coco(np.full((1, 1), 7), [{"id": 7.0, "category_id": np.int64(1)}],   # 7.0 is id 7
                       np.full((1, 1), 7), [{"id": 7, "category_id": 1}])
    assert evaluator.tp[0] == 1
    with pytest.raises(PanopticFormatError, match=_exact("p: segments have categories ['1'] that are not "
                                                         "evaluated")):
        evaluator.add_coco(np.full((1, 1), 7), [], np.full((1, 1), 7), [{"id": 7, "category_id": "1"}],
                           pred_source="p")


@pytest.mark.parametrize("bad", [5, ["id", "isthing"], {"id": 1}, {"isthing": 1}])
def test_categories_need_id_and_isthing(bad):
    with pytest.raises(PanopticFormatError, match=_exact(f"category {bad!r} lacks 'id' or 'isthing'")):
        PanopticEvaluator([bad])
