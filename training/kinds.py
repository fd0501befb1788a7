"""One :class:`TrainingKind` record per model: its inference record plus its losses.

The engine, the CLIs and the configs are model-agnostic; :data:`TRAINING_KINDS` binds a
model kind to the :class:`~panoptic_ros.kinds.ModelKind` record (config, model,
post-processing, embedding output) and to its loss config and loss function. Every loss
function has the signature of :data:`Losses`.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Mapping

import torch

from panoptic_ros.config import ConfigError, from_dict
from panoptic_ros.kinds import KINDS, ModelKind
from panoptic_ros.training.losses.ciae import CIAELossConfig, ciae_losses
from panoptic_ros.training.losses.panonet import PanoNetLossConfig, panonet_losses

Losses = Callable[..., dict[str, torch.Tensor]]
"""``losses(outputs, targets, *, config, progress) -> {term: weighted scalar loss}``:
train-mode outputs, collated targets, the kind's loss config and ``step / total_steps``."""
LossFn = Callable[[Any, Any, float], Mapping[str, torch.Tensor]]
"""``loss_fn(outputs, targets, progress)``: a :data:`Losses` bound to its config."""


@dataclass(frozen=True)
class TrainingKind:
    """What training needs to know about one model kind.

    Attributes:
        model: the kind's inference record (config, model, post-processing).
        loss_config: the loss config dataclass.
        losses: the loss function (see :data:`Losses`).
    """

    model: ModelKind
    loss_config: type
    losses: Losses

    @property
    def name(self) -> str:
        return self.model.name

    def loss_fn(self, config: Any) -> LossFn:
        """``fn(outputs, targets, progress)`` computing this kind's weighted loss terms."""
        losses = self.losses
        return lambda outputs, targets, progress: losses(outputs, targets, config=config, progress=progress)


TRAINING_KINDS: Mapping[str, TrainingKind] = {kind.name: kind for kind in (
    TrainingKind(KINDS["panonet"], PanoNetLossConfig, panonet_losses),
    TrainingKind(KINDS["ciae"], CIAELossConfig, ciae_losses),
)}


def training_kind(name: str) -> TrainingKind:
    """The record of kind ``name``.

    Raises:
        ConfigError: no such kind (names ``model.kind`` and the choices).
    """
    if name not in TRAINING_KINDS:
        raise ConfigError(f"model.kind: unknown model {name!r}; choose one of {', '.join(TRAINING_KINDS)}")
    return TRAINING_KINDS[name]


def loss_config_from_dict(kind: str, data: Mapping[str, Any]) -> Any:
    return from_dict(training_kind(kind).loss_config, data, "loss")


def postprocess_config_from_dict(kind: str, data: Mapping[str, Any], where: str = "postprocess") -> Any:
    return from_dict(training_kind(kind).model.postprocess_config, data, where)
