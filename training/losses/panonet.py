"""PanoNet training loss: cascade-guided cross-entropy plus discriminative embedding loss.

``L = sum_t lambda_t (L_sce,t + alpha L_var,t + beta L_dist,t + gamma L_reg,t)`` over the
guidance strides t = 4, 8, 16 with lambda = (1, 0.4, 0.16) (paper, Sec. III-B/E). Each
term is returned separately, already weighted, named ``semantic_ce_{s}``,
``instance_var_{s}``, ``instance_dist_{s}``, ``instance_reg_{s}``.

Optimiser (owned by the training engine; recorded here because it belongs to the
recipe): the paper trains with Adadelta, learning rate 0.003, polynomial decay.

Target sizes: the network's output at stride s is ``(ceil(H/s), ceil(W/s))``
(``panoptic_ros.models.icnet.guidance_size``). Targets of that size are used as is.
Targets one row/column smaller (``floor(H/s)``: no label for the partial last cell)
are padded with the ignore values (255 semantic, 0 instance); any other size is an error.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping

import torch.nn.functional as F
from torch import Tensor

from panoptic_ros.labels import IGNORE_INDEX
from panoptic_ros.models.icnet import GUIDANCE_STRIDES
from panoptic_ros.training.losses.discriminative import discriminative_loss
from panoptic_ros.training.losses.semantic import semantic_cross_entropy
from panoptic_ros.training.targets import INSTANCE_SLOTS


@dataclass(frozen=True)
class PanoNetLossConfig:
    """PanoNet loss hyper-parameters (defaults from the paper).

    Attributes:
        scale_weights: lambda for the strides (4, 8, 16).
        delta_v: variance margin.
        delta_d: distance margin (means pushed ``2 delta_d`` apart).
        delta_r: regularisation margin on the norm of instance means.
        alpha: weight of the variance term.
        beta: weight of the distance term.
        gamma: weight of the regularisation term.
        semantic_weight: extra factor on every cross-entropy term.
        instance_weight: extra factor on every discriminative term.
        class_weights: optional per-class cross-entropy weights (one per train index).
        ignore_index: unlabelled semantic value.
    """

    scale_weights: tuple[float, float, float] = (1.0, 0.4, 0.16)
    delta_v: float = 0.25
    delta_d: float = 1.0
    delta_r: float = 6.0
    alpha: float = 1.0
    beta: float = 1.0
    gamma: float = 0.1
    semantic_weight: float = 1.0
    instance_weight: float = 1.0
    class_weights: tuple[float, ...] | None = None
    ignore_index: int = IGNORE_INDEX

    def __post_init__(self) -> None:
        for name in ("delta_v", "delta_d", "delta_r"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name}: must be >= 0, got {getattr(self, name)}")
        if self.delta_d <= self.delta_v:
            # Paper, Sec. III-D: with delta_d > delta_v every pixel ends closer to its own
            # instance mean than to any other, which is what clustering relies on.
            raise ValueError(f"delta_d: must exceed delta_v (got delta_d={self.delta_d}, "
                             f"delta_v={self.delta_v})")
        weights = {"alpha": self.alpha, "beta": self.beta, "gamma": self.gamma,
                   "semantic_weight": self.semantic_weight, "instance_weight": self.instance_weight}
        weights.update({f"scale_weights[{i}]": v for i, v in enumerate(self.scale_weights)})
        for name, value in weights.items():
            if value < 0:
                raise ValueError(f"{name}: must be >= 0, got {value}")
        if self.class_weights is not None and min(self.class_weights, default=0.0) < 0:
            raise ValueError("class_weights: every weight must be >= 0")


def align_target(target: Tensor, size: tuple[int, int], *, fill: int, name: str) -> Tensor:
    """Pad a floor-sized target to the (ceil) output size with ``fill``.

    Args:
        target: (B, h, w) integer target.
        size: (h_out, w_out) of the matching output.
        fill: value of the added row/column (an ignore value).
        name: target key, quoted in errors.
    Raises:
        ValueError: the target is neither the output size nor one smaller per side.
    """
    dh, dw = size[0] - target.shape[-2], size[1] - target.shape[-1]
    if target.dim() != 3 or dh not in (0, 1) or dw not in (0, 1):
        raise ValueError(f"targets[{name!r}] has shape {tuple(target.shape)} but the output is "
                         f"{tuple(size)}; expected (B, ceil(H/s), ceil(W/s))")
    if dh or dw:
        target = F.pad(target, (0, dw, 0, dh), value=fill)
    return target


def panonet_losses(
    outputs: Mapping[str, Tensor],
    targets: Mapping[str, Tensor],
    *,
    config: PanoNetLossConfig,
    progress: float,
) -> dict[str, Tensor]:
    """All weighted PanoNet loss terms (the signature of every kind's losses).

    Args:
        outputs: train-mode PanoNet outputs ``semantic_logits_{s}`` (B, C, h_s, w_s) and
            ``embedding_{s}`` (B, E, h_s, w_s) for s in (4, 8, 16).
        targets: ``semantic_{s}`` and ``instance_{s}`` (B, h_s, w_s) int64 (see
            ``training/targets.py``), and optionally ``instance_slots`` (an int above
            every instance id; the collate adds it: then no term reads the device).
        config: loss weights and margins.
        progress: ``step / total_steps``; PanoNet's losses do not depend on it.
    Returns:
        12 named scalar terms (4 per stride), already weighted; their sum is the loss.
    Raises:
        KeyError: a needed output or target is missing (the message names it).
    """
    losses: dict[str, Tensor] = {}
    for stride, lam in zip(GUIDANCE_STRIDES, config.scale_weights):
        logits = _get(outputs, f"semantic_logits_{stride}", "outputs")
        embedding = _get(outputs, f"embedding_{stride}", "outputs")
        size = tuple(logits.shape[-2:])
        semantic = align_target(_get(targets, f"semantic_{stride}", "targets"), size,
                                fill=config.ignore_index, name=f"semantic_{stride}")
        instance = align_target(_get(targets, f"instance_{stride}", "targets"), tuple(embedding.shape[-2:]),
                                fill=0, name=f"instance_{stride}")
        ce = semantic_cross_entropy(logits, semantic.to(logits.device), class_weights=config.class_weights,
                                    ignore_index=config.ignore_index, check_labels=False)
        inst = lam * config.instance_weight
        if inst == 0:  # e.g. the semantic-only stage: skip the work, keep a (zero) graph for DDP
            zero = embedding.sum() * 0.0
            terms = {"var": zero, "dist": zero, "reg": zero}
        else:
            terms = discriminative_loss(embedding, instance.to(embedding.device), delta_v=config.delta_v,
                                        delta_d=config.delta_d, delta_r=config.delta_r,
                                        slots=targets.get(INSTANCE_SLOTS))
        losses[f"semantic_ce_{stride}"] = lam * config.semantic_weight * ce
        losses[f"instance_var_{stride}"] = inst * config.alpha * terms["var"]
        losses[f"instance_dist_{stride}"] = inst * config.beta * terms["dist"]
        losses[f"instance_reg_{stride}"] = inst * config.gamma * terms["reg"]
    return losses


def _get(mapping: Mapping[str, Tensor], key: str, what: str) -> Tensor:
    try:
        return mapping[key]
    except KeyError:
        raise KeyError(f"{what}[{key!r}] is missing (have {sorted(mapping)})") from None
