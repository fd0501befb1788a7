"""The FCOS proposal head of CIAE, shared across pyramid levels P3..P7.

Two towers of ``num_convs`` x (3x3 conv, GroupNorm, ReLU): box classification comes from
the classification tower; center-ness, box regression and the box embedding come from the
regression tower (CIAE, Fig. 3). Regression predicts (l, t, r, b) distances in input
pixels as ``stride * exp(scale_level * x)``: the learnable per-level scale is FCOS's; the
stride factor starts every level at its own object size (FCOS's later "normalised
regression targets" do the same by dividing the targets instead). The exponent is
clamped so an untrained or diverging network cannot produce ``inf``.

Dense predictions of all levels are concatenated in level order, row-major within a level;
location (i, j) of a level with stride ``s`` sits at input pixel (s//2 + j*s, s//2 + i*s),
the same order and positions as the FCOS training targets.
"""
from __future__ import annotations

import math

import torch
from torch import nn

from panoptic_ros.models.resnet_fpn import make_norm

MAX_LOG_SCALE = 10.0
"""Upper clamp of the regression exponent (exp(10) * 128 px is far beyond any image)."""
FP16_SAFE_DISTANCE = 60000.0
"""Largest predicted distance in pixels: below float16's 65504, so fp16 engines (TensorRT)
cannot overflow ``exp(x) * stride`` to inf; still far beyond any image."""


def max_log_distance(stride: int) -> float:
    """Upper clamp of the exponent at ``stride``: exp(clamp) * stride <= FP16_SAFE_DISTANCE."""
    return min(MAX_LOG_SCALE, math.log(FP16_SAFE_DISTANCE / stride))


def level_locations(sizes: list[tuple[int, int]], strides: tuple[int, ...],
                    device: torch.device | None = None) -> torch.Tensor:
    """Input-pixel positions of every location of every level.

    Args:
        sizes: (h, w) of each level.
        strides: stride of each level.
    Returns:
        (N, 2) float32 (x, y), N = sum(h * w), level order then row-major.
    """
    points = []
    for (h, w), s in zip(sizes, strides):
        ys = torch.arange(h, device=device, dtype=torch.float32) * s + s // 2
        xs = torch.arange(w, device=device, dtype=torch.float32) * s + s // 2
        yy, xx = torch.meshgrid(ys, xs, indexing="ij")
        points.append(torch.stack([xx.reshape(-1), yy.reshape(-1)], dim=1))
    return torch.cat(points, dim=0)


def _tower(channels: int, num_convs: int) -> nn.Sequential:
    layers: list[nn.Module] = []
    for _ in range(num_convs):
        layers += [nn.Conv2d(channels, channels, 3, padding=1), make_norm("gn", channels), nn.ReLU(inplace=True)]
    return nn.Sequential(*layers)


class FCOSHead(nn.Module):
    """Shared FCOS head with a box-embedding output.

    Args:
        channels: input (FPN) channels, also the tower width.
        num_classes: thing classes C_th (sigmoid classification, no background logit).
        box_embed_channels: channels of the box embedding.
        strides: strides of the input levels (one learnable scale each).
        num_convs: convs per tower (4 in FCOS).
        prior_prob: initial foreground probability of the classifier (0.01 in FCOS).
    """

    def __init__(self, *, channels: int, num_classes: int, box_embed_channels: int,
                 strides: tuple[int, ...] = (8, 16, 32, 64, 128), num_convs: int = 4, prior_prob: float = 0.01):
        super().__init__()
        self.strides = tuple(strides)
        self.num_classes = num_classes
        self.cls_tower = _tower(channels, num_convs)
        self.reg_tower = _tower(channels, num_convs)
        self.cls_logits = nn.Conv2d(channels, num_classes, 3, padding=1)
        self.bbox_pred = nn.Conv2d(channels, 4, 3, padding=1)
        self.centerness = nn.Conv2d(channels, 1, 3, padding=1)
        self.box_embed = nn.Conv2d(channels, box_embed_channels, 3, padding=1)
        self.scales = nn.Parameter(torch.ones(len(self.strides)))
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.normal_(m.weight, std=0.01)
                nn.init.zeros_(m.bias)
        # RetinaNet/FCOS prior: start every location as background with probability 0.99
        # so the focal loss of the many negatives does not swamp the first iterations.
        nn.init.constant_(self.cls_logits.bias, -math.log((1 - prior_prob) / prior_prob))

    def forward(self, feats: list[torch.Tensor]) -> tuple[dict[str, torch.Tensor], list[torch.Tensor]]:
        """Run the head on P3..P7.

        Args:
            feats: one (B, C, h_l, w_l) map per stride in ``self.strides``.
        Returns:
            dense outputs concatenated over levels (N = sum h_l * w_l):
            ``cls_logits`` (B, N, C_th), ``centerness_logits`` (B, N), ``box_reg`` (B, N, 4)
            (l, t, r, b) in input pixels; and the per-level box embeddings, each
            (B, box_embed_channels, h_l, w_l).
        """
        if len(feats) != len(self.strides):
            raise ValueError(f"FCOSHead expects {len(self.strides)} levels, got {len(feats)}")
        cls, ctr, reg, embeds = [], [], [], []
        for level, (x, stride) in enumerate(zip(feats, self.strides)):
            c = self.cls_tower(x)
            r = self.reg_tower(x)
            cls.append(self.cls_logits(c).flatten(2).transpose(1, 2))
            ctr.append(self.centerness(r).flatten(1))
            log_dist = (self.scales[level] * self.bbox_pred(r)).clamp(max=max_log_distance(stride))
            reg.append((torch.exp(log_dist) * stride).flatten(2).transpose(1, 2))
            embeds.append(self.box_embed(r))
        outputs = {"cls_logits": torch.cat(cls, 1), "centerness_logits": torch.cat(ctr, 1),
                   "box_reg": torch.cat(reg, 1)}
        return outputs, embeds
