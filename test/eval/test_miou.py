"""Semantic mIoU: the Cityscapes pixel-level rules on train-index maps."""
import warnings

import numpy as np
import pytest
from sklearn.metrics import jaccard_score

from panoptic_ros.eval import SemanticConfusion, miou_of_results
from panoptic_ros.labels import CITYSCAPES
from panoptic_ros.types import PanopticResult


def test_hand_computed_ious_follow_the_cityscapes_rules():
    gt = np.array([[0, 0, 1, 1, 255, 255]], np.uint8)
    pred = np.array([[0, 255, 1, 0, 2, 1]], np.uint8)
    confusion = SemanticConfusion(4)
    confusion.add(gt, pred)
    iou = confusion.per_class_iou()
    # class 0: TP 1, FN 1 (predicted 255), FP 1 (on GT 1); class 1: TP 1, FN 1; the
    # predictions on GT 255 count nowhere; class 2 only predicted on ignore, class 3 absent.
    assert iou[:2].tolist() == [1 / 3, 1 / 2]
    assert np.isnan(iou[2]) and np.isnan(iou[3])
    assert confusion.miou() == pytest.approx((1 / 3 + 1 / 2) / 2)
    assert confusion.pixel_accuracy() == 2 / 4
    assert confusion.matrix[:, 4].tolist() == [1, 0, 0, 0]   # the 255 column


def test_per_class_iou_matches_scikit_learn_jaccard():
    rng = np.random.default_rng(0)
    confusion = SemanticConfusion(6)
    gts, preds = [], []
    for _ in range(3):
        gt = rng.integers(0, 6, (20, 30))
        gt[rng.random(gt.shape) < 0.1] = 255
        pred = np.where(rng.random(gt.shape) < 0.6, gt, rng.integers(0, 6, gt.shape))
        pred[rng.random(gt.shape) < 0.05] = 255
        confusion.add(gt, pred)
        gts.append(gt.ravel())
        preds.append(pred.ravel())
    gt, pred = np.concatenate(gts), np.concatenate(preds)
    labelled = gt != 255
    expected = jaccard_score(gt[labelled], pred[labelled], labels=range(6), average=None)
    np.testing.assert_allclose(confusion.per_class_iou(), expected, rtol=1e-12)
    assert confusion.miou() == pytest.approx(expected.mean(), rel=1e-12)


def test_merge_and_results_convenience():
    gt_map = np.full((4, 8), 7000, np.int32)
    gt_map[:, :2] = 26001
    gt_map[0, :] = 0
    pred_map = gt_map.copy()
    pred_map[1:, 2] = 26002
    gt = PanopticResult.from_panoptic_map(gt_map, CITYSCAPES)
    pred = PanopticResult.from_panoptic_map(pred_map, CITYSCAPES)
    summary = miou_of_results([(gt, pred), (gt, gt)], CITYSCAPES)
    road, car = CITYSCAPES.train_index(7), CITYSCAPES.train_index(26)
    assert summary["per_class"][7] == 33 / 36 and summary["per_class"][26] == 12 / 15
    assert summary["miou"] == pytest.approx((33 / 36 + 12 / 15) / 2)
    assert np.isnan(summary["per_class"][11])
    first, second = SemanticConfusion(19), SemanticConfusion(19)
    first.add_results(gt, pred, CITYSCAPES)
    second.add(gt.semantic_map(CITYSCAPES), gt.semantic_map(CITYSCAPES))
    merged = first.merge(second)
    assert merged.matrix[road, road] == 33 and merged.matrix[road, car] == 3


@pytest.mark.parametrize("gt, pred, message", [
    (np.zeros((2, 2), int), np.zeros((2, 3), int), "shape"),
    (np.full((2, 2), 7), np.zeros((2, 2), int), "ground truth holds 7"),
    (np.zeros((2, 2), int), np.full((2, 2), 300), "prediction holds 300"),
    (np.zeros((2, 2), int), np.full((2, 2), -1), "prediction holds -1"),
    (np.zeros((2, 2), int), np.zeros((2, 2)), "integer train indices"),
])
def test_bad_maps_raise(gt, pred, message):
    confusion = SemanticConfusion(5)
    with pytest.raises(ValueError, match=message):
        confusion.add(gt, pred)
    assert confusion.matrix.sum() == 0


@pytest.mark.parametrize("gt, pred, message", [
    (np.zeros((2, 2), int), np.array([[0, 8], [6, 0]]), "prediction holds 6, not a train index of 5 classes nor 255"),
    (np.zeros((2, 2), int), np.full((2, 2), 256), "prediction holds 256, not a train index of 5 classes nor 255"),
    (np.zeros((2, 2), int), np.array([[-1, 3], [0, 0]]), "prediction holds -1, not a train index of 5 classes nor 255"),
    (np.array([[0, 300], [0, 0]]), np.zeros((2, 2), int),
     "ground truth holds 300, not a train index of 5 classes nor 255"),
])
def test_bad_values_are_named_exactly(gt, pred, message):
    with pytest.raises(ValueError) as refused:
        SemanticConfusion(5).add(gt, pred)
    assert str(refused.value) == message


def test_class_count_range_matrix_and_mismatches_are_checked():
    for bad in (0, 255):
        with pytest.raises(ValueError) as refused:
            SemanticConfusion(bad)
        assert str(refused.value) == f"num_classes must lie in [1, 254], got {bad}"
    assert SemanticConfusion(254).matrix.shape == (254, 255)
    one = SemanticConfusion(1)
    assert one.matrix.shape == (1, 2) and one.matrix.dtype == np.int64
    with pytest.raises(ValueError) as refused:
        one.merge(SemanticConfusion(2))
    assert str(refused.value) == "cannot merge confusions of 2 and 1 classes"
    result = PanopticResult.from_panoptic_map(np.full((2, 2), 7000, np.int32), CITYSCAPES)
    with pytest.raises(ValueError) as refused:
        one.add_results(result, result, CITYSCAPES)
    assert str(refused.value) == "label space 'cityscapes' has 19 classes, this confusion 1"


def test_summary_by_train_index_and_empty_confusions_without_warnings():
    confusion = SemanticConfusion(3)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # absent classes and empty confusions are NaN, not RuntimeWarnings
        assert np.isnan(confusion.miou()) and np.isnan(confusion.pixel_accuracy())
        confusion.add(np.array([[0, 1, 1]]), np.array([[0, 1, 0]]))  # class 0: TP 1, FP 1; class 1: TP 1, FN 1
        summary = confusion.summarize()
    assert summary["pixel_accuracy"] == 2 / 3 and summary["miou"] == 0.5
    per_class = summary["per_class"]
    assert list(per_class) == [0, 1, 2] and per_class[0] == 0.5 and np.isnan(per_class[2])
    single = SemanticConfusion(2)
    single.add(np.array([[0]]), np.array([[0]]))  # TP + FP + FN = 1
    assert single.per_class_iou()[0] == 1.0
