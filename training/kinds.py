"""What the engine needs to know per model kind: its loss and post-processing config.

The engine, the CLIs and the configs are model-agnostic; this table binds a ``kind``
(``panonet``, ``ciae``) to its loss config and entry point (the post-processing comes from
the predictor's table, ``inference.predictor.postprocess_api``). Modules are imported
lazily, as in ``models/build.py``.
"""
from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any, Callable, Mapping

from panoptic_ros.config import ConfigError, from_dict
from panoptic_ros.models.build import MODEL_KINDS

_LOSSES = {
    "panonet": ("panoptic_ros.training.losses.panonet", "PanoNetLossConfig", "panonet_losses"),
    "ciae": ("panoptic_ros.training.losses.ciae", "CIAELossConfig", "ciae_losses"),
}
# eval-mode output holding the pixel embedding (for the embedding PCA image)
_EMBEDDING_OUTPUT = {"panonet": "embedding", "ciae": "embeddings"}


@dataclass(frozen=True)
class KindSpec:
    """Loss and post-processing of one model kind.

    Attributes:
        kind: the model kind.
        loss_config: the loss config dataclass.
        loss_entry: ``<kind>_losses(outputs, targets, *, config[, progress])``.
        postprocess_config: the post-processing config dataclass.
        embedding_output: eval-mode output name of the (B, E, h, w) pixel embedding.
    """

    kind: str
    loss_config: type
    loss_entry: Callable
    postprocess_config: type
    embedding_output: str

    def loss_fn(self, config: Any) -> Callable[[Any, Any, float], Mapping]:
        """``fn(outputs, targets, progress)`` computing this kind's weighted loss terms.

        Only CIAE's losses depend on training progress (its memory momentum).
        """
        entry = self.loss_entry
        if self.kind == "ciae":
            return lambda outputs, targets, progress: entry(outputs, targets, config=config, progress=progress)
        return lambda outputs, targets, progress: entry(outputs, targets, config=config)


def _attr(table: dict, kind: str, index: int) -> Any:
    module_name = table[kind][0]
    return getattr(importlib.import_module(module_name), table[kind][index])


def kind_spec(kind: str) -> KindSpec:
    """The :class:`KindSpec` of ``kind``."""
    if kind not in MODEL_KINDS:
        raise ConfigError(f"model.kind: unknown model {kind!r}; choose one of {', '.join(MODEL_KINDS)}")
    from panoptic_ros.inference.predictor import postprocess_api

    return KindSpec(kind, _attr(_LOSSES, kind, 1), _attr(_LOSSES, kind, 2), postprocess_api(kind)[0],
                    _EMBEDDING_OUTPUT[kind])


def loss_config_from_dict(kind: str, data: Mapping[str, Any]) -> Any:
    return from_dict(kind_spec(kind).loss_config, data, "loss")


def postprocess_config_from_dict(kind: str, data: Mapping[str, Any], where: str = "postprocess") -> Any:
    return from_dict(kind_spec(kind).postprocess_config, data, where)
