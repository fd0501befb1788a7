"""PanoNet post-processing on hand-built outputs with known panoptic results."""
import math

import numpy as np
import pytest
import torch

from panoptic_ros.config import ConfigError, from_dict
from panoptic_ros.labels import CITYSCAPES
from panoptic_ros.models.panonet import PanoNet, PanoNetConfig
from panoptic_ros.postprocess.panonet import PanoNetPostprocessConfig, postprocess_panonet

ROAD, PERSON, CAR = 0, 11, 13          # train indices
ROAD_ID, PERSON_ID, CAR_ID = 7, 24, 26  # category ids
LOGIT = 4.0
C = CITYSCAPES.num_classes


def outputs_for(semantic: np.ndarray, cell_embedding: np.ndarray) -> dict[str, torch.Tensor]:
    """PanoNet outputs whose logits put LOGIT on each cell's majority class."""
    height, width = semantic.shape
    h, w = cell_embedding.shape[:2]
    assert (h, w) == (math.ceil(height / 4), math.ceil(width / 4))
    padded = np.full((4 * h, 4 * w), ROAD)
    padded[:height, :width] = semantic
    cell_class = padded[2::4, 2::4]
    logits = np.zeros((1, C, h, w), np.float32)
    np.put_along_axis(logits[0], cell_class[None], LOGIT, axis=0)
    return {
        "semantic": torch.from_numpy(semantic.astype(np.uint8))[None],
        "semantic_logits": torch.from_numpy(logits),
        "embedding": torch.from_numpy(cell_embedding.transpose(2, 0, 1).astype(np.float32))[None],
    }


def scene(*, twin_offset: float = -3.0, second_car_dims: slice = slice(0, 1)):
    """40 x 64 image: road, car A (rows 4-19, cols 4-27), car B (rows 20-35, cols 40-59),
    person (rows 8-15, cols 28-35), all aligned to the 4 x 4 cells. Cars share the
    embedding except ``second_car_dims``. Car A has more cells (24 vs 20; 6 vs 6 at
    stride 2, where the negative offset sorts car B's mode after car A's), so car A is
    instance 1."""
    semantic = np.full((40, 64), ROAD)
    semantic[4:20, 4:28] = CAR
    semantic[20:36, 40:60] = CAR
    semantic[8:16, 28:36] = PERSON
    emb = np.zeros((10, 16, 12))
    emb[1:5, 1:7] = 1.0
    emb[5:9, 10:15] = 1.0
    emb[5:9, 10:15, second_car_dims] += twin_offset
    emb[2:4, 7:9] = -2.0
    return semantic, emb


def expected_map(car_b_instance: int) -> np.ndarray:
    pan = np.full((40, 64), ROAD_ID * 1000)
    pan[4:20, 4:28] = CAR_ID * 1000 + 1
    pan[20:36, 40:60] = CAR_ID * 1000 + car_b_instance
    pan[8:16, 28:36] = PERSON_ID * 1000 + 1
    return pan


def run(outputs, **config):
    return postprocess_panonet(outputs, config=PanoNetPostprocessConfig(**config), label_space=CITYSCAPES)


@pytest.mark.parametrize("stride", [1, 2])
def test_two_far_apart_clusters_of_one_class_are_two_instances(stride):
    result = run(outputs_for(*scene()), cluster_stride=stride, min_area=0)
    np.testing.assert_array_equal(result.panoptic, expected_map(2))
    result.validate()
    assert [s.id for s in result.segments] == [7000, 24001, 26001, 26002]
    assert [s.area for s in result.segments] == [40 * 64 - 384 - 320 - 64, 64, 384, 320]


def test_twins_separated_only_by_coordinate_dims():
    # Same appearance (dims 0-9), different position-derived dims 10-11: two cars.
    semantic, emb = scene(second_car_dims=slice(10, 12), twin_offset=-1.5)
    np.testing.assert_array_equal(run(outputs_for(semantic, emb)).panoptic, expected_map(2))
    # Without the position dims they are one instance: the paper's failure case.
    semantic, emb = scene(second_car_dims=slice(10, 12), twin_offset=0.0)
    np.testing.assert_array_equal(run(outputs_for(semantic, emb)).panoptic, expected_map(1))


def test_bandwidth_per_class_name():
    semantic, emb = scene(twin_offset=-1.0)
    assert len({s.id for s in run(outputs_for(semantic, emb), bandwidths={"car": 0.5}).segments}) == 4
    merged = run(outputs_for(semantic, emb), bandwidths={"car": 2.0})
    np.testing.assert_array_equal(merged.panoptic, expected_map(1))
    with pytest.raises(ValueError, match="road"):
        run(outputs_for(semantic, emb), bandwidths={"road": 0.5})


def test_small_instances_become_void_not_crowd():
    semantic, emb = scene()
    semantic[0:2, 0:4] = CAR            # 8 car pixels: half of cell (0, 0)
    emb[0, 0] = 8.0                      # a far-away embedding: its own mode
    result = run(outputs_for(semantic, emb), min_area=20)
    expected = expected_map(2)
    expected[0:2, 0:4] = 0
    np.testing.assert_array_equal(result.panoptic, expected)
    assert not any(s.iscrowd for s in result.segments)


def test_small_stuff_becomes_void():
    semantic, emb = scene()
    result = run(outputs_for(semantic, emb), min_stuff_area=10_000)
    expected = expected_map(2)
    expected[expected == ROAD_ID * 1000] = 0
    np.testing.assert_array_equal(result.panoptic, expected)


def test_scores_are_mean_class_probabilities():
    semantic, emb = scene()
    semantic[4, 4] = ROAD  # one road pixel inside a car cell: road's probability there is low
    result = run(outputs_for(semantic, emb))
    confident = math.exp(LOGIT) / (math.exp(LOGIT) + C - 1)
    low = 1.0 / (math.exp(LOGIT) + C - 1)
    for seg in result.segments:
        if seg.id != ROAD_ID * 1000:
            assert seg.score == pytest.approx(confident, abs=1e-6)
    road = result.segment(ROAD_ID * 1000)
    assert road.area == 40 * 64 - 384 - 320 - 64 + 1
    assert road.score == pytest.approx(((road.area - 1) * confident + low) / road.area, abs=1e-6)


def test_odd_input_size_gives_result_at_input_size():
    semantic, emb = scene()
    semantic = semantic[:39, :61]
    result = run(outputs_for(semantic, emb))
    assert result.panoptic.shape == (39, 61)
    np.testing.assert_array_equal(result.panoptic, expected_map(2)[:39, :61])


def test_inconsistent_outputs_raise():
    outputs = outputs_for(*scene())
    with pytest.raises(ValueError, match="embedding"):
        run({k: v for k, v in outputs.items() if k != "embedding"})
    bad = dict(outputs, embedding=outputs["embedding"][..., :-1])
    with pytest.raises(ValueError, match=r"\(1, \*, 10, 16\)"):
        run(bad)
    with pytest.raises(ValueError, match="classes"):
        run(dict(outputs, semantic_logits=outputs["semantic_logits"][:, :5]))


def test_config_from_yaml_data_is_strict():
    config = from_dict(PanoNetPostprocessConfig, {"bandwidths": {"car": 0.7}, "cluster_stride": 1})
    assert config.bandwidths == {"car": 0.7}
    with pytest.raises(ConfigError, match="bandwidth"):
        from_dict(PanoNetPostprocessConfig, {"bandwidths": {"car": -1.0}})
    with pytest.raises(ConfigError, match="min_area"):
        from_dict(PanoNetPostprocessConfig, {"min_area": "big"})


def test_runs_on_real_model_outputs():
    torch.manual_seed(0)
    model = PanoNet(PanoNetConfig(width=0.125, blocks=(1, 1, 1, 1), input_size=(70, 98))).eval()
    with torch.no_grad():
        outputs = model(torch.rand(1, 3, 70, 98) * 255)
    result = postprocess_panonet(outputs, config=PanoNetPostprocessConfig(), label_space=CITYSCAPES)
    assert result.panoptic.shape == (70, 98)
    result.validate()
    assert all(0.0 <= s.score <= 1.0 for s in result.segments)
