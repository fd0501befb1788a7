"""Isolated twins: two copies of one thing on rows of one colour and one stuff class."""
import numpy as np
import pytest

from panoptic_ros.labels import CITYSCAPES
from panoptic_ros.sample import Sample
from panoptic_ros.synthstreet.scene import generate_scene
from panoptic_ros.synthstreet.stats import twin_ids
from panoptic_ros.synthstreet.twins import isolate_twins, plain_rows
from panoptic_ros.types import PanopticResult


def _hand_made() -> Sample:
    """12x40: road (7000) rows 6-11 grey 100, sky (23000) rows 0-5 blue; a 3x4 car at
    rows 5-7, columns 2-5 with one colour per pixel; row 11 VOID (the hood)."""
    pan = np.full((12, 40), 7000, np.int32)
    pan[:6] = 23000
    pan[11] = 0
    image = np.zeros((12, 40, 3), np.uint8)
    image[:6] = (20, 40, 200)
    image[6:] = 100
    image[6, 7:] = 104            # the road row 6 is mostly 104: its median is 104
    pan[5:8, 2:6] = 26001
    image[5:8, 2:6] = np.arange(36, dtype=np.uint8).reshape(3, 4, 3) + 150
    return Sample(image, PanopticResult.from_panoptic_map(pan, CITYSCAPES), "hand")


def test_plain_rows_take_each_rows_median_colour_and_commonest_stuff_and_fill_void_rows():
    colours, ids = plain_rows(_hand_made())
    assert ids.tolist() == [23000] * 6 + [7000] * 6          # row 11 (VOID) takes row 10
    assert colours[0].tolist() == [20, 40, 200] and colours[6].tolist() == [104] * 3
    assert colours[11].tolist() == [100] * 3


def test_two_copies_centred_with_the_gap_on_plain_rows():
    source = _hand_made()
    out = isolate_twins(source, 26001, gap_share=0.5)        # w 4, gap max(4, 2) = 4
    left = (40 - 2 * 4 - 4) // 2                             # 14
    pan = out.target.panoptic
    assert np.array_equal(np.argwhere(pan == 26001)[:, 1].reshape(3, 4)[0], np.arange(left, left + 4))
    assert np.array_equal(np.argwhere(pan == 26002)[:, 1].reshape(3, 4)[0], np.arange(left + 8, left + 12))
    for copy in (26001, 26002):
        x = np.argwhere(pan == copy)[0, 1]
        assert np.array_equal(out.image[5:8, x:x + 4], source.image[5:8, 2:6])
    background = (pan // 1000) != 26
    for y in range(12):
        assert len(np.unique(out.image[y][background[y]], axis=0)) == 1
        assert len(np.unique(pan[y][background[y]])) == 1
    assert twin_ids(out) == {26001, 26002}
    assert out.image_id == "hand_isolated"


def test_refuses_stuff_and_copies_too_wide_to_fit():
    source = _hand_made()
    with pytest.raises(ValueError, match="not a thing instance"):
        isolate_twins(source, 7000)
    with pytest.raises(ValueError, match="do not fit"):
        isolate_twins(source, 26001, gap_share=7.0)   # 8 + 28 > 32


def test_a_synthstreet_twin_scene_keeps_its_size_and_gives_one_twin_pair():
    for index in range(60):
        scene = generate_scene(5, index, height=128, width=256)
        ids = twin_ids(scene)
        if ids:
            break
    else:
        pytest.fail("no twins in 60 scenes of seed 5")
    out = isolate_twins(scene, max(ids))
    things = [s for s in out.target.segments if s.is_thing]
    assert len(things) == 2 and twin_ids(out) == {s.id for s in things}
    assert out.image.shape == scene.image.shape
