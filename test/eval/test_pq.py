"""PQ/SQ/RQ against cityscapesscripts' evaluatePanoptic, plus hand-computed rule cases."""
import json

import numpy as np
import pytest
from pq_cases import (
    COCO_CATEGORIES, assert_same_results, random_case, results_to_pair, run_official, to_results,
    write_case)

from panoptic_ros.eval import PanopticEvaluator
from panoptic_ros.eval.cli import main
from panoptic_ros.labels import CITYSCAPES
from panoptic_ros.types import PanopticFormatError, PanopticResult

CS_THINGS, CS_STUFF = (24, 25, 26), (7, 8, 11, 21, 23)


@pytest.mark.parametrize("seed", range(60))
def test_coco_pairs_match_the_official_evaluation(seed, tmp_path, monkeypatch):
    pairs = random_case(seed)
    paths = write_case(tmp_path, pairs)
    official, official_file = run_official(paths, monkeypatch)

    evaluator = PanopticEvaluator(COCO_CATEGORIES)
    for pair in pairs:
        evaluator.add_coco(pair.gt, pair.gt_info, pair.pred, pair.pred_info)
    assert_same_results(evaluator.summarize(), official)

    out = tmp_path / "ours.json"
    assert main(["--gt-json", str(paths["gt_json"]), "--gt-folder", str(paths["gt_folder"]),
                 "--pred-json", str(paths["pred_json"]), "--pred-folder", str(paths["pred_folder"]),
                 "--json-out", str(out)]) == 0
    ours_file = json.loads(out.read_text())
    assert_same_results(ours_file, official_file)
    # One process adds the IoUs in the official order, so even the bytes agree.
    assert out.read_text() == (tmp_path / "official.json").read_text()


@pytest.mark.parametrize("seed", range(100, 125))
def test_panoptic_results_match_the_official_evaluation(seed, tmp_path, monkeypatch):
    rng = np.random.default_rng(seed)
    results = [to_results(pair, CITYSCAPES, rng)
               for pair in random_case(seed, things=CS_THINGS, stuff=CS_STUFF, adversarial=False)]
    paths = write_case(tmp_path, [results_to_pair(gt, pred) for gt, pred in results],
                       categories=CITYSCAPES.coco_categories())
    official, _ = run_official(paths, monkeypatch)
    evaluator = PanopticEvaluator(CITYSCAPES)
    for gt, pred in results:
        evaluator.add(gt, pred)
    assert_same_results(evaluator.summarize(), official)


def test_merged_accumulators_equal_one_accumulator():
    pairs = random_case(7, num_images=6)
    whole, first, second = (PanopticEvaluator(COCO_CATEGORIES) for _ in range(3))
    for k, pair in enumerate(pairs):
        whole.add_coco(pair.gt, pair.gt_info, pair.pred, pair.pred_info)
        (first if k % 2 else second).add_coco(pair.gt, pair.gt_info, pair.pred, pair.pred_info)
    merged = first.merge(second)
    assert merged.num_images == 6
    for name in ("tp", "fp", "fn"):
        assert np.array_equal(getattr(merged, name), getattr(whole, name))
    np.testing.assert_allclose(merged.iou, whole.iou, rtol=1e-12)
    assert_same_results(merged.summarize(), whole.summarize(), tol=1e-12)
    with pytest.raises(ValueError, match="different categories"):
        whole.merge(PanopticEvaluator(CITYSCAPES))


# ---- the rules on hand-made 4 x 8 images (Cityscapes ids: car 26 thing, road 7 stuff) ----

def _evaluate(gt_map, pred_map, space=CITYSCAPES) -> tuple[PanopticEvaluator, dict]:
    evaluator = PanopticEvaluator(space)
    evaluator.add(PanopticResult.from_panoptic_map(np.array(gt_map, np.int32), space),
                  PanopticResult.from_panoptic_map(np.array(pred_map, np.int32), space))
    return evaluator, evaluator.summarize()


def _counts(evaluator, category_id):
    i = evaluator.category_ids.index(category_id)
    return int(evaluator.tp[i]), int(evaluator.fp[i]), int(evaluator.fn[i])


def test_iou_of_exactly_one_half_is_no_match_and_just_above_is():
    gt = np.full((4, 8), 7000)
    gt[0, :4] = 26001                       # 4 px car
    half = gt.copy()
    half[0, 2:4] = 7000                     # prediction covers 2 of them: IoU = 2 / 4
    evaluator, res = _evaluate(gt, half)
    assert _counts(evaluator, 26) == (0, 1, 1)
    assert res["per_class"][26] == {"pq": 0.0, "sq": 0, "rq": 0.0}
    more = gt.copy()
    more[0, 3] = 7000                       # 3 of 4: IoU = 0.75
    evaluator, res = _evaluate(gt, more)
    assert _counts(evaluator, 26) == (1, 0, 0)
    assert res["per_class"][26] == {"pq": 0.75, "sq": 0.75, "rq": 1.0}


def test_void_pixels_are_removed_from_the_union():
    gt = np.full((4, 8), 7000)
    gt[0, :4] = 26001
    gt[1, :4] = 0                           # VOID under the prediction's extra pixels
    pred = np.full((4, 8), 7000)
    pred[:2, :4] = 26001                    # 8 px: 4 on the car, 4 on VOID -> IoU 4 / 4
    evaluator, res = _evaluate(gt, pred)
    assert _counts(evaluator, 26) == (1, 0, 0)
    assert res["per_class"][26]["pq"] == 1.0
    assert res["per_class"][7] == {"pq": 1.0, "sq": 1.0, "rq": 1.0}   # road 24 px vs 24 px outside VOID
    assert res["All"]["n"] == 2 and res["Things"]["n"] == 1 and res["Stuff"]["n"] == 1


@pytest.mark.parametrize("on_crowd, crowd_class, counted", [
    (2, 26, True),      # exactly half on the car crowd: still a FP
    (3, 26, False),     # more than half: ignored
    (3, 24, True),      # on a crowd of another class (person): a FP
])
def test_predictions_mostly_on_same_class_crowd_are_not_false_positives(on_crowd, crowd_class, counted):
    gt = np.full((4, 8), 7000)
    gt[0, :on_crowd] = crowd_class * 1000   # crowd: a thing with instance 0
    pred = np.full((4, 8), 7000)
    pred[0, :4] = 26001                     # 4 px predicted car, no GT car instance
    evaluator, res = _evaluate(gt, pred)
    assert _counts(evaluator, 26) == (0, int(counted), 0)
    assert _counts(evaluator, crowd_class)[2] == 0   # crowd is never a FN
    assert res["Things"]["n"] == int(counted)


def test_crowd_and_void_add_up_for_the_ignore_rule():
    gt = np.full((4, 8), 7000)
    gt[0, :2] = 26000
    gt[0, 2] = 0
    pred = np.full((4, 8), 7000)
    pred[0, :5] = 26001                     # 2 crowd + 1 VOID of 5 px > half: ignored
    evaluator, _ = _evaluate(gt, pred)
    assert _counts(evaluator, 26) == (0, 0, 0)


def test_absent_classes_report_zeros_and_an_empty_group_reports_n_zero():
    gt = np.full((4, 8), 7000)
    evaluator, res = _evaluate(gt, gt)
    assert res["per_class"][26] == {"pq": 0.0, "sq": 0.0, "rq": 0.0}
    assert set(res["per_class"]) == set(CITYSCAPES.ids)
    assert res["Stuff"] == {"pq": 1.0, "sq": 1.0, "rq": 1.0, "n": 1}
    # The official code divides by zero here; we report zeros with n = 0.
    assert res["Things"] == {"pq": 0.0, "sq": 0.0, "rq": 0.0, "n": 0}


def test_only_the_last_listed_crowd_of_a_class_counts():
    gt = np.zeros((4, 8), np.int32)
    gt[0, :4], gt[1, :4], gt[2:, :] = 5, 6, 9
    pred = np.zeros((4, 8), np.int32)
    pred[0, :4] = 1                         # a car entirely on crowd region 5
    pred[2:, :] = 2
    gt_info = [{"id": 5, "category_id": 26, "iscrowd": 1}, {"id": 6, "category_id": 26, "iscrowd": 1},
               {"id": 9, "category_id": 7, "iscrowd": 0}]
    pred_info = [{"id": 1, "category_id": 26}, {"id": 2, "category_id": 7}]
    for order, fp in ((gt_info, 1), (gt_info[::-1][1:] + gt_info[2:], 0)):
        evaluator = PanopticEvaluator(CITYSCAPES)
        evaluator.add_coco(gt, order, pred, pred_info)
        assert _counts(evaluator, 26) == (0, fp, 0)


def test_listed_gt_area_is_used_and_unlisted_gt_ids_are_not_void():
    gt = np.zeros((4, 8), np.int32)
    gt[0, :4], gt[1, :4], gt[2:, :] = 5, 77, 9     # 77 is not in segments_info
    pred = np.zeros((4, 8), np.int32)
    pred[:2, :4], pred[2:, :] = 1, 2
    gt_info = [{"id": 5, "category_id": 26, "iscrowd": 0, "area": 4}, {"id": 9, "category_id": 7, "iscrowd": 0}]
    pred_info = [{"id": 1, "category_id": 26}, {"id": 2, "category_id": 7}]
    evaluator = PanopticEvaluator(CITYSCAPES)
    evaluator.add_coco(gt, gt_info, pred, pred_info)   # car IoU = 4 / 8: no match
    assert _counts(evaluator, 26) == (0, 1, 1)
    gt_info[0]["area"] = 3                              # listed area wins: IoU = 4 / 7
    evaluator = PanopticEvaluator(CITYSCAPES)
    evaluator.add_coco(gt, gt_info, pred, pred_info)
    assert _counts(evaluator, 26) == (1, 0, 0)
    assert evaluator.iou[evaluator.category_ids.index(26)] == 4 / 7


@pytest.mark.parametrize("change, message", [
    (lambda g, gi, p, pi: (g, gi, p[:, :-1], pi), "size 7x4 differs from the ground truth's 8x4"),
    (lambda g, gi, p, pi: (g, gi, p, pi[:1]), r"PNG segment ids \[2\] are not listed"),
    (lambda g, gi, p, pi: (g, gi, p, pi + [{"id": 3, "category_id": 7}]), r"ids \[3\] do not occur in the PNG"),
    (lambda g, gi, p, pi: (g, gi, p, [{"id": 1, "category_id": 29}, pi[1]]), r"categories \[29\] that are not eval"),
    (lambda g, gi, p, pi: (g, gi, p, pi + [{"id": 0, "category_id": 7}]), "lists id 0, which is VOID"),
    (lambda g, gi, p, pi: (g, gi, p - 5, pi), r"must lie in \[0, 2\*\*24\), found -4"),
    (lambda g, gi, p, pi: (g, gi, p.astype(float), pi), "must be integers"),
    (lambda g, gi, p, pi: (g, gi, p, [{"category_id": 7}]), "has no valid integer id"),
])
def test_bad_predictions_raise_errors_naming_the_source(change, message):
    gt = np.full((4, 8), 9, np.int32)
    pred = np.full((4, 8), 2, np.int32)
    pred[0, 0] = 1
    args = change(gt, [{"id": 9, "category_id": 7, "iscrowd": 0}], pred,
                  [{"id": 1, "category_id": 26}, {"id": 2, "category_id": 7}])
    evaluator = PanopticEvaluator(CITYSCAPES)
    with pytest.raises(PanopticFormatError, match=message) as info:
        evaluator.add_coco(*args, pred_source="preds/a.png")
    assert str(info.value).startswith("preds/a.png: ")
    assert evaluator.num_images == 0 and not evaluator.fp.any()


def test_categories_from_coco_dicts_keep_order_and_reject_missing_isthing():
    evaluator = PanopticEvaluator([{"id": 5, "isthing": 0, "name": "a"}, {"id": 2, "isthing": 1}])
    assert evaluator.category_ids == (5, 2) and evaluator.names == ("a", "2")
    assert evaluator.is_thing.tolist() == [False, True]
    with pytest.raises(PanopticFormatError, match="lacks 'id' or 'isthing'"):
        PanopticEvaluator([{"id": 5}])


def test_bad_ground_truth_raises_errors_naming_the_source():
    evaluator = PanopticEvaluator(CITYSCAPES)
    ids = np.full((2, 2), 9, np.int32)
    with pytest.raises(PanopticFormatError, match="^gt/a.png: segments_info holds an area that is not a number"):
        evaluator.add_coco(ids, [{"id": 9, "category_id": 7, "area": "big"}], ids, [{"id": 9, "category_id": 7}],
                           gt_source="gt/a.png")
    with pytest.raises(PanopticFormatError, match=r"^gt/a.png: segment ids must lie in \[0, 2\*\*24\)"):
        evaluator.add_coco(ids << 24, [], ids, [{"id": 9, "category_id": 7}], gt_source="gt/a.png")
