"""Optimizers and learning-rate schedules.

The schedule is a pure function of the global step (:func:`lr_factor`), set on every
parameter group before each step. Resuming therefore needs only the step number: there is
no scheduler object whose pickled state could drift from the optimizer's.

Recipes from the papers: PanoNet trains with Adadelta, lr 0.003 and polynomial decay;
CIAE with SGD lr 0.01, momentum 0.9, weight decay 1e-4, multiplied by 0.1 at 60k and 80k
of 90k iterations (``milestones: [0.6667, 0.8889]`` as fractions of training).
"""
from __future__ import annotations

import bisect
from dataclasses import dataclass
from typing import Iterable, Literal, Sequence

import torch
from torch import nn


@dataclass(frozen=True)
class OptimizerConfig:
    """Optimizer settings.

    Attributes:
        name: ``sgd``, ``adadelta`` or ``adamw``.
        lr: base learning rate.
        momentum: SGD momentum.
        weight_decay: L2 penalty on weights; norm parameters and biases (1-D tensors)
            are never decayed.
        rho: Adadelta running-average coefficient.
        eps: numerical stabiliser of Adadelta / AdamW.
        grad_clip: clip the global gradient norm to this value (0 = off).
        accumulate: micro-batches per optimizer step (gradients are averaged, exactly as
            DistributedDataParallel averages them across processes).
        backbone_lr_mult: learning rate of the ImageNet-initialised backbone layers
            (``training/backbone_init.backbone_prefixes``) relative to ``lr``. 1.0 by
            default: neither paper uses another (0 keeps the backbone fixed).
    """

    name: Literal["sgd", "adadelta", "adamw"] = "sgd"
    lr: float = 0.01
    momentum: float = 0.9
    weight_decay: float = 1e-4
    rho: float = 0.9
    eps: float = 1e-6
    grad_clip: float = 0.0
    accumulate: int = 1
    backbone_lr_mult: float = 1.0

    def __post_init__(self) -> None:
        if self.lr <= 0:
            raise ValueError(f"lr must be > 0, got {self.lr}")
        if not 0 <= self.momentum < 1 or not 0 < self.rho < 1:
            raise ValueError("momentum must lie in [0, 1) and rho in (0, 1)")
        if self.weight_decay < 0 or self.grad_clip < 0 or self.eps <= 0:
            raise ValueError("weight_decay and grad_clip must be >= 0, eps > 0")
        if self.accumulate < 1:
            raise ValueError(f"accumulate must be >= 1, got {self.accumulate}")
        if not 0 <= self.backbone_lr_mult <= 10:
            raise ValueError(f"backbone_lr_mult must lie in [0, 10], got {self.backbone_lr_mult}")


@dataclass(frozen=True)
class ScheduleConfig:
    """Learning-rate schedule over ``total_steps`` optimizer steps.

    Attributes:
        total_steps: length of training in optimizer steps.
        policy: ``poly`` (``(1 - step/total)**power``), ``step`` (times ``gamma`` at each
            milestone) or ``constant``.
        power: exponent of the poly policy.
        milestones: fractions of ``total_steps`` where the step policy decays.
        gamma: step-policy decay factor.
        warmup_steps: linear warm-up from ``warmup_factor * lr`` to the schedule's value.
        warmup_factor: starting fraction of the warm-up.
    """

    total_steps: int = 1000
    policy: Literal["poly", "step", "constant"] = "poly"
    power: float = 0.9
    milestones: tuple[float, ...] = (2 / 3, 8 / 9)
    gamma: float = 0.1
    warmup_steps: int = 0
    warmup_factor: float = 0.001

    def __post_init__(self) -> None:
        if self.total_steps < 1:
            raise ValueError(f"total_steps must be >= 1, got {self.total_steps}")
        if list(self.milestones) != sorted(self.milestones) or any(not 0 < m < 1 for m in self.milestones):
            raise ValueError(f"milestones must be increasing fractions in (0, 1), got {list(self.milestones)}")
        if not 0 <= self.warmup_steps < self.total_steps:
            raise ValueError(f"warmup_steps must lie in [0, total_steps), got {self.warmup_steps}")
        if not 0 < self.warmup_factor <= 1 or not 0 < self.gamma <= 1 or self.power <= 0:
            raise ValueError("warmup_factor and gamma must lie in (0, 1], power > 0")


def lr_factor(step: int, config: ScheduleConfig) -> float:
    """Multiplier of the base learning rate for optimizer step ``step`` (0-based)."""
    progress = min(step, config.total_steps) / config.total_steps
    if config.policy == "poly":
        factor = (1.0 - progress) ** config.power
    elif config.policy == "step":
        factor = config.gamma ** bisect.bisect_right(list(config.milestones), progress)
    else:
        factor = 1.0
    if step < config.warmup_steps:
        alpha = step / config.warmup_steps
        factor *= config.warmup_factor * (1 - alpha) + alpha
    return factor


def set_learning_rate(optimizer: torch.optim.Optimizer, step: int, base_lr: float,
                      schedule: ScheduleConfig) -> float:
    """Set every parameter group's lr for ``step`` (times the group's ``lr_mult``, if
    any); returns the base lr of the step."""
    lr = base_lr * lr_factor(step, schedule)
    for group in optimizer.param_groups:
        group["lr"] = lr * group.get("lr_mult", 1.0)
    return lr


def parameter_groups(model: nn.Module, weight_decay: float, backbone: Sequence[str] = (),
                     backbone_lr_mult: float = 1.0) -> list[dict]:
    """Trainable parameters split into decayed (weights) and undecayed (norms, biases);
    with ``backbone_lr_mult != 1`` the parameters under the ``backbone`` name prefixes
    form two more groups carrying ``lr_mult`` (with 1.0 the groups stay as they were, so
    earlier checkpoints resume unchanged)."""
    split = backbone_lr_mult != 1.0 and bool(backbone)
    groups: dict[tuple[bool, bool], list] = {(b, d): [] for b in (False, True) for d in (True, False)}
    for name, param in model.named_parameters():
        if param.requires_grad:
            groups[(split and name.startswith(tuple(backbone)), param.ndim > 1)].append(param)
    out = [{"params": params, "weight_decay": weight_decay if decay else 0.0,
            **({"lr_mult": backbone_lr_mult} if in_backbone else {})}
           for (in_backbone, decay), params in groups.items()]
    return [g for g in out if g["params"]]


def build_optimizer(model: nn.Module, config: OptimizerConfig, backbone: Sequence[str] = ()) -> torch.optim.Optimizer:
    """The optimizer of ``config`` over ``model``'s trainable parameters; ``backbone``:
    parameter name prefixes that get ``config.backbone_lr_mult``."""
    groups = parameter_groups(model, config.weight_decay, backbone, config.backbone_lr_mult)
    if not groups:
        raise ValueError("the model has no trainable parameters")
    if config.name == "sgd":
        return torch.optim.SGD(groups, lr=config.lr, momentum=config.momentum)
    if config.name == "adadelta":
        return torch.optim.Adadelta(groups, lr=config.lr, rho=config.rho, eps=config.eps)
    return torch.optim.AdamW(groups, lr=config.lr, eps=config.eps)


def clip_gradients(parameters: Iterable[nn.Parameter], max_norm: float, *, measure: bool = True) -> torch.Tensor | None:
    """Clip the global gradient norm when ``max_norm > 0``.

    Returns:
        The global norm before clipping, a 0-dim tensor on the gradients' device (read on
        the host only by whoever needs the number); None when there is nothing to clip
        and ``measure`` is off (no norm is computed then), zero without gradients.
    """
    params = [p for p in parameters if p.grad is not None]
    if not params:
        return torch.zeros(())
    if max_norm > 0:
        return torch.nn.utils.clip_grad_norm_(params, max_norm)
    if not measure:
        return None
    return torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(p.grad) for p in params]))
