"""SynthStreet statistics: every class occurs, and twins, split instances and crowds are
there; the statistics helpers on hand-made samples."""
import numpy as np

from panoptic_ros.labels import CITYSCAPES
from panoptic_ros.sample import Sample
from panoptic_ros.synthstreet.scene import generate_scene
from panoptic_ros.synthstreet.stats import SynthStats, pieces, twin_ids
from panoptic_ros.types import PanopticResult


def test_every_class_twins_splits_and_crowds_occur_over_a_stream():
    stats = SynthStats(CITYSCAPES)
    for index in range(100):
        stats.add(generate_scene(21, index, height=64, width=128))
    assert stats.missing_classes() == []
    assert min(stats.instances) >= 6 and max(stats.instances) <= 30
    assert stats.twins >= 10 and stats.split >= 20 and stats.crowd_images >= 4
    assert 0.02 < stats.void_pixels / stats.total_pixels < 0.2
    text = "\n".join(stats.report())
    assert "instances per image: min" in text and "bicycle" in text


def _sample(pan: np.ndarray, image: np.ndarray) -> Sample:
    return Sample(image, PanopticResult.from_panoptic_map(pan.astype(np.int32), CITYSCAPES), "t")


def test_twin_ids_needs_same_class_shape_and_colours():
    pan = np.full((8, 16), 7000, np.int32)
    image = np.zeros((8, 16, 3), np.uint8)
    pan[1:3, 1:4] = 26001
    pan[1:3, 8:11] = 26002           # same shape and colours: twins
    pan[5:7, 1:4] = 26003            # same shape, other colour
    image[5:7, 1:4] = 9
    pan[5:7, 8:11] = 24001           # same shape and colour as the cars, other class
    assert twin_ids(_sample(pan, image)) == {26001, 26002}


def test_pieces_counts_8_connected_components():
    mask = np.zeros((5, 5), bool)
    mask[0, 0] = mask[1, 1] = True   # diagonal neighbours: one piece
    mask[4, 4] = True
    assert pieces(mask) == 2
