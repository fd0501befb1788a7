"""Initial weights of a training run (``init`` section of the config).

``init.checkpoint`` may be a panoptic_ros checkpoint (``x.safetensors`` + ``x.json``), a
bare safetensors state dict, or a PyTorch ``.pt``/``.pth``/``.bin`` state dict read with
``torch.load(weights_only=True)``: tensors and plain containers only, so a file that
tries to run code is refused, never executed. Tensors are copied where name and shape
match; the PanoNet stage modes (``init.mode``) map earlier stage weights onto the model
themselves (``training/panonet_stages.py``).
``init.backbone`` (ImageNet ResNets into a fresh model) is ``training/backbone_init.py``.
"""
from __future__ import annotations

import pickle
from pathlib import Path
from typing import Callable, Mapping, NamedTuple

import torch
from torch import nn

from panoptic_ros.checkpoint import CheckpointError, checkpoint_paths, read_checkpoint_meta, read_weights
from panoptic_ros.training.config import InitConfig


def read_init_tensors(path: Path) -> dict[str, torch.Tensor]:
    """The tensors of an initialisation file (see the module docstring)."""
    path = Path(path)
    if path.suffix in (".pt", ".pth", ".bin"):
        return _read_torch_state_dict(path)
    weights, meta = checkpoint_paths(path)
    if meta.is_file():
        return read_weights(weights, read_checkpoint_meta(meta).get("weights_sha256"))
    return read_weights(weights if weights.is_file() else path)


def _read_torch_state_dict(path: Path) -> dict[str, torch.Tensor]:
    if not path.is_file():
        raise CheckpointError(f"{path}: file not found")
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, OSError, ValueError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise CheckpointError(f"{path}: refused: not a plain tensor state dict ({first})") from None
    if isinstance(data, Mapping) and isinstance(data.get("state_dict", data.get("model")), Mapping):
        data = data.get("state_dict", data.get("model"))
    tensors = {k: v for k, v in data.items() if isinstance(v, torch.Tensor)} if isinstance(data, Mapping) else {}
    if not tensors:
        raise CheckpointError(f"{path}: holds no tensors keyed by name")
    return tensors


def load_matching(model: nn.Module, tensors: Mapping[str, torch.Tensor], source: str) -> list[str]:
    """Copy tensors whose name and shape match into ``model``; returns the copied names.

    Raises:
        CheckpointError: nothing matches (a file of another model).
    """
    own = model.state_dict()
    matched = [k for k, v in tensors.items() if k in own and own[k].shape == v.shape]
    if not matched:
        raise CheckpointError(f"{source}: no tensor matches the model by name and shape")
    with torch.no_grad():
        for name in matched:
            own[name].copy_(tensors[name].to(own[name].dtype))
    return matched


class InitResult(NamedTuple):
    """What :func:`initialise_model` did: ``note`` for the log, ``metadata`` for the run's
    metadata (the backbone key mapping; empty without ``init.backbone``)."""

    note: str
    metadata: dict


def initialise_model(model: nn.Module, init: InitConfig, log: Callable[[str], None] | None = print) -> InitResult:
    """Apply ``init`` to a freshly built model (in place).

    Args:
        log: where the backbone table goes (None: nowhere).
    Raises:
        CheckpointError: unreadable, foreign or non-fitting initial weights (named).
    """
    if init.backbone is not None:
        from panoptic_ros.training.backbone_init import load_backbone

        report = load_backbone(model, init.backbone, log=log)
        return InitResult(f"backbone: {len(report.mapping)} tensors from {init.backbone.path} "
                          f"({init.backbone.format})", {"init_backbone": report.metadata()})
    return InitResult(_apply_checkpoint(model, init), {})


def _apply_checkpoint(model: nn.Module, init: InitConfig) -> str:
    if init.checkpoint is None:
        return "random initialisation"
    if init.mode == "none":
        copied = load_matching(model, read_init_tensors(init.checkpoint), str(init.checkpoint))
        return f"{len(copied)}/{len(model.state_dict())} tensors from {init.checkpoint}"
    from panoptic_ros.training.panonet_stages import apply_init

    try:
        changed = apply_init(model, mode=init.mode, checkpoint=str(init.checkpoint))
    except ValueError as exc:
        raise CheckpointError(f"init ({init.mode}): {exc}") from None
    return f"{init.mode} from {init.checkpoint} ({len(changed)} tensors re-initialised or widened)"
