"""Semantic mIoU: the Cityscapes pixel-level rules on train-index maps."""
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
