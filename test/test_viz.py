"""Palettes, overlays and embedding pictures."""
import numpy as np
import pytest

from panoptic_ros import viz
from panoptic_ros.labels import CITYSCAPES
from panoptic_ros.types import PanopticResult

ROAD, SKY, CAR = 7, 23, 26


def _result() -> PanopticResult:
    pan = np.full((6, 8), ROAD * 1000, np.int32)
    pan[:2] = SKY * 1000
    pan[3:5, 1:3] = CAR * 1000 + 1
    pan[3:5, 4:6] = CAR * 1000 + 2
    pan[5, 7] = 0
    return PanopticResult.from_panoptic_map(pan, CITYSCAPES)


def test_stuff_takes_the_category_colour_and_instances_distinct_shades_of_it():
    colors = viz.instance_colors(np.array([ROAD * 1000, CAR * 1000, CAR * 1000 + 1, CAR * 1000 + 2]), CITYSCAPES)
    car = np.array(CITYSCAPES.category(CAR).color)
    assert tuple(colors[0]) == CITYSCAPES.category(ROAD).color
    assert tuple(colors[1]) == tuple(car)  # crowd region: the plain colour
    assert not np.array_equal(colors[2], colors[3])
    assert np.abs(colors[2:].astype(int) - car).max() <= 30
    again = viz.instance_colors(np.array([CAR * 1000 + 2]), CITYSCAPES)
    np.testing.assert_array_equal(again[0], colors[3])


def test_colorize_panoptic_paints_each_segment_and_void_black():
    result = _result()
    image = viz.colorize_panoptic(result, CITYSCAPES)
    assert image.shape == (6, 8, 3) and image.dtype == np.uint8
    expected = viz.instance_colors(np.array([s.id for s in result.segments]), CITYSCAPES)
    for seg, color in zip(result.segments, expected):
        np.testing.assert_array_equal(image[result.panoptic == seg.id], np.broadcast_to(color, (seg.area, 3)))
    np.testing.assert_array_equal(image[5, 7], [0, 0, 0])


def test_overlay_blends_colours_keeps_void_and_outlines_segments():
    result = _result()
    rgb = np.full((6, 8, 3), 100, np.uint8)
    plain = viz.panoptic_overlay(rgb, result, CITYSCAPES, alpha=0.5, boundaries=False)
    colors = viz.colorize_panoptic(result, CITYSCAPES)
    np.testing.assert_allclose(plain[0, 0], (colors[0, 0].astype(float) + 100) / 2, atol=1)
    np.testing.assert_array_equal(plain[5, 7], rgb[5, 7])
    outlined = viz.panoptic_overlay(rgb, result, CITYSCAPES, alpha=0.5)
    edges = viz.segment_boundaries(result.panoptic)
    assert edges[1, 0] and not edges[0, 0]  # sky row above road
    np.testing.assert_array_equal(outlined[edges], 255)
    np.testing.assert_array_equal(outlined[~edges], plain[~edges])
    np.testing.assert_array_equal(viz.panoptic_overlay(rgb, result, CITYSCAPES, alpha=0.0, boundaries=False)
                                  [result.panoptic > 0], rgb[result.panoptic > 0])


def test_overlay_rejects_mismatched_inputs():
    with pytest.raises(ValueError, match="does not fit"):
        viz.panoptic_overlay(np.zeros((5, 8, 3), np.uint8), _result(), CITYSCAPES)
    with pytest.raises(ValueError, match="alpha"):
        viz.panoptic_overlay(np.zeros((6, 8, 3), np.uint8), _result(), CITYSCAPES, alpha=1.5)


def test_semantic_colours_follow_the_palette():
    semantic = np.array([[0, 13, 255]], np.uint8)
    image = viz.colorize_semantic(semantic, CITYSCAPES)
    np.testing.assert_array_equal(image[0], [CITYSCAPES.categories[0].color, CITYSCAPES.categories[13].color,
                                             (0, 0, 0)])


def test_embedding_pca_separates_clusters_and_masks_pixels():
    rng = np.random.default_rng(0)
    emb = rng.normal(scale=0.01, size=(8, 10, 12))
    emb[:, :, 6:] += rng.normal(size=(8, 1, 1)) * 3  # right half is another cluster
    image = viz.embedding_pca_image(emb)
    assert image.shape == (10, 12, 3) and image.dtype == np.uint8
    left, right = image[:, :6, 0].astype(int), image[:, 6:, 0].astype(int)
    assert abs(left.mean() - right.mean()) > 200
    np.testing.assert_array_equal(viz.embedding_pca_image(emb.copy()), image)
    mask = np.zeros((10, 12), bool)
    mask[:, 6:] = True
    masked = viz.embedding_pca_image(emb, mask)
    assert masked[:, :6].max() == 0


def test_embedding_pca_handles_fewer_than_three_dimensions():
    image = viz.embedding_pca_image(np.arange(12, dtype=float).reshape(1, 3, 4))
    assert image[..., 1:].max() == 0 and image[..., 0].max() == 255
    with pytest.raises(ValueError, match="mask shape"):
        viz.embedding_pca_image(np.zeros((2, 3, 4)), np.zeros((5, 3), bool))


def test_legend_lists_names_and_colours_in_label_order():
    assert viz.legend(CITYSCAPES, [CAR, ROAD]) == [("road", (128, 64, 128)), ("car", (0, 0, 142))]
