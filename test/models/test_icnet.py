"""ICNet building blocks: sizes, pyramid pooling, cascade feature fusion, widths."""
import pytest
import torch
import torch.nn.functional as F

from panoptic_ros.models.icnet import (Bottleneck, CascadeFeatureFusion, ICNet, PyramidPooling, guidance_size,
                                       init_weights, resize, scaled)


def n_params(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def test_released_icnet_size():
    # The released ICNet (PSPNet-50 with halved kernels) has about 6.7M parameters.
    assert 6.5e6 < n_params(ICNet(num_outputs=19)) < 6.9e6
    # Halving the width quarters the parameter count (up to the rounding to 8 channels).
    ratio = n_params(ICNet(num_outputs=19)) / n_params(ICNet(num_outputs=19, width=0.5))
    assert 3.8 < ratio < 4.1


def test_scaled_channels():
    assert [scaled(c, 1.0) for c in (32, 64, 1024)] == [32, 64, 1024]
    assert [scaled(c, 0.25) for c in (32, 64, 1024)] == [8, 16, 256]
    assert scaled(32, 0.1) == 8


@pytest.mark.parametrize("size", [(1024, 2048), (509, 1021), (33, 47), (16, 16), (5, 3)])
def test_guidance_outputs_have_ceil_sizes(size):
    net = ICNet(num_outputs=7, width=0.125, blocks=(1, 1, 1, 1)).eval()
    with torch.no_grad():
        outs = net(torch.randn(1, 3, *size), with_guidance=True)
    assert [tuple(o.shape) for o in outs] == [(1, 7, *guidance_size(*size, s)) for s in (4, 8, 16)]
    with torch.no_grad():
        (main,) = net(torch.randn(1, 3, *size))
    assert tuple(main.shape) == (1, 7, *guidance_size(*size, 4))


def test_guidance_size_rounds_up():
    assert guidance_size(509, 1021, 4) == (128, 256)
    assert guidance_size(505, 1024, 8) == (64, 128)
    assert guidance_size(512, 1024, 16) == (32, 64)
    assert guidance_size(1, 1, 16) == (1, 1)


@pytest.mark.parametrize("size", [(12, 18), (2, 4), (7, 5)])
def test_pyramid_pooling_matches_adaptive_pooling(size):
    x = torch.randn(2, 3, *size)
    expected = x.clone()
    for bins in (1, 2, 3, 6):
        expected += F.interpolate(F.adaptive_avg_pool2d(x, bins), size=size, mode="bilinear", align_corners=False)
    torch.testing.assert_close(PyramidPooling((1, 2, 3, 6))(x), expected, atol=1e-5, rtol=1e-5)


def test_cascade_feature_fusion():
    torch.manual_seed(0)
    cff = CascadeFeatureFusion(low_ch=16, high_ch=8, out_ch=12, num_outputs=5).eval()
    low, high = torch.randn(1, 16, 5, 7), torch.randn(1, 8, 10, 13)
    fused, guidance = cff(low, high, with_guidance=True)
    assert fused.shape == (1, 12, 10, 13) and guidance.shape == (1, 5, 10, 13)
    assert fused.min() >= 0  # ReLU after the sum
    low_up = resize(low, (10, 13))
    expected = F.relu(cff.low(low_up) + cff.high(high))
    torch.testing.assert_close(fused, expected)
    # The guidance classifier runs before the upsampling: the same function as after it.
    torch.testing.assert_close(guidance, cff.classifier(low_up), atol=1e-5, rtol=1e-5)
    assert cff(low, high, with_guidance=False)[1] is None


def test_fresh_bottleneck_is_identity_plus_relu():
    block = Bottleneck(8, 4, 8)
    init_weights(block)
    block.eval()
    x = torch.randn(1, 8, 6, 6)
    torch.testing.assert_close(block(x), F.relu(x))


def test_dilated_stages_keep_the_1_32_resolution():
    net = ICNet(num_outputs=3, width=0.125, blocks=(1, 2, 2, 1)).eval()
    with torch.no_grad():
        sub1, sub2, sub4 = net.trunk(torch.randn(1, 3, 128, 256))
    assert sub1.shape[-2:] == (16, 32) and sub2.shape[-2:] == (8, 16) and sub4.shape[-2:] == (4, 8)
    assert net.trunk.conv4[0].conv[0].dilation == (2, 2) and net.trunk.conv5[0].conv[0].dilation == (4, 4)


@pytest.mark.parametrize("size", [(64, 128), (33, 47)])
def test_resnet_stem_keeps_every_output_size(size):
    deep = ICNet(num_outputs=5, width=0.25, blocks=(1, 1, 1, 1)).eval()
    resnet = ICNet(num_outputs=5, width=0.25, blocks=(1, 1, 1, 1), stem="resnet").eval()
    x = torch.randn(1, 3, *size)
    with torch.no_grad():
        assert [o.shape for o in resnet(x, with_guidance=True)] == [o.shape for o in deep(x, with_guidance=True)]
    conv = resnet.trunk.stem[0][0]
    # torchvision's stem: 7x7, stride 2, padding 3, to a quarter of conv2_x's output width
    assert (conv.kernel_size, conv.stride, conv.padding) == ((7, 7), (2, 2), (3, 3))
    assert conv.out_channels == scaled(128, 0.25) // 4 == resnet.trunk.conv2[0].reduce[0].in_channels


def test_icnet_at_width_2_has_resnet50_stage_shapes():
    # ResNet-50: layer1..4 end in 256/512/1024/2048 channels with 64/128/256/512 inside.
    trunk = ICNet(num_outputs=19, width=2.0, stem="resnet").trunk
    assert [trunk.conv2[0].expand[0].out_channels, trunk.conv3_1[0].expand[0].out_channels,
            trunk.conv4[0].expand[0].out_channels, trunk.conv5[0].expand[0].out_channels] == [256, 512, 1024, 2048]
    assert [trunk.conv2[0].reduce[0].out_channels, trunk.conv5[0].reduce[0].out_channels] == [64, 512]
    with pytest.raises(ValueError, match="stem: expected one of deep, resnet, got 'vgg'"):
        ICNet(num_outputs=3, width=0.25, stem="vgg")
