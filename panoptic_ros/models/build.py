"""Model configs and construction for both architectures, keyed by ``kind``.

Each model module defines a frozen config dataclass whose first field is
``kind: Literal["<name>"]`` and an ``nn.Module`` built from it:

- ``panonet``: :class:`panoptic_ros.models.panonet.PanoNetConfig` / ``PanoNet``
- ``ciae``: :class:`panoptic_ros.models.ciae.CIAEConfig` / ``CIAE``

The modules are imported lazily so each model stands on its own.
"""
from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any, Mapping

from panoptic_ros.config import ConfigError, from_dict

if TYPE_CHECKING:  # torch only for the annotation: MODEL_KINDS is imported by light modules (launch, CLIs)
    from torch import nn

_REGISTRY = {
    "panonet": ("panoptic_ros.models.panonet", "PanoNetConfig", "PanoNet"),
    "ciae": ("panoptic_ros.models.ciae", "CIAEConfig", "CIAE"),
}
MODEL_KINDS = tuple(_REGISTRY)
"""Every model kind, in one place; other lists of kinds derive from it."""


def _lookup(kind: str) -> tuple[type, type]:
    if kind not in _REGISTRY:
        raise ConfigError(f"kind: unknown model {kind!r}; choose one of {', '.join(MODEL_KINDS)}")
    module_name, config_name, model_name = _REGISTRY[kind]
    module = importlib.import_module(module_name)
    return getattr(module, config_name), getattr(module, model_name)


def model_config_from_dict(data: Mapping[str, Any], where: str = "model") -> Any:
    """The model config described by ``data`` (its ``kind`` picks the class)."""
    if not isinstance(data, Mapping) or "kind" not in data:
        raise ConfigError(f"{where}.kind: missing required key (one of {', '.join(MODEL_KINDS)})")
    config_cls, _ = _lookup(data["kind"])
    return from_dict(config_cls, data, where)


def build_model(config: Any) -> nn.Module:
    """A freshly initialised model for ``config``."""
    _, model_cls = _lookup(config.kind)
    return model_cls(config)
