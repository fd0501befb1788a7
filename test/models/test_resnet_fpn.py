"""ResNet trunks, FrozenBatchNorm2d and the P2..P7 pyramid."""
import math

import pytest
import torch
from torch import nn

from panoptic_ros.models.resnet_fpn import FPN, FrozenBatchNorm2d, ResNet, ResNetFPN, make_norm


def _params(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def test_frozen_bn_equals_batchnorm_in_eval_and_has_no_parameters():
    torch.manual_seed(0)
    bn = nn.BatchNorm2d(6).eval()
    with torch.no_grad():
        bn.weight.uniform_(0.5, 2)
        bn.bias.normal_()
        bn.running_mean.normal_()
        bn.running_var.uniform_(0.5, 3)
    frozen = FrozenBatchNorm2d(6)
    frozen.load_state_dict({k: v for k, v in bn.state_dict().items() if k != "num_batches_tracked"})
    x = torch.randn(2, 6, 5, 7)
    torch.testing.assert_close(frozen(x), bn(x), rtol=1e-5, atol=1e-5)
    assert _params(frozen) == 0
    frozen.train()
    before = frozen.running_mean.clone()
    frozen(x * 10 + 3)
    assert torch.equal(frozen.running_mean, before)  # statistics never move


def test_standard_resnet_parameter_counts():
    # torchvision's resnet18 / resnet50 without the 1000-way fc layer: 11,176,512 / 23,508,032
    assert _params(ResNet(depth=18, norm="bn")) == 11_689_512 - 513_000
    assert _params(ResNet(depth=50, norm="bn")) == 25_557_032 - 2_049_000


def test_group_norm_groups_fit_narrow_layers():
    assert make_norm("gn", 256).num_groups == 32
    assert make_norm("gn", 48).num_groups == 24  # largest divisor of 48 not above 32
    assert make_norm("gn", 16).num_groups == 8  # two channels per group at least
    assert make_norm("gn", 7).num_groups == 1
    with pytest.raises(ValueError, match="unknown normalisation"):
        make_norm("ln", 8)


@pytest.mark.parametrize("size", [(64, 64), (97, 130)])
def test_pyramid_levels_have_ceil_sizes(size):
    torch.manual_seed(0)
    net = ResNetFPN(depth=18, base_channels=8, norm="gn", fpn_channels=16).eval()
    with torch.no_grad():
        feats = net(torch.randn(1, 3, *size))
    assert len(feats) == 6
    for f, s in zip(feats, ResNetFPN.strides):
        assert f.shape == (1, 16, math.ceil(size[0] / s), math.ceil(size[1] / s))


def test_p6_source_and_width_multiplier():
    trunk = ResNet(depth=50, base_channels=16)
    assert trunk.out_channels == (64, 128, 256, 512)
    assert FPN(trunk.out_channels, 32, "c5").p6.in_channels == 512
    assert FPN(trunk.out_channels, 32, "p5").p6.in_channels == 32
    with pytest.raises(ValueError, match="extra_from"):
        FPN(trunk.out_channels, 32, "p4")
    with pytest.raises(ValueError, match="ResNet-20"):
        ResNet(depth=20)


def test_frozen_bn_backbone_has_no_norm_parameters_and_gradients_reach_the_stem():
    net = ResNetFPN(depth=18, base_channels=8, norm="frozen_bn", fpn_channels=16)
    assert not any(isinstance(m, (nn.BatchNorm2d, nn.GroupNorm)) for m in net.modules())
    feats = net(torch.randn(1, 3, 64, 64))
    sum(f.sum() for f in feats).backward()
    assert net.body.stem[0].weight.grad is not None and net.body.stem[0].weight.grad.abs().sum() > 0
