"""Small pieces both networks share: config checks, strided map sizes, coordinate channels.

Both are written for the legacy ONNX exporter: integer arithmetic without negative
operands (ONNX integer division truncates, which equals floor division only for
non-negative numbers) and coordinates from ``arange`` (``linspace`` exports as float64
ops).
"""
from __future__ import annotations

from typing import Any

import torch
from torch import Tensor


IMAGENET_MEAN = (123.675, 116.28, 103.53)
"""Default ``pixel_mean``: the ImageNet RGB mean on the 0..255 scale."""
IMAGENET_STD = (58.395, 57.12, 57.375)
"""Default ``pixel_std``: the ImageNet RGB standard deviation on the 0..255 scale."""


def check_image_fields(config: Any, *, kind: str, min_side: int) -> None:
    """Check the fields every model config has (``kind``, ``input_size``, ``pixel_std``).

    Args:
        config: a model config (called from its ``__post_init__``).
        kind: the value ``config.kind`` must have.
        min_side: smallest allowed height and width of ``input_size``.
    Raises:
        ValueError: naming the offending field.
    """
    if config.kind != kind:
        raise ValueError(f"kind: expected {kind!r}, got {config.kind!r}")
    if len(config.input_size) != 2 or min(config.input_size) < min_side:
        raise ValueError(f"input_size: expected (H, W) of at least {min_side} pixels, got {config.input_size}")
    if min(config.pixel_std) <= 0:
        raise ValueError(f"pixel_std: must be > 0, got {config.pixel_std}")


def strided_size(height: int, width: int, stride: int) -> tuple[int, int]:
    """(ceil(height / stride), ceil(width / stride)): the size of a stride-``stride`` map.

    Every stride-2 step of both networks (convs with "same" padding, pooling) maps n to
    ceil(n / 2), and the training targets sample their grids at this size.
    """
    return (height + stride - 1) // stride, (width + stride - 1) // stride


def _axis(n: int, like: Tensor) -> Tensor:
    """(n,) positions ``-1 + 2 i / (n - 1)``: -1 at the first pixel centre, +1 at the last
    (a single pixel sits at -1)."""
    return torch.arange(n, device=like.device, dtype=like.dtype) * (2.0 / max(n - 1, 1)) - 1.0


def coordinate_channels(batch: int, height: int, width: int, *, like: Tensor) -> Tensor:
    """(B, 2, H, W) x then y coordinates normalised to [-1, 1] over the pixel centres.

    Args:
        batch, height, width: output size.
        like: a tensor whose device and dtype the coordinates take.
    Returns:
        an expanded (not copied) tensor; channel 0 varies along W, channel 1 along H.
    """
    xs, ys = _axis(width, like), _axis(height, like)
    grid = torch.stack([xs.view(1, width).expand(height, width),
                        ys.view(height, 1).expand(height, width)])            # (2, H, W)
    return grid.unsqueeze(0).expand(batch, 2, height, width)


def with_coordinate_channels(x: Tensor) -> Tensor:
    """CoordConv input: ``x`` (B, C, H, W) -> (B, C + 2, H, W) with x and y channels last."""
    b, _, h, w = x.shape
    return torch.cat([x, coordinate_channels(b, h, w, like=x)], dim=1)
