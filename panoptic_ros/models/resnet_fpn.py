"""ResNet backbones and a feature pyramid (P2..P7) in plain torch.

Written here because there is no CPU build of torchvision for this project's torch.

- ResNet-18/34 (basic blocks) and ResNet-50/101 (bottlenecks), with a ``base_channels``
  width option (64 = the standard networks; 16 or 32 give tiny CPU models).
- Normalisation: ``frozen_bn`` (:class:`FrozenBatchNorm2d`, fixed affine statistics as
  used with ImageNet-pretrained weights), ``gn`` (GroupNorm, the right choice when
  training from scratch with small batches, as everything in this project does) or
  ``bn`` (BatchNorm2d).
- FPN: lateral 1x1 + top-down nearest upsampling + 3x3 output convs give P2..P5
  (strides 4..32). P6 and P7 (strides 64, 128) come from a stride-2 3x3 conv on P5 (the
  FCOS paper's choice, ``extra_from="p5"``) or on C5 (RetinaNet's, ``extra_from="c5"``);
  P7 is a stride-2 conv on ReLU(P6).

Every stride-2 convolution uses padding so that a level of an ``n``-pixel side has
``ceil(n / stride)`` pixels, which is what the FCOS targets assume for any input size.
"""
from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

NormKind = Literal["frozen_bn", "gn", "bn"]
Depth = Literal[18, 34, 50, 101]

_BLOCKS = {18: ("basic", (2, 2, 2, 2)), 34: ("basic", (3, 4, 6, 3)),
           50: ("bottleneck", (3, 4, 6, 3)), 101: ("bottleneck", (3, 4, 23, 3))}


class FrozenBatchNorm2d(nn.Module):
    """BatchNorm2d with fixed statistics and affine parameters (all buffers).

    ``y = (x - mean) / sqrt(var + eps) * weight + bias`` folded into one scale and shift,
    so it costs one multiply-add and never changes during training.

    Args:
        channels: number of channels C of the (B, C, H, W) input.
        eps: added to the variance.
    """

    def __init__(self, channels: int, eps: float = 1e-5):
        super().__init__()
        self.eps = eps
        self.register_buffer("weight", torch.ones(channels))
        self.register_buffer("bias", torch.zeros(channels))
        self.register_buffer("running_mean", torch.zeros(channels))
        self.register_buffer("running_var", torch.ones(channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        scale = self.weight * torch.rsqrt(self.running_var + self.eps)
        shift = self.bias - self.running_mean * scale
        return x * scale.view(1, -1, 1, 1) + shift.view(1, -1, 1, 1)

    def extra_repr(self) -> str:
        return f"{self.weight.shape[0]}, eps={self.eps}"


def make_norm(kind: NormKind, channels: int) -> nn.Module:
    """A normalisation layer of ``kind`` for ``channels`` channels.

    GroupNorm uses 32 groups, or fewer for narrow layers: the largest divisor of
    ``channels`` not above 32 that leaves at least two channels per group, so tiny models
    still normalise even on the 1 x 1 maps that P7 of a small image has.
    """
    if kind == "frozen_bn":
        return FrozenBatchNorm2d(channels)
    if kind == "bn":
        return nn.BatchNorm2d(channels)
    if kind == "gn":
        groups = max(g for g in range(1, min(32, max(1, channels // 2)) + 1) if channels % g == 0)
        return nn.GroupNorm(groups, channels)
    raise ValueError(f"norm: unknown normalisation {kind!r} (frozen_bn, gn, bn)")


def _conv(cin: int, cout: int, k: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, k, stride=stride, padding=k // 2, bias=False)


def _shortcut(cin: int, cout: int, stride: int, norm: NormKind) -> nn.Module:
    """A residual block's shortcut: identity, or a strided 1x1 projection + norm where the
    shape changes."""
    if stride == 1 and cin == cout:
        return nn.Identity()
    return nn.Sequential(_conv(cin, cout, 1, stride), make_norm(norm, cout))


class BasicBlock(nn.Module):
    """Two 3x3 convs with a residual (ResNet-18/34)."""

    expansion = 1

    def __init__(self, cin: int, width: int, stride: int, norm: NormKind):
        super().__init__()
        cout = width * self.expansion
        self.conv1, self.norm1 = _conv(cin, width, 3, stride), make_norm(norm, width)
        self.conv2, self.norm2 = _conv(width, cout, 3), make_norm(norm, cout)
        self.shortcut = _shortcut(cin, cout, stride, norm)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.relu(self.norm1(self.conv1(x)))
        return F.relu(self.norm2(self.conv2(y)) + self.shortcut(x))


class Bottleneck(nn.Module):
    """1x1 reduce, 3x3 (carries the stride, as in ResNet v1.5), 1x1 expand (ResNet-50/101)."""

    expansion = 4

    def __init__(self, cin: int, width: int, stride: int, norm: NormKind):
        super().__init__()
        cout = width * self.expansion
        self.conv1, self.norm1 = _conv(cin, width, 1), make_norm(norm, width)
        self.conv2, self.norm2 = _conv(width, width, 3, stride), make_norm(norm, width)
        self.conv3, self.norm3 = _conv(width, cout, 1), make_norm(norm, cout)
        self.shortcut = _shortcut(cin, cout, stride, norm)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.relu(self.norm1(self.conv1(x)))
        y = F.relu(self.norm2(self.conv2(y)))
        return F.relu(self.norm3(self.conv3(y)) + self.shortcut(x))


class ResNet(nn.Module):
    """ResNet trunk returning C2..C5 (strides 4, 8, 16, 32).

    Args:
        depth: 18, 34, 50 or 101.
        base_channels: stem width; stage widths are 1, 2, 4, 8 times it (64 = standard).
        norm: normalisation kind (see :func:`make_norm`).
    """

    def __init__(self, *, depth: Depth = 50, base_channels: int = 64, norm: NormKind = "frozen_bn"):
        super().__init__()
        if depth not in _BLOCKS:
            raise ValueError(f"depth: ResNet-{depth} is not available (18, 34, 50, 101)")
        kind, counts = _BLOCKS[depth]
        block = BasicBlock if kind == "basic" else Bottleneck
        self.stem = nn.Sequential(_conv(3, base_channels, 7, 2), make_norm(norm, base_channels), nn.ReLU(inplace=True),
                                  nn.MaxPool2d(3, stride=2, padding=1))
        cin = base_channels
        stages = []
        for i, count in enumerate(counts):
            width = base_channels * 2 ** i
            layers = []
            for j in range(count):
                layers.append(block(cin, width, 2 if (j == 0 and i > 0) else 1, norm))
                cin = width * block.expansion
            stages.append(nn.Sequential(*layers))
        self.stages = nn.ModuleList(stages)
        self.out_channels = tuple(base_channels * 2 ** i * block.expansion for i in range(4))
        self._init_weights()

    def _init_weights(self) -> None:
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        # Zero the last norm of each residual branch so every block starts as identity:
        # deep nets trained from scratch converge faster this way (Goyal et al. 2017).
        for m in self.modules():
            last = getattr(m, "norm3", None) if isinstance(m, Bottleneck) else (
                getattr(m, "norm2", None) if isinstance(m, BasicBlock) else None)
            if isinstance(last, (nn.GroupNorm, nn.BatchNorm2d)):
                nn.init.zeros_(last.weight)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        """(B, 3, H, W) normalised image -> [C2, C3, C4, C5], Ci (B, out_channels[i-2], H/2^i, W/2^i)."""
        x = self.stem(x)
        feats = []
        for stage in self.stages:
            x = stage(x)
            feats.append(x)
        return feats


class FPN(nn.Module):
    """Feature pyramid P2..P7 over C2..C5.

    Args:
        in_channels: channels of C2..C5.
        channels: output channels of every level.
        extra_from: ``"p5"`` (FCOS) or ``"c5"`` (RetinaNet) as the input of P6.
    """

    def __init__(self, in_channels: tuple[int, ...], channels: int, extra_from: Literal["p5", "c5"] = "p5"):
        super().__init__()
        if extra_from not in ("p5", "c5"):
            raise ValueError(f"extra_from: expected 'p5' or 'c5', got {extra_from!r}")
        self.extra_from = extra_from
        self.lateral = nn.ModuleList(nn.Conv2d(c, channels, 1) for c in in_channels)
        self.output = nn.ModuleList(nn.Conv2d(channels, channels, 3, padding=1) for _ in in_channels)
        self.p6 = nn.Conv2d(channels if extra_from == "p5" else in_channels[-1], channels, 3, stride=2, padding=1)
        self.p7 = nn.Conv2d(channels, channels, 3, stride=2, padding=1)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_uniform_(m.weight, a=1)
                nn.init.zeros_(m.bias)

    def forward(self, feats: list[torch.Tensor]) -> list[torch.Tensor]:
        """[C2..C5] -> [P2, P3, P4, P5, P6, P7], each (B, channels, ceil(H/s), ceil(W/s))."""
        top = self.lateral[-1](feats[-1])
        laterals = [top]
        for lateral, c in zip(reversed(self.lateral[:-1]), reversed(feats[:-1])):
            top = lateral(c) + F.interpolate(top, size=c.shape[-2:], mode="nearest")
            laterals.append(top)
        outs = [conv(x) for conv, x in zip(self.output, reversed(laterals))]
        p6 = self.p6(outs[-1] if self.extra_from == "p5" else feats[-1])
        p7 = self.p7(F.relu(p6))
        return outs + [p6, p7]


class ResNetFPN(nn.Module):
    """ResNet + FPN: (B, 3, H, W) normalised image -> [P2, ..., P7] (strides 4..128).

    Args:
        depth: ResNet depth (18, 34, 50, 101).
        base_channels: ResNet stem width (64 = standard).
        norm: backbone normalisation (``frozen_bn``, ``gn``, ``bn``).
        fpn_channels: channels of every pyramid level.
        extra_from: input of P6 (``"p5"`` or ``"c5"``).
    """

    strides = (4, 8, 16, 32, 64, 128)

    def __init__(self, *, depth: Depth = 50, base_channels: int = 64, norm: NormKind = "frozen_bn",
                 fpn_channels: int = 256, extra_from: Literal["p5", "c5"] = "p5"):
        super().__init__()
        self.body = ResNet(depth=depth, base_channels=base_channels, norm=norm)
        self.fpn = FPN(self.body.out_channels, fpn_channels, extra_from)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        return self.fpn(self.body(x))
