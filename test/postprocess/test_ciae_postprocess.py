"""CIAE post-processing: oracle reconstruction, box filtering, stuff area, NMS, chunking."""
import numpy as np
import pytest
import torch

from panoptic_ros.labels import CITYSCAPES, COCO_PANOPTIC
from panoptic_ros.postprocess.ciae import (CIAEPostprocessConfig, assign_pixels, inside_boxes, postprocess_ciae,
                                           similarity)
from panoptic_ros.types import PanopticResult

STUFF_IDS = [CITYSCAPES.ids[i] for i in CITYSCAPES.stuff_train_indices]
THING_IDS = [CITYSCAPES.ids[i] for i in CITYSCAPES.thing_train_indices]
E = 16


def _gt_quarter() -> np.ndarray:
    """A 16 x 24 panoptic map at 1/4 scale: sky, building, road, two touching cars, a person."""
    q = np.full((16, 24), 7000, np.int32)  # road
    q[:4] = 23000  # sky
    q[4:8] = 11000  # building
    q[8:13, 2:8] = 26001  # car 1
    q[9:13, 8:12] = 26002  # car 2 touches car 1
    q[6:14, 15:18] = 24001  # person over building and road
    return q


def _gt_quarter_without_corners() -> np.ndarray:
    """Stuff bands across the image, things as full-height columns (two touching).

    Bilinear 4x upsampling of block-constant embeddings moves no straight boundary, but a
    convex corner pixel of a block gets weight 0.625^2 < 0.5 from its own cell, so only a
    corner-free layout is reproduced exactly at input resolution.
    """
    q = np.full((16, 24), 7000, np.int32)
    q[:4] = 23000
    q[4:8] = 11000
    q[:, 2:6] = 26001
    q[:, 6:9] = 26002
    q[:, 15:18] = 24001
    return q


def _oracle_outputs(quarter: np.ndarray, scores: dict[int, float]) -> dict[str, torch.Tensor]:
    """Outputs whose embeddings are one orthonormal vector per GT segment (its mean) and
    whose proposals are the GT boxes, found at a location inside each instance."""
    torch.manual_seed(0)
    basis = torch.linalg.qr(torch.randn(E, E))[0].t()  # orthonormal rows
    gt = PanopticResult.from_panoptic_map(np.kron(quarter, np.ones((4, 4), np.int32)), CITYSCAPES)
    vectors = {}
    stuff = torch.empty(len(STUFF_IDS), E)
    for i, cid in enumerate(STUFF_IDS):  # stuff memory: one basis row per stuff class
        stuff[i] = basis[i]
        vectors[cid * 1000] = basis[i]
    things = [s for s in gt.segments if s.is_thing]
    for k, seg in enumerate(things):
        vectors[seg.id] = basis[len(STUFF_IDS) + k]
    emb = torch.stack([torch.stack([vectors[int(v)] for v in row]) for row in quarter]).permute(2, 0, 1)
    n = len(things) + 2
    cls = torch.zeros(1, n, len(THING_IDS))
    boxes = torch.zeros(1, n, 4)
    locations = torch.zeros(1, n, 2)
    for k, seg in enumerate(things):
        x, y, w, h = seg.bbox
        cls[0, k, THING_IDS.index(seg.category_id)] = scores[seg.id] ** 2  # score = sqrt(cls * 1)
        boxes[0, k] = torch.tensor([x, y, x + w, y + h], dtype=torch.float32)
        locations[0, k] = torch.tensor([x + w // 2, y + h // 2], dtype=torch.float32)
    cls[0, -2:, 0] = 0.05  # distractors below the score threshold
    return {"cls_scores": cls, "centerness": torch.ones(1, n), "boxes": boxes, "locations": locations,
            "embeddings": emb[None], "stuff_memory": stuff[None],
            "image_size": torch.tensor([[quarter.shape[0] * 4, quarter.shape[1] * 4]])}


SCORES = {26001: 0.9, 26002: 0.8, 24001: 0.7}


@pytest.mark.parametrize("max_elements", [1 << 25, 1000])
@pytest.mark.parametrize("resolution, layout", [("input", _gt_quarter_without_corners), ("quarter", _gt_quarter)])
def test_oracle_reproduces_the_ground_truth_exactly(max_elements, resolution, layout):
    quarter = layout()
    gt = np.kron(quarter, np.ones((4, 4), np.int32))
    config = CIAEPostprocessConfig(stuff_min_area=0, max_similarity_elements=max_elements, resolution=resolution)
    result = postprocess_ciae(_oracle_outputs(quarter, SCORES), config=config, label_space=CITYSCAPES)
    np.testing.assert_array_equal(result.panoptic, gt)
    result.validate()
    for seg_id, score in SCORES.items():
        assert result.segment(seg_id).score == pytest.approx(score)
    assert 0.9 < result.segment(7000).score <= 1.0  # stuff: mean winning similarity, clamped to [0, 1]


def test_corners_are_rounded_at_input_resolution_only():
    quarter = _gt_quarter()
    gt = np.kron(quarter, np.ones((4, 4), np.int32))
    result = postprocess_ciae(_oracle_outputs(quarter, SCORES), config=CIAEPostprocessConfig(stuff_min_area=0),
                              label_space=CITYSCAPES)
    wrong = np.argwhere(result.panoptic != gt)
    assert 0 < len(wrong) <= 4 * 3  # at most the outer corner pixel of each instance
    assert all(gt[y, x] in SCORES for y, x in wrong)


def test_instances_are_numbered_by_score():
    quarter = _gt_quarter()
    swapped = {26001: 0.8, 26002: 0.9, 24001: 0.7}
    config = CIAEPostprocessConfig(stuff_min_area=0, resolution="quarter")
    result = postprocess_ciae(_oracle_outputs(quarter, swapped), config=config, label_space=CITYSCAPES)
    gt = np.kron(quarter, np.ones((4, 4), np.int32))
    expected = np.where(gt == 26001, 26002, np.where(gt == 26002, 26001, gt))
    np.testing.assert_array_equal(result.panoptic, expected)


def test_small_stuff_segments_become_void_with_the_area_scaled_by_resolution():
    quarter = _gt_quarter()
    quarter[0, 20] = 21000  # one 4 x 4 = 16 px vegetation cell in the sky
    quarter[14:16, 0:2] = 22000  # 8 x 8 = 64 px terrain
    outputs = _oracle_outputs(quarter, SCORES)
    # 4096 px at 800 x 1333 -> 4096 * (64 * 96) / (800 * 1333) = 23.6 px here
    result = postprocess_ciae(outputs, config=CIAEPostprocessConfig(resolution="quarter"), label_space=CITYSCAPES)
    assert (result.panoptic[0:4, 80:84] == 0).all()
    assert (result.panoptic[56:64, 0:8] == 22000).all()
    result = postprocess_ciae(outputs, config=CIAEPostprocessConfig(stuff_min_area=0, resolution="quarter"),
                              label_space=CITYSCAPES)
    assert (result.panoptic[0:4, 80:84] == 21000).all()


@pytest.mark.parametrize("reference, kept_at, dropped_at", [
    ((64, 96), 16, 17),        # the image's own size: the threshold is the pixel count itself
    ((128, 192), 64, 65),      # 4x the pixels: 4x the threshold
    ((32, 96), 8, 9),          # half the rows: half; H and W enter as the product H * W
    ((64, 48), 8, 9),          # half the columns
])
def test_stuff_area_threshold_scales_with_the_pixel_count_of_area_reference(reference, kept_at, dropped_at):
    # The 16 px vegetation cell sits exactly on the threshold at ``kept_at`` (kept: >=) and
    # one pixel-equivalent below it at ``dropped_at``. Threshold = stuff_min_area * (64 * 96)
    # / (H_ref * W_ref), worked out by hand for each reference size.
    quarter = _gt_quarter()
    quarter[0, 20] = 21000
    outputs = _oracle_outputs(quarter, SCORES)
    for min_area, expected in ((kept_at, 21000), (dropped_at, 0)):
        config = CIAEPostprocessConfig(stuff_min_area=min_area, area_reference=reference, resolution="quarter")
        result = postprocess_ciae(outputs, config=config, label_space=CITYSCAPES)
        assert (result.panoptic[0:4, 80:84] == expected).all(), (reference, min_area)


def test_score_threshold_and_nms_drop_proposals():
    quarter = _gt_quarter()
    outputs = _oracle_outputs(quarter, SCORES)
    # a duplicate of car 1's proposal (same box, lower score) is suppressed by NMS
    outputs["cls_scores"][0, -1] = outputs["cls_scores"][0, 1] * 0.9
    outputs["boxes"][0, -1] = outputs["boxes"][0, 1]
    outputs["locations"][0, -1] = outputs["locations"][0, 1]
    result = postprocess_ciae(outputs, config=CIAEPostprocessConfig(stuff_min_area=0), label_space=CITYSCAPES)
    assert sorted(s.id for s in result.segments if s.is_thing) == [24001, 26001, 26002]
    # raising the threshold above the person's score removes it; its pixels go to stuff
    result = postprocess_ciae(outputs, config=CIAEPostprocessConfig(score_threshold=0.75, stuff_min_area=0),
                              label_space=CITYSCAPES)
    assert sorted(s.id for s in result.segments if s.is_thing) == [26001, 26002]
    assert not (result.panoptic == 24001).any()


def test_max_instances_zero_gives_stuff_only():
    outputs = _oracle_outputs(_gt_quarter(), SCORES)
    result = postprocess_ciae(outputs, config=CIAEPostprocessConfig(max_instances=0, stuff_min_area=0),
                              label_space=CITYSCAPES)
    assert result.segments and not any(s.is_thing for s in result.segments)
    one = postprocess_ciae(outputs, config=CIAEPostprocessConfig(max_instances=1, stuff_min_area=0),
                           label_space=CITYSCAPES)
    assert [s.id for s in one.segments if s.is_thing] == [26001]  # the best-scoring proposal


def test_score_is_geometric_mean_of_class_and_centerness():
    outputs = _oracle_outputs(_gt_quarter(), SCORES)
    outputs["centerness"][0, 1] = 0.25  # proposals follow segment ids: 24001, 26001, 26002
    # car 1: sqrt(0.81 * 0.25) = 0.45
    result = postprocess_ciae(outputs, config=CIAEPostprocessConfig(stuff_min_area=0), label_space=CITYSCAPES)
    car = [s for s in result.segments if s.category_id == 26 and s.score < 0.6]
    assert len(car) == 1 and car[0].score == pytest.approx(0.45, rel=1e-6)


def test_inside_boxes_and_expansion():
    boxes = torch.tensor([[10.0, 10.0, 20.0, 20.0]])
    x = torch.tensor([10.0, 20.0, 21.0, 7.5, 22.5, 22.6])
    y = torch.full_like(x, 15.0)
    assert inside_boxes(boxes, x, y)[:, 0].tolist() == [True, True, False, False, False, False]
    assert inside_boxes(boxes, x, y, expand=1.5)[:, 0].tolist() == [True, True, True, True, True, False]
    grid = inside_boxes(boxes, torch.arange(30.0)[None, :], torch.arange(30.0)[:, None])
    assert grid.shape == (30, 30, 1) and grid.sum() == 11 * 11
    assert grid[10:21, 10:21].all()


def test_similarity_is_minus_infinity_outside_instance_boxes():
    pixels = torch.nn.functional.normalize(torch.randn(6, 8, 4), dim=-1)
    queries = torch.nn.functional.normalize(torch.randn(3, 4), dim=1)  # 2 stuff + 1 instance
    box = torch.tensor([[2.0, 1.0, 5.0, 4.0]])
    sim = similarity(pixels, queries, box, (0, 6)).view(6, 8, 3)
    dense = pixels @ queries.t()
    inside = torch.zeros(6, 8, dtype=torch.bool)
    inside[1:4, 2:5] = True  # pixel centres c + 0.5 inside [2, 5] x [1, 4]
    assert torch.isneginf(sim[..., 2][~inside]).all()
    torch.testing.assert_close(sim[..., 2][inside], dense[..., 2][inside])
    torch.testing.assert_close(sim[..., :2], dense[..., :2])
    # rows 2..5 of the same map: boxes are tested against those rows' coordinates
    torch.testing.assert_close(similarity(pixels, queries, box, (2, 6)).view(4, 8, 3), sim[2:])


def test_two_instances_with_identical_embeddings_are_split_by_their_boxes():
    pixels = torch.zeros(4, 8, 2)
    pixels[..., 0] = 1.0  # every pixel looks like the (identical) instance queries
    queries = torch.tensor([[0.0, 1.0], [1.0, 0.0], [1.0, 0.0]])  # stuff, instance a, instance b
    boxes = torch.tensor([[0.0, 0.0, 4.0, 4.0], [4.0, 0.0, 8.0, 4.0]])
    labels, best = assign_pixels(pixels, queries, boxes, max_elements=1 << 20)
    assert (labels[:, :4] == 1).all() and (labels[:, 4:] == 2).all()
    assert torch.equal(best, torch.ones(4, 8))


def test_label_space_mismatch_raises():
    outputs = _oracle_outputs(_gt_quarter(), SCORES)
    with pytest.raises(ValueError, match="stuff_memory"):
        postprocess_ciae(outputs, config=CIAEPostprocessConfig(), label_space=COCO_PANOPTIC)


def test_config_validation():
    with pytest.raises(ValueError, match="score_threshold"):
        CIAEPostprocessConfig(score_threshold=1.5)
    with pytest.raises(ValueError, match="pre_nms_top_k"):
        CIAEPostprocessConfig(pre_nms_top_k=0)
