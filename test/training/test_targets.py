"""PanoNet and CIAE training targets on small hand-built scenes, checked exactly."""
import math

import numpy as np
import pytest

from panoptic_ros.labels import CITYSCAPES, COCO_PANOPTIC
from panoptic_ros.models.ciae import HEAD_STRIDES
from panoptic_ros.models.common import strided_size
from panoptic_ros.training.targets import ciae_targets, fcos_locations, panonet_targets, sample_grid
from panoptic_ros.types import PanopticResult

ROAD, SKY, PERSON, CAR = 7000, 23000, 24000, 26000   # Cityscapes label id * 1000
CAR_CLASS, PERSON_CLASS = 2, 0                        # thing-class indices (label-space order)
NUM_STUFF = 11                                        # Cityscapes stuff classes; merged thing class = 11


def scene() -> PanopticResult:
    """256 x 256: road, sky on top, an L-shaped car, a large person, a person crowd, VOID."""
    pan = np.full((256, 256), ROAD, np.int32)
    pan[:16, :] = SKY
    pan[16:64, 0:16] = CAR + 1          # L: vertical bar ...
    pan[48:64, 0:48] = CAR + 1          # ... and foot; box x 0..48, y 16..64
    pan[100:240, 100:240] = PERSON + 1  # 140 x 140 box
    pan[200:256, 0:40] = PERSON         # crowd
    pan[0:4, 200:256] = 0               # VOID
    return PanopticResult.from_panoptic_map(pan, CITYSCAPES)


def location_index(height: int, width: int, level: int, x: int, y: int) -> int:
    stride = HEAD_STRIDES[level]
    offset = sum(np.prod(strided_size(height, width, s)) for s in HEAD_STRIDES[:level])
    assert (x - stride // 2) % stride == 0 and (y - stride // 2) % stride == 0
    return int(offset + (y // stride) * strided_size(height, width, stride)[1] + x // stride)


def test_fcos_positive_needs_the_mask_not_just_the_box():
    t = ciae_targets(scene(), CITYSCAPES)
    inside_box_outside_mask = location_index(256, 256, 0, 36, 20)   # in the car's box, on road
    assert t["fcos_labels"][inside_box_outside_mask] == -1
    assert t["fcos_centerness"][inside_box_outside_mask] == 0
    assert np.all(t["fcos_boxes"][inside_box_outside_mask] == 0)
    in_mask = location_index(256, 256, 0, 4, 20)                    # on the car's vertical bar
    assert t["fcos_labels"][in_mask] == CAR_CLASS
    np.testing.assert_array_equal(t["fcos_boxes"][in_mask], [4, 4, 44, 44])
    assert t["fcos_centerness"][in_mask] == pytest.approx(4 / 44)


def test_fcos_level_size_ranges():
    t = ciae_targets(scene(), CITYSCAPES)
    # Person box x, y in [100, 240): at (164, 164) l = t = 64, r = b = 76 -> max 76: P4 only.
    p3 = location_index(256, 256, 0, 164, 164)
    p4 = location_index(256, 256, 1, 168, 168)
    assert t["fcos_labels"][p3] == -1
    assert t["fcos_labels"][p4] == PERSON_CLASS
    np.testing.assert_array_equal(t["fcos_boxes"][p4], [68, 68, 72, 72])
    assert t["fcos_centerness"][p4] == pytest.approx(68 / 72)
    # (132, 132): l = t = 32, r = b = 108 -> P4 range 64..128.
    assert t["fcos_labels"][location_index(256, 256, 0, 132, 132)] == -1
    assert t["fcos_labels"][location_index(256, 256, 1, 136, 136)] == PERSON_CLASS
    # P5 at (112, 112): l = t = 12, r = b = 128 -> exactly the lower bound of 128..256 (inclusive).
    p5 = location_index(256, 256, 2, 112, 112)
    assert t["fcos_labels"][p5] == PERSON_CLASS
    np.testing.assert_array_equal(t["fcos_boxes"][p5], [12, 12, 128, 128])
    # Nothing is big enough for P6 and P7.
    n_p3_p5 = sum(np.prod(strided_size(256, 256, s)) for s in HEAD_STRIDES[:3])
    assert np.all(t["fcos_labels"][n_p3_p5:] == -1)


def test_fcos_matches_brute_force_definition():
    result = scene()
    t = ciae_targets(result, CITYSCAPES)
    points, levels = fcos_locations(256, 256)
    ranges = [(0, 64), (64, 128), (128, 256), (256, 512), (512, math.inf)]
    for n, ((x, y), level) in enumerate(zip(points.astype(int).tolist(), levels.tolist())):
        seg_id = int(result.panoptic[y, x]) if y < 256 and x < 256 else 0
        seg = result.segment(seg_id) if seg_id else None
        label, ltrb = -1, [0, 0, 0, 0]
        if seg is not None and seg.is_thing and not seg.iscrowd:
            bx, by, bw, bh = seg.bbox
            cand = [x - bx, y - by, bx + bw - x, by + bh - y]
            if ranges[level][0] <= max(cand) <= ranges[level][1]:
                label, ltrb = {24: PERSON_CLASS, 26: CAR_CLASS}[seg.category_id], cand
        assert t["fcos_labels"][n] == label, (x, y, level)
        np.testing.assert_array_equal(t["fcos_boxes"][n], ltrb)
        if label >= 0:
            l, tt, r, b = ltrb
            expected = math.sqrt(min(l, r) / max(l, r) * min(tt, b) / max(tt, b))
            assert t["fcos_centerness"][n] == pytest.approx(expected, rel=1e-6)
    assert (t["fcos_labels"] >= 0).sum() > 10


def test_crowd_and_void_are_never_positive_or_instances():
    result = scene()
    t = ciae_targets(result, CITYSCAPES)
    points, _ = fcos_locations(256, 256)
    x, y = points[:, 0].astype(int), points[:, 1].astype(int)
    inside = (x < 256) & (y < 256)
    ids = np.zeros(len(points), np.int64)
    ids[inside] = result.panoptic[y[inside], x[inside]]
    assert np.all(t["fcos_labels"][ids == PERSON] == -1)
    p = panonet_targets(result, CITYSCAPES)
    for s in (4, 8, 16):
        ids_s = result.panoptic[s // 2::s, s // 2::s]
        assert np.all(p[f"instance_{s}"][ids_s == PERSON] == 0)
        assert np.all(p[f"semantic_{s}"][ids_s == PERSON] == 11)   # crowd keeps its class
        assert np.all(p[f"semantic_{s}"][ids_s == 0] == 255)
        assert np.all(p[f"instance_{s}"][ids_s == 0] == 0)
    crowd4 = result.panoptic[2::4, 2::4] == PERSON
    assert np.all(t["segment_map"][crowd4] == -1)
    assert np.all(t["category_map"][crowd4] == NUM_STUFF)
    void4 = result.panoptic[2::4, 2::4] == 0
    assert void4.any() and np.all(t["segment_map"][void4] == -1) and np.all(t["category_map"][void4] == 255)


def test_panonet_maps_pick_the_centre_pixel():
    result = scene()
    p = panonet_targets(result, CITYSCAPES)
    train = {0: 255, 7: 0, 23: 10, 24: 11, 26: 13}
    numbers = {PERSON + 1: 1, CAR + 1: 2}            # non-crowd things in id order
    for s in (4, 8, 16):
        assert p[f"semantic_{s}"].shape == (256 // s, 256 // s)
        assert p[f"semantic_{s}"].dtype == np.int64 and p[f"instance_{s}"].dtype == np.int64
        for i in range(256 // s):
            for j in range(256 // s):
                pid = int(result.panoptic[s // 2 + i * s, s // 2 + j * s])
                assert p[f"semantic_{s}"][i, j] == train[pid // 1000]
                assert p[f"instance_{s}"][i, j] == numbers.get(pid, 0)


def test_grid_cells_beyond_the_image_are_void():
    pan = np.full((18, 20), ROAD, np.int32)
    sampled = sample_grid(pan, 8)                   # 3 x 3 cells; centres at 4, 12, 20
    assert sampled.shape == (3, 3)
    assert np.all(sampled[:2, :2] == ROAD) and np.all(sampled[2, :] == 0) and np.all(sampled[:, 2] == 0)
    p = panonet_targets(PanopticResult.from_panoptic_map(pan, CITYSCAPES), CITYSCAPES)
    assert p["semantic_16"].shape == (2, 2)
    np.testing.assert_array_equal(p["semantic_16"], [[0, 255], [255, 255]])


def test_ciae_segments_at_quarter_scale():
    result = scene()
    t = ciae_targets(result, CITYSCAPES)
    # stuff present: road (merged 0), sky (merged 10); things: person 1, car 1 (id order).
    np.testing.assert_array_equal(t["segment_category"], [0, 10, NUM_STUFF, NUM_STUFF])
    np.testing.assert_array_equal(t["segment_is_thing"], [False, False, True, True])
    np.testing.assert_array_equal(t["segment_boxes"], [[0, 0, 256, 256], [0, 0, 256, 256],
                                                       [100, 100, 240, 240], [0, 16, 48, 64]])
    quarter = result.panoptic[2::4, 2::4]
    expected_segment = np.select([quarter == ROAD, quarter == SKY, quarter == PERSON + 1, quarter == CAR + 1],
                                 [0, 1, 2, 3], -1)
    np.testing.assert_array_equal(t["segment_map"], expected_segment)
    expected_category = np.select([quarter == ROAD, quarter == SKY, quarter // 1000 >= 24], [0, 10, NUM_STUFF], 255)
    np.testing.assert_array_equal(t["category_map"], expected_category)
    assert t["segment_map"].dtype == np.int64 and t["category_map"].dtype == np.int64
    assert t["segment_boxes"].dtype == np.float32 and t["fcos_boxes"].dtype == np.float32


def test_segments_invisible_at_quarter_scale_are_left_out():
    pan = np.full((32, 32), ROAD, np.int32)
    pan[0:2, 0:2] = CAR + 1                          # never hit by the 1/4 grid (centres at 2, 6, ...)
    pan[8:16, 8:16] = CAR + 2
    t = ciae_targets(PanopticResult.from_panoptic_map(pan, CITYSCAPES), CITYSCAPES)
    np.testing.assert_array_equal(t["segment_category"], [0, NUM_STUFF])
    np.testing.assert_array_equal(t["segment_boxes"][1], [8, 8, 16, 16])
    assert set(np.unique(t["segment_map"]).tolist()) == {0, 1}


def test_image_without_things():
    pan = np.full((64, 96), ROAD, np.int32)
    pan[:20] = SKY
    result = PanopticResult.from_panoptic_map(pan, CITYSCAPES)
    t = ciae_targets(result, CITYSCAPES)
    assert np.all(t["fcos_labels"] == -1) and not t["fcos_centerness"].any()
    assert len(t["fcos_labels"]) == len(fcos_locations(64, 96)[0])
    np.testing.assert_array_equal(t["segment_is_thing"], [False, False])
    p = panonet_targets(result, CITYSCAPES)
    assert not p["instance_4"].any()


def test_coco_thing_classes_and_merged_stuff():
    # COCO: person (id 1) is thing class 0, "banner" (92) the first stuff class.
    pan = np.full((64, 64), 92000, np.int32)
    pan[16:48, 16:48] = 3001                         # car: COCO id 3 -> thing class 2
    t = ciae_targets(PanopticResult.from_panoptic_map(pan, COCO_PANOPTIC), COCO_PANOPTIC)
    assert set(t["fcos_labels"].tolist()) == {-1, 2}
    np.testing.assert_array_equal(t["segment_category"], [0, 53])   # 53 COCO stuff classes
    assert t["category_map"][8, 8] == 53 and t["category_map"][0, 0] == 0


def test_all_void_image():
    result = PanopticResult.from_panoptic_map(np.zeros((40, 72), np.int32), CITYSCAPES)
    t = ciae_targets(result, CITYSCAPES)
    assert np.all(t["segment_map"] == -1) and np.all(t["category_map"] == 255)
    assert t["segment_category"].shape == (0,) and t["segment_boxes"].shape == (0, 4)
    assert t["segment_is_thing"].dtype == bool and np.all(t["fcos_labels"] == -1)
    p = panonet_targets(result, CITYSCAPES)
    assert np.all(p["semantic_8"] == 255) and not p["instance_8"].any()


def test_panonet_numbering_is_global_when_the_highest_id_is_not_sampled():
    pan = np.full((32, 32), ROAD, np.int32)
    pan[8:16, 8:16] = CAR + 1
    pan[0:2, 0:2] = CAR + 2                          # highest id, missed by every grid
    p = panonet_targets(PanopticResult.from_panoptic_map(pan, CITYSCAPES), CITYSCAPES)
    for s in (4, 8, 16):
        assert set(np.unique(p[f"instance_{s}"]).tolist()) <= {0, 1}
    assert p["instance_4"][2, 2] == 1 and p["instance_4"][0, 0] == 0
