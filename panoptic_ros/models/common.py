"""Small pieces both networks share: strided map sizes and coordinate channels.

Both are written for the legacy ONNX exporter: integer arithmetic without negative
operands (ONNX integer division truncates, which equals floor division only for
non-negative numbers) and coordinates from ``arange`` (``linspace`` exports as float64
ops).
"""
from __future__ import annotations

import torch
from torch import Tensor


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
