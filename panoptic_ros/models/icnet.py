"""ICNet: image cascade network for real-time semantic segmentation (Zhao et al., ECCV 2018).

The paper feeds three resolutions of the image (full, 1/2, 1/4) to three branches and
fuses them coarse to fine. This implementation, like the authors' released model, takes
only two images; the third branch starts from features:

- **sub1**, input: the full-resolution image. Three 3x3 stride-2 convolutions.
  Output: 1/8.
- **sub2**, input: the image bilinearly resized to 1/2. The stem, ``conv2_x`` and
  ``conv3_1``. Output (``conv3_1``): 1/16.
- **sub4**, input: *not* a 1/4 image but ``conv3_1``'s output bilinearly downsampled by 2
  (the released ICNet's shortcut). It continues with the rest of ``conv3``, dilated
  ``conv4``/``conv5`` and pyramid pooling. Output: 1/32.

The shortcut is a deliberate choice, not an equivalence. Running the shared layers on a
1/4 image would compute different features: those layers would see the scene at half
the scale, with a receptive field twice as large relative to it and padding effects at
another scale. Downsampling ``conv3_1`` saves running the stem, ``conv2_x`` and
``conv3_1`` a second time (on a 1/4 image: a quarter of their cost in sub2), lets the
low-resolution branch start from features computed at 1/2 scale, and keeps the released
model's layer layout.

Two cascade feature fusion (CFF) units merge them: the low-resolution feature is
upsampled x2 and passed through a dilated 3x3 conv + BN, the high-resolution feature
through a 1x1 projection + BN; the sum goes through a ReLU. An auxiliary classifier on
each CFF's (upsampled) low-resolution input gives the *cascade label guidance* at 1/16
and 1/8; the final classifier works at 1/8 and is upsampled to 1/4 (and x4 to the input
size at inference, done by the caller). A 1x1 classifier commutes with bilinear
upsampling (the interpolation weights sum to 1), so every classifier here runs *before*
its upsampling: same function, fewer multiply-adds.

Channel widths follow the released ICNet model (PSPNet-50 with halved kernels:
stages of 128/256/512/1024 channels, 256 after pyramid pooling, 128 in the CFFs) times
the ``width`` multiplier; ``blocks`` sets the bottleneck count per ResNet stage. At
``width=2.0`` with ``blocks=(3, 4, 6, 3)`` the stages have exactly ResNet-50's shapes
(ICNet's base model before its kernel halving), so ImageNet weights load one to one
(``training/backbone_init.py``).

``stem``: ``deep`` is the released ICNet's (and PSPNet's) three 3x3 convolutions
(32/32/64 x width); ``resnet`` is torchvision's ResNet stem, one 7x7 stride-2
convolution to a quarter of ``conv2``'s width. Only the ``resnet`` stem has an ImageNet
counterpart: a random deep stem would feed random features to pretrained ``conv2_x``.

Sizes: for an (H, W) input, every stride-2 step maps n -> ceil(n / 2), so the outputs
at stride s have size ``(ceil(H / s), ceil(W / s))`` (:func:`guidance_size`). The
training targets must use the same rounding (see ``training/losses/panonet.py``).
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from panoptic_ros.models.common import strided_size

# Released ICNet channel counts at width 1.0 (stem 32/32/64, then stage outputs).
_STEM = (32, 32, 64)
STEMS = ("deep", "resnet")
"""Stem kinds: ICNet's three 3x3 convs, or ResNet's 7x7 conv (ImageNet-loadable)."""
_SUB1 = (32, 32, 64)
_STAGE_OUT = (128, 256, 512, 1024)
_PSP_OUT = 256
_CFF_OUT = 128
GUIDANCE_STRIDES = (4, 8, 16)
"""Output strides of the cascade label guidance, finest first (main output at 1/4)."""
OUTPUT_STRIDE = GUIDANCE_STRIDES[0]
"""Stride of the main output (the classifier's, upsampled to 1/4)."""


def scaled(channels: int, width: float) -> int:
    """``channels * width`` rounded to a multiple of 8 (at least 8)."""
    return max(8, int(channels * width / 8 + 0.5) * 8)


guidance_size = strided_size
"""Spatial size ``(ceil(H / s), ceil(W / s))`` of the output at stride ``s`` (see
:func:`panoptic_ros.models.common.strided_size`)."""


def resize(x: Tensor, size: Sequence[int]) -> Tensor:
    """Bilinear resize of (B, C, h, w) to ``size`` (half-pixel centres, ONNX ``Resize``)."""
    if tuple(x.shape[-2:]) == tuple(size):
        return x
    return F.interpolate(x, size=tuple(size), mode="bilinear", align_corners=False)


class ConvBN(nn.Sequential):
    """Conv (no bias) + BatchNorm (+ ReLU)."""

    def __init__(self, in_ch: int, out_ch: int, kernel: int = 3, *, stride: int = 1,
                 dilation: int = 1, relu: bool = True):
        layers: list[nn.Module] = [
            nn.Conv2d(in_ch, out_ch, kernel, stride=stride, padding=dilation * (kernel // 2),
                      dilation=dilation, bias=False),
            nn.BatchNorm2d(out_ch),
        ]
        if relu:
            layers.append(nn.ReLU(inplace=True))
        super().__init__(*layers)


class Bottleneck(nn.Module):
    """ResNet bottleneck (1x1 reduce, 3x3 with stride/dilation, 1x1 expand) + shortcut."""

    def __init__(self, in_ch: int, mid_ch: int, out_ch: int, *, stride: int = 1, dilation: int = 1):
        super().__init__()
        self.reduce = ConvBN(in_ch, mid_ch, 1)
        self.conv = ConvBN(mid_ch, mid_ch, 3, stride=stride, dilation=dilation)
        self.expand = ConvBN(mid_ch, out_ch, 1, relu=False)
        self.shortcut = (ConvBN(in_ch, out_ch, 1, stride=stride, relu=False)
                         if stride != 1 or in_ch != out_ch else nn.Identity())

    def forward(self, x: Tensor) -> Tensor:
        return F.relu(self.expand(self.conv(self.reduce(x))) + self.shortcut(x))


def _stage(in_ch: int, mid_ch: int, out_ch: int, count: int, *, stride: int = 1,
           dilation: int = 1) -> nn.Sequential:
    blocks = [Bottleneck(in_ch, mid_ch, out_ch, stride=stride, dilation=dilation)]
    blocks += [Bottleneck(out_ch, mid_ch, out_ch, dilation=dilation) for _ in range(count - 1)]
    return nn.Sequential(*blocks)


def _pool_matrix(size: int, bins: int, device: torch.device, dtype: torch.dtype) -> Tensor:
    """(bins, size) averaging matrix with the bin edges of adaptive average pooling
    (start = floor(i * size / bins), end = ceil((i + 1) * size / bins)).

    Built in numpy so that a trace records one constant. Built by slice assignment on a
    torch tensor instead, the trace holds those assignments as ONNX ops whose shape
    inference divides by zero when a feature map is smaller than the bins: the legacy
    exporter then kills the process with SIGFPE (e.g. 128 x 192 or 128 x 256 inputs, a
    4-row 1/32 map with 6 bins; ``test_export_panonet`` exports those sizes).
    """
    matrix = np.zeros((bins, size), dtype=np.float32)
    for i in range(bins):
        start, end = (i * size) // bins, -(-((i + 1) * size) // bins)
        matrix[i, start:end] = 1.0 / (end - start)
    return torch.from_numpy(matrix).to(device=device, dtype=dtype)


class PyramidPooling(nn.Module):
    """ICNet's pyramid pooling: average-pool to each bin grid, upsample, *sum* with the input.

    Pooling is written as two small matrix products (same bins as
    ``adaptive_avg_pool2d``) so any input size exports to ONNX, where adaptive pooling
    only exports when the size divides evenly.

    The matrices of a feature size are registered as (non-persistent) buffers the first
    time that size is seen outside tracing: they then live on the model's device and
    dtype (no host-to-device copy per forward, which also blocks CUDA graph capture and
    breaks ``torch.compile`` graphs). Checkpoints do not hold them.
    """

    def __init__(self, bins: Sequence[int] = (1, 2, 3, 6)):
        super().__init__()
        self.bins = tuple(bins)

    def _matrices(self, x: Tensor) -> list[tuple[Tensor, Tensor]]:
        """Per bin count b: the (b, h) row and (b, w) column averaging matrices for ``x``."""
        h, w = x.shape[-2:]
        name = f"pool_{h}x{w}"
        if hasattr(self, name + "_0r"):
            return [(getattr(self, f"{name}_{i}r"), getattr(self, f"{name}_{i}c")) for i in range(len(self.bins))]
        with torch.inference_mode(False):   # kept buffers must serve later training steps too
            pairs = [(_pool_matrix(h, b, x.device, x.dtype), _pool_matrix(w, b, x.device, x.dtype)) for b in self.bins]
        if not (torch.jit.is_tracing() or torch.compiler.is_compiling() or torch.onnx.is_in_onnx_export()):
            for i, (rows, cols) in enumerate(pairs):
                self.register_buffer(f"{name}_{i}r", rows, persistent=False)
                self.register_buffer(f"{name}_{i}c", cols, persistent=False)
        return pairs

    def forward(self, x: Tensor) -> Tensor:
        """(B, C, h, w) -> (B, C, h, w)."""
        h, w = x.shape[-2:]
        out = x
        for rows, cols in self._matrices(x):                            # (b, h), (b, w)
            pooled = torch.matmul(torch.matmul(rows, x), cols.t())      # (B, C, b, b)
            out = out + resize(pooled, (h, w))
        return out


class CascadeFeatureFusion(nn.Module):
    """CFF unit: fuse a low-resolution feature into a 2x finer one.

    Args:
        low_ch: channels of the low-resolution input F1.
        high_ch: channels of the high-resolution input F2.
        out_ch: fused channels.
        num_outputs: classes (or embedding dims) of the auxiliary label-guidance classifier.
    """

    def __init__(self, low_ch: int, high_ch: int, out_ch: int, num_outputs: int):
        super().__init__()
        self.low = ConvBN(low_ch, out_ch, 3, dilation=2, relu=False)
        self.high = ConvBN(high_ch, out_ch, 1, relu=False)
        self.classifier = nn.Conv2d(low_ch, num_outputs, 1)

    def forward(self, low: Tensor, high: Tensor, *, with_guidance: bool) -> tuple[Tensor, Tensor | None]:
        """low (B, Cl, h, w), high (B, Ch, ~2h, ~2w) -> fused (B, Co, ~2h, ~2w) and the
        guidance output (B, num_outputs, ~2h, ~2w) or None."""
        size = high.shape[-2:]
        fused = F.relu(self.low(resize(low, size)) + self.high(high))
        guidance = resize(self.classifier(low), size) if with_guidance else None
        return fused, guidance


def _stem(kind: str, in_ch: int, deep: Sequence[int], resnet: int) -> nn.Sequential:
    """(B, in_ch, h, w) -> (B, c, h/4, w/4): conv(s) to 1/2, max-pool to 1/4."""
    pool = nn.MaxPool2d(3, stride=2, padding=1)
    if kind == "deep":
        s1, s2, s3 = deep
        return nn.Sequential(ConvBN(in_ch, s1, stride=2), ConvBN(s1, s2), ConvBN(s2, s3), pool)
    if kind == "resnet":
        return nn.Sequential(ConvBN(in_ch, resnet, 7, stride=2), pool)
    raise ValueError(f"stem: expected one of {', '.join(STEMS)}, got {kind!r}")


class ICNetTrunk(nn.Module):
    """The three ICNet branches up to (not including) the CFF units.

    Args:
        in_channels: input channels (3 for RGB, 5 with coordinate channels).
        width: channel multiplier (1.0 = the released ICNet).
        blocks: bottlenecks per ResNet stage (conv2..conv5), e.g. (3, 4, 6, 3).
        psp_bins: pyramid pooling grid sizes.
        stem: ``deep`` (three 3x3 convs) or ``resnet`` (one 7x7 conv); see the module docstring.
    """

    def __init__(self, *, in_channels: int, width: float, blocks: Sequence[int],
                 psp_bins: Sequence[int], stem: str = "deep"):
        super().__init__()
        s1, s2, s3 = (scaled(c, width) for c in _STEM)
        o2, o3, o4, o5 = (scaled(c, width) for c in _STAGE_OUT)
        f1, f2, f3 = (scaled(c, width) for c in _SUB1)
        self.out_channels = (f3, o3, scaled(_PSP_OUT, width))
        # sub1: light full-resolution branch, three stride-2 convs -> 1/8.
        self.sub1 = nn.Sequential(ConvBN(in_channels, f1, stride=2), ConvBN(f1, f2, stride=2),
                                  ConvBN(f2, f3, stride=2))
        # sub2 (shared with sub4): stem, conv2_x, conv3_1 on the 1/2 image -> 1/16.
        self.stem = _stem(stem, in_channels, (s1, s2, s3), o2 // 4)
        stem_out = s3 if stem == "deep" else o2 // 4
        self.conv2 = _stage(stem_out, o2 // 4, o2, blocks[0])
        self.conv3_1 = _stage(o2, o3 // 4, o3, 1, stride=2)
        # sub4: rest of conv3, dilated conv4/conv5 (PSPNet style), pyramid pooling -> 1/32.
        self.conv3_rest = _stage(o3, o3 // 4, o3, blocks[1] - 1) if blocks[1] > 1 else nn.Identity()
        self.conv4 = _stage(o3, o4 // 4, o4, blocks[2], dilation=2)
        self.conv5 = _stage(o4, o5 // 4, o5, blocks[3], dilation=4)
        self.ppm = PyramidPooling(psp_bins)
        self.sub4_proj = ConvBN(o5, self.out_channels[2], 1)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """(B, C_in, H, W) normalised input -> (sub1 (B, c1, H/8, W/8),
        sub2 (B, c2, H/16, W/16), sub4 (B, c4, H/32, W/32)); sizes round up."""
        h, w = x.shape[-2:]
        sub1 = self.sub1(x)
        half = resize(x, guidance_size(h, w, 2))                           # (B, C_in, H/2, W/2)
        sub2 = self.conv3_1(self.conv2(self.stem(half)))                     # (B, c2, H/16, W/16)
        sub4 = resize(sub2, guidance_size(sub2.shape[-2], sub2.shape[-1], 2))  # (B, c2, H/32, W/32)
        sub4 = self.conv5(self.conv4(self.conv3_rest(sub4)))
        sub4 = self.sub4_proj(self.ppm(sub4))                                # (B, c4, H/32, W/32)
        return sub1, sub2, sub4


class ICNetHead(nn.Module):
    """The two CFF units and the final classifier.

    Args:
        in_channels: (sub1, sub2, sub4) channels from :class:`ICNetTrunk`.
        num_outputs: output channels (classes, or embedding dimensions).
        width: channel multiplier.
    """

    def __init__(self, *, in_channels: Sequence[int], num_outputs: int, width: float):
        super().__init__()
        c1, c2, c4 = in_channels
        cff = scaled(_CFF_OUT, width)
        self.cff_sub24 = CascadeFeatureFusion(c4, c2, cff, num_outputs)
        self.cff_sub124 = CascadeFeatureFusion(cff, c1, cff, num_outputs)
        self.classifier = nn.Conv2d(cff, num_outputs, 1)

    def forward(self, feats: tuple[Tensor, Tensor, Tensor], *, size_4: tuple[int, int],
                with_guidance: bool) -> tuple[Tensor, ...]:
        """Trunk features -> (out_4 (B, K, H/4, W/4), [out_8 (B, K, H/8, W/8),
        out_16 (B, K, H/16, W/16)]); the last two only ``with_guidance``.

        Args:
            feats: (sub1, sub2, sub4) from :class:`ICNetTrunk`.
            size_4: the 1/4 output size, ``guidance_size(H, W, 4)``; passed in because
                it cannot be recovered from the 1/8 size (ceil(H/4) != 2 ceil(H/8)).
            with_guidance: also return the 1/8 and 1/16 auxiliary outputs.
        """
        sub1, sub2, sub4 = feats
        f24, out_16 = self.cff_sub24(sub4, sub2, with_guidance=with_guidance)    # 1/16
        f124, out_8 = self.cff_sub124(f24, sub1, with_guidance=with_guidance)    # 1/8
        out_4 = resize(self.classifier(f124), size_4)                            # 1/4
        if not with_guidance:
            return (out_4,)
        return out_4, out_8, out_16


class ICNet(nn.Module):
    """A complete ICNet: trunk + head.

    Args:
        in_channels: input channels.
        num_outputs: output channels.
        width: channel multiplier.
        blocks: bottlenecks per ResNet stage.
        psp_bins: pyramid pooling grid sizes.
        stem: ``deep`` or ``resnet`` (see :class:`ICNetTrunk`).
    """

    def __init__(self, *, in_channels: int = 3, num_outputs: int, width: float = 1.0,
                 blocks: Sequence[int] = (3, 4, 6, 3), psp_bins: Sequence[int] = (1, 2, 3, 6),
                 stem: str = "deep"):
        super().__init__()
        self.trunk = ICNetTrunk(in_channels=in_channels, width=width, blocks=blocks, psp_bins=psp_bins,
                                stem=stem)
        self.head = ICNetHead(in_channels=self.trunk.out_channels, num_outputs=num_outputs, width=width)

    def forward(self, x: Tensor, *, with_guidance: bool = False) -> tuple[Tensor, ...]:
        """(B, C_in, H, W) normalised input -> outputs at 1/4 [, 1/8, 1/16] (see ICNetHead)."""
        size_4 = guidance_size(x.shape[-2], x.shape[-1], OUTPUT_STRIDE)
        return self.head(self.trunk(x), size_4=size_4, with_guidance=with_guidance)


def init_weights(module: nn.Module) -> None:
    """He init for convs, small normal init for the (biased) 1x1 classifiers, unit BN; the
    last BN of each bottleneck starts at zero so every residual block starts as the
    identity (helps training from scratch)."""
    for m in module.modules():
        if isinstance(m, nn.Conv2d) and m.bias is not None:  # a classifier: start near zero
            nn.init.normal_(m.weight, std=0.01)
            nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
    for m in module.modules():
        if isinstance(m, Bottleneck):
            nn.init.zeros_(m.expand[1].weight)
