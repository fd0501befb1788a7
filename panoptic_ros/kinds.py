"""One :class:`ModelKind` record per model: what inference needs to know about it.

A record binds a kind's name (``panonet``, ``ciae``) to its config and model classes, its
post-processing config and function, and the eval-mode output holding its pixel
embedding. Everything model-specific outside the model's own modules is looked up here
(the predictor, checkpoints, the node's parameters, training through
``training/kinds.py``, which adds the losses). Adding a model means one record here, one
in ``training/kinds.py``, and the model's modules.

Importing this module imports torch and every model; modules that must stay light (the
launch file) use the names of the shipped kinds in :mod:`panoptic_ros.resources`.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Mapping

from torch import nn

from panoptic_ros.config import ConfigError, from_dict
from panoptic_ros.models.ciae import CIAE, CIAEConfig
from panoptic_ros.models.panonet import PanoNet, PanoNetConfig
from panoptic_ros.postprocess.batch import postprocess_batch
from panoptic_ros.postprocess.ciae import CIAEPostprocessConfig, postprocess_ciae
from panoptic_ros.postprocess.panonet import PanoNetPostprocessConfig, postprocess_panonet
from panoptic_ros.types import PanopticResult

Postprocess = Callable[..., PanopticResult]
"""``postprocess(outputs, *, config, label_space) -> PanopticResult`` of image 0 of a batch
of eval-mode outputs; :meth:`ModelKind.postprocess_batch` gives every image's."""


@dataclass(frozen=True)
class ModelKind:
    """Everything inference needs to know about one model kind.

    Attributes:
        name: the kind, as written in configs (``model.kind``) and checkpoints.
        config: frozen config dataclass whose ``kind`` field is ``Literal[name]``.
        model: the ``nn.Module`` built as ``model(config)``; its ``OUTPUT_NAMES`` are
            the eval-mode outputs.
        postprocess_config: frozen dataclass of the post-processing settings.
        postprocess: the post-processing function (see :data:`Postprocess`).
        embedding_output: eval-mode output holding the (B, E, h, w) pixel embedding
            (the embedding PCA image of training-time evaluation).
    """

    name: str
    config: type
    model: type[nn.Module]
    postprocess_config: type
    postprocess: Postprocess
    embedding_output: str

    def postprocess_batch(self, outputs: Mapping[str, Any], *, config: Any, label_space: Any) -> list[PanopticResult]:
        """B results from eval-mode outputs with batch B (see :mod:`panoptic_ros.postprocess.batch`)."""
        return postprocess_batch(self.postprocess, outputs, config=config, label_space=label_space)


KINDS: Mapping[str, ModelKind] = {kind.name: kind for kind in (
    ModelKind("panonet", PanoNetConfig, PanoNet, PanoNetPostprocessConfig, postprocess_panonet, "embedding"),
    ModelKind("ciae", CIAEConfig, CIAE, CIAEPostprocessConfig, postprocess_ciae, "embeddings"),
)}
MODEL_KINDS = tuple(KINDS)
"""The names of every model kind, in table order."""


def model_kind(name: str, where: str = "model.kind") -> ModelKind:
    """The record of kind ``name``.

    Raises:
        ConfigError: no such kind (the message names ``where`` and the choices).
    """
    if name not in KINDS:
        raise ConfigError(f"{where}: unknown model {name!r}; choose one of {', '.join(MODEL_KINDS)}")
    return KINDS[name]


def model_config_from_dict(data: Mapping[str, Any], where: str = "model") -> Any:
    """The model config described by ``data`` (its ``kind`` picks the class)."""
    if not isinstance(data, Mapping) or "kind" not in data:
        raise ConfigError(f"{where}.kind: missing required key (one of {', '.join(MODEL_KINDS)})")
    return from_dict(model_kind(data["kind"], f"{where}.kind").config, data, where)


def build_model(config: Any) -> nn.Module:
    """A freshly initialised model for ``config`` (a config of one of the kinds)."""
    return model_kind(config.kind).model(config)
