"""NMS against a brute-force greedy reference (pure Python, one class at a time)."""
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
import torch

from panoptic_ros.postprocess.nms import batched_nms, box_area, box_iou


def _iou_py(a, b) -> float:
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    area = lambda r: max(0.0, r[2] - r[0]) * max(0.0, r[3] - r[1])  # noqa: E731
    union = area(a) + area(b) - inter
    return inter / union if union > 0 else 0.0


def _reference(boxes, scores, classes, thr, max_output=None):
    """Greedy NMS per class, merged by score; ties keep the lower index first."""
    order = sorted(range(len(scores)), key=lambda i: (-scores[i], i))
    kept = []
    for i in order:
        if all(classes[j] != classes[i] or _iou_py(boxes[i], boxes[j]) <= thr for j in kept):
            kept.append(i)
    return kept if max_output is None else kept[:max_output]


def _random_case(seed: int):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(0, 60))
    # integer coordinates: every IoU is a ratio of exact integers, so the float32 tensor
    # code and the float64 reference round identically (ties at the threshold included)
    xy = rng.integers(0, 40, size=(n, 2))
    wh = rng.integers(0, 25, size=(n, 2))  # zero-width boxes too
    boxes = np.concatenate([xy, xy + wh], axis=1).astype(np.float32)
    scores = rng.integers(0, 8, size=n).astype(np.float32) / 8  # many equal scores
    if n > 4:
        boxes[1] = boxes[0]  # identical boxes with identical scores
        scores[1] = scores[0]
    classes = rng.integers(0, 3, size=n)
    return boxes, scores, classes


@pytest.mark.parametrize("seed", range(60))
@pytest.mark.parametrize("thr", [0.0, 0.3, 0.5, 0.7])
def test_batched_nms_equals_brute_force(seed, thr):
    boxes, scores, classes = _random_case(seed)
    keep = batched_nms(torch.from_numpy(boxes), torch.from_numpy(scores), torch.from_numpy(classes), thr)
    expected = _reference(boxes.tolist(), scores.tolist(), classes.tolist(), thr)
    assert keep.tolist() == expected


@pytest.mark.parametrize("seed", range(10))
def test_class_agnostic_and_max_output(seed):
    boxes, scores, classes = _random_case(100 + seed)
    zeros = [0] * len(scores)
    keep = batched_nms(torch.from_numpy(boxes), torch.from_numpy(scores), None, 0.5)
    assert keep.tolist() == _reference(boxes.tolist(), scores.tolist(), zeros, 0.5)
    keep = batched_nms(torch.from_numpy(boxes), torch.from_numpy(scores), torch.from_numpy(classes), 0.5,
                       max_output=3)
    assert keep.tolist() == _reference(boxes.tolist(), scores.tolist(), classes.tolist(), 0.5, 3)


def test_exact_tie_at_threshold_is_kept():
    # IoU exactly 0.5: suppression needs IoU > threshold
    boxes = torch.tensor([[0.0, 0.0, 4.0, 2.0], [0.0, 0.0, 2.0, 2.0], [0.0, 0.0, 3.0, 2.0]])
    assert box_iou(boxes[:1], boxes[1:2]).item() == 0.5
    keep = batched_nms(boxes, torch.tensor([0.9, 0.8, 0.7]), torch.tensor([0, 0, 0]), 0.5)
    assert keep.tolist() == [0, 1]  # box 2 overlaps box 0 with IoU 0.75


def test_box_iou_values_and_degenerate_boxes():
    a = torch.tensor([[0.0, 0.0, 10.0, 10.0], [5.0, 5.0, 5.0, 5.0]])
    b = torch.tensor([[5.0, 0.0, 15.0, 10.0], [5.0, 5.0, 5.0, 5.0]])
    iou = box_iou(a, b)
    assert iou[0, 0].item() == pytest.approx(50 / 150)
    assert iou[1, 1].item() == 0.0  # empty union gives 0, not NaN
    assert torch.isfinite(iou).all()


def test_sub_pixel_boxes_have_their_true_area_and_iou():
    # boxes smaller than a pixel (e.g. at 1/4 scale): area 0.5 x 2 = 1, IoU of a 0.5 x 0.5
    # box with itself 1 and with its left half 0.5; nothing is rounded up to a pixel
    tiny = torch.tensor([[0.0, 0.0, 0.5, 2.0], [0.0, 0.0, 0.5, 0.5], [0.0, 0.0, 0.25, 0.5]])
    assert box_area(tiny).tolist() == [1.0, 0.25, 0.125]
    iou = box_iou(tiny[1:], tiny[1:])
    torch.testing.assert_close(iou, torch.tensor([[1.0, 0.5], [0.5, 1.0]]))


def test_bad_shapes_raise():
    with pytest.raises(ValueError, match="boxes must be"):
        batched_nms(torch.zeros(3, 5), torch.zeros(3), None, 0.5)
    assert batched_nms(torch.zeros(0, 4), torch.zeros(0), None, 0.5).numel() == 0


def test_max_output_zero_keeps_nothing_and_negative_is_rejected():
    boxes = torch.tensor([[0.0, 0.0, 4.0, 4.0], [10.0, 10.0, 12.0, 12.0]])
    scores = torch.tensor([0.9, 0.8])
    keep = batched_nms(boxes, scores, None, 0.5, max_output=0)
    assert keep.dtype == torch.int64 and keep.tolist() == []
    assert batched_nms(boxes, scores, None, 0.5, max_output=1).tolist() == [0]
    with pytest.raises(ValueError, match="max_output must be >= 0"):
        batched_nms(boxes, scores, None, 0.5, max_output=-1)


_coords = st.integers(0, 30)
_boxes = st.lists(st.tuples(_coords, _coords, st.integers(0, 12), st.integers(0, 12),
                            st.integers(0, 4), st.integers(0, 2)), max_size=25)


@settings(max_examples=200, deadline=None)
@given(_boxes, st.sampled_from([0.0, 0.25, 1 / 3, 0.5, 2 / 3, 1.0]), st.one_of(st.none(), st.integers(0, 6)))
def test_nms_equals_brute_force_on_integer_boxes(rows, thr, max_output):
    # Integer boxes on a small grid: many IoUs equal a threshold exactly (kept: the test
    # is IoU > threshold), and scores in quarters give many ties (lower index first).
    boxes = [[x, y, x + w, y + h] for x, y, w, h, _, _ in rows]
    scores = [s / 4 for *_, s, _ in rows]
    classes = [c for *_, c in rows]
    keep = batched_nms(torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4), torch.tensor(scores),
                       torch.tensor(classes, dtype=torch.int64), thr, max_output=max_output)
    assert keep.tolist() == _reference(boxes, scores, classes, thr, max_output)
