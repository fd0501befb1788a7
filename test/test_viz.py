"""Palettes, overlays and embedding pictures."""
import numpy as np
import pytest

from panoptic_ros import viz
from panoptic_ros.labels import CITYSCAPES
from panoptic_ros.labels import COCO_PANOPTIC as COCO
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


def _segment_lut_colorize(result: PanopticResult, label_space) -> np.ndarray:
    """The colouring before the precomputed palette: a table of this frame's segments only
    (instance_colors of each segment id), gathered by the id map; VOID and every id that is
    not a segment stay black."""
    ids = np.array([s.id for s in result.segments], dtype=np.int64)
    lut = np.zeros((int(ids.max(initial=0)) + 1, 3), np.uint8)
    if ids.size:
        lut[ids] = viz.instance_colors(ids, label_space)
    return lut[result.panoptic]


def _random_result(label_space, seed: int, shape=(40, 64)) -> PanopticResult:
    """Random blocks of stuff, crowd and numbered thing instances of ``label_space``, with VOID."""
    rng = np.random.default_rng(seed)
    categories = [c for c in label_space.categories]
    pan = np.zeros(shape, np.int32)
    for _ in range(25):
        c = categories[rng.integers(len(categories))]
        instance = int(rng.integers(0, 1000)) if c.is_thing else 0
        y, x = rng.integers(0, shape[0] - 4), rng.integers(0, shape[1] - 4)
        pan[y:y + rng.integers(2, 12), x:x + rng.integers(2, 20)] = c.id * 1000 + instance
    return PanopticResult.from_panoptic_map(pan, label_space)


@pytest.mark.parametrize("label_space", [CITYSCAPES, COCO], ids=lambda s: s.name)
@pytest.mark.parametrize("seed", range(4))
def test_the_precomputed_palette_colours_exactly_as_the_per_frame_segment_table(label_space, seed):
    result = _random_result(label_space, seed)
    expected = _segment_lut_colorize(result, label_space)
    np.testing.assert_array_equal(viz.colorize_panoptic(result, label_space), expected)
    rgb = np.random.default_rng(seed).integers(0, 256, (*result.panoptic.shape, 3), dtype=np.uint8)
    for alpha in (0.0, 0.3, 1.0):
        np.testing.assert_array_equal(viz.panoptic_overlay(rgb, result, label_space, alpha=alpha),
                                      viz.panoptic_overlay(rgb, result, label_space, alpha=alpha, colors=expected))


def test_the_palette_covers_every_id_of_the_label_space_and_is_built_once():
    table = viz.panoptic_palette(CITYSCAPES)
    assert table is viz.panoptic_palette(CITYSCAPES) and not table.flags.writeable
    ids = np.array([c.id * 1000 + i for c in CITYSCAPES.categories for i in (0, 1, 7, 999)])
    rgb = viz.instance_colors(ids, CITYSCAPES).astype(np.uint32)
    np.testing.assert_array_equal(table[ids], rgb[:, 0] | (rgb[:, 1] << 8) | (rgb[:, 2] << 16))
    assert table[0] == 0 and table.size == (max(c.id for c in CITYSCAPES.categories) + 1) * 1000


def test_colorize_refuses_a_segment_outside_the_label_space():
    foreign = PanopticResult.from_panoptic_map(np.full((2, 2), 26001, np.int32), CITYSCAPES)
    with pytest.raises(KeyError, match="not in label space"):
        viz.colorize_panoptic(foreign, COCO)


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
