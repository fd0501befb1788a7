"""Pieces both networks share: config checks, strided sizes, coordinate channels."""
import pytest
import torch

from panoptic_ros.models.ciae import CIAEConfig
from panoptic_ros.models.common import coordinate_channels, strided_size, with_coordinate_channels
from panoptic_ros.models.panonet import PanoNetConfig


def test_strided_size_rounds_up():
    assert strided_size(509, 1021, 4) == (128, 256)
    assert strided_size(512, 1024, 128) == (4, 8)
    assert strided_size(1, 1, 16) == (1, 1)


def test_coordinate_channels_span_minus_one_to_one_over_pixel_centres():
    grid = coordinate_channels(2, 3, 5, like=torch.zeros(1, dtype=torch.float64))
    assert grid.shape == (2, 2, 3, 5) and grid.dtype == torch.float64
    assert grid[1, 0, 2].tolist() == [-1.0, -0.5, 0.0, 0.5, 1.0]     # x along W
    assert grid[0, 1, :, 4].tolist() == [-1.0, 0.0, 1.0]             # y along H
    assert coordinate_channels(1, 1, 1, like=torch.zeros(1)).flatten().tolist() == [-1.0, -1.0]
    x = torch.rand(2, 3, 3, 5)
    stacked = with_coordinate_channels(x)
    assert torch.equal(stacked[:, :3], x) and torch.equal(stacked[:, 3:], coordinate_channels(2, 3, 5, like=x))


@pytest.mark.parametrize("config_cls, kind, min_side", [(PanoNetConfig, "panonet", 1), (CIAEConfig, "ciae", 32)])
def test_model_configs_check_the_shared_fields(config_cls, kind, min_side):
    assert config_cls().kind == kind
    with pytest.raises(ValueError, match=f"kind: expected '{kind}'"):
        config_cls(kind="other")
    with pytest.raises(ValueError, match=f"input_size: expected \\(H, W\\) of at least {min_side} pixels"):
        config_cls(input_size=(min_side - 1, 64))
    with pytest.raises(ValueError, match="pixel_std: must be > 0"):
        config_cls(pixel_std=(1.0, 0.0, 1.0))
