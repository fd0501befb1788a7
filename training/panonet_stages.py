"""PanoNet's two-stage training initialisation (paper, Sec. III-C).

Stage 1 trains the instance branch *without* coordinate channels, starting from a
trained semantic ICNet: every instance-branch layer copies its semantic counterpart
except the prediction layers (the three 1x1 classifiers: final, 1/8 and 1/16
guidance), which are re-initialised because they predict embeddings, not classes.

Stage 2 adds the two coordinate input channels: the stage-1 weights are loaded and the
input convolutions (``trunk.sub1`` and ``trunk.stem`` first convs) get two extra input
filters set to zero, so at the start the network computes exactly the stage-1
function; training then learns how much position to mix in.

The training engine calls :func:`apply_init` from its config::

    init:
      mode: semantic_to_instance   # or add_coords
      checkpoint: runs/semantic/last   # a panoptic_ros checkpoint
"""
from __future__ import annotations

from typing import Literal, Mapping

import torch
from torch import Tensor, nn

from panoptic_ros.checkpoint import read_checkpoint_meta, read_weights, checkpoint_paths
from panoptic_ros.models.icnet import init_weights
from panoptic_ros.models.panonet import PanoNet

PREDICTION_LAYERS = ("head.classifier.", "head.cff_sub24.classifier.", "head.cff_sub124.classifier.")
"""ICNet prediction layers (relative to an ICNet), re-initialised for the instance task."""

InitMode = Literal["semantic_to_instance", "add_coords"]


def _as_icnet_key(key: str, share_weights: bool) -> tuple[str, str]:
    """PanoNet state key -> (key inside one ICNet, 'semantic' | 'instance' | 'shared')."""
    if share_weights:
        for prefix, role in (("trunk.", "shared"), ("semantic_head.", "semantic"), ("instance_head.", "instance")):
            if key.startswith(prefix):
                return ("trunk." if role == "shared" else "head.") + key[len(prefix):], role
    else:
        for role in ("semantic", "instance"):
            if key.startswith(role + "."):
                return key[len(role) + 1:], role
    raise KeyError(f"unexpected PanoNet state key {key!r}")


def semantic_icnet_state(source: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """The semantic ICNet's tensors (keys ``trunk.*``, ``head.*``) from a PanoNet state
    dict (either layout) or a bare ICNet state dict.

    Raises:
        ValueError: none of the three layouts matches.
    """
    if any(k.startswith("semantic.") for k in source):
        return {k[len("semantic."):]: v for k, v in source.items() if k.startswith("semantic.")}
    if any(k.startswith("semantic_head.") for k in source):
        state = {k: v for k, v in source.items() if k.startswith("trunk.")}
        state.update({"head." + k[len("semantic_head."):]: v for k, v in source.items()
                      if k.startswith("semantic_head.")})
        return state
    if any(k.startswith("trunk.") for k in source) and any(k.startswith("head.") for k in source):
        return dict(source)
    raise ValueError("source weights hold no semantic ICNet (expected keys semantic.*, "
                     "trunk.* + semantic_head.*, or trunk.* + head.*)")


def fit_tensor(source: Tensor, target: Tensor, key: str) -> tuple[Tensor, bool]:
    """``source`` shaped like ``target``; the only allowed difference is two more input
    channels of a conv weight (the coordinate channels), filled with zeros. Returns
    (tensor, widened); raises ValueError naming ``key`` otherwise."""
    if source.shape == target.shape:
        return source.to(target.dtype), False
    widened = (source.dim() == 4 and target.dim() == 4 and target.shape[1] - source.shape[1] == 2
               and source.shape[0] == target.shape[0] and source.shape[2:] == target.shape[2:])
    if not widened:
        raise ValueError(f"{key}: source shape {tuple(source.shape)} does not fit {tuple(target.shape)}")
    out = torch.zeros_like(target)
    out[:, : source.shape[1]] = source.to(target.dtype)
    return out, True


def init_instance_from_semantic(model: PanoNet, source_state_dict: Mapping[str, Tensor]) -> list[str]:
    """Stage 1: copy a trained semantic ICNet into both branches of ``model``.

    The semantic branch gets every tensor; the instance branch gets every tensor but the
    prediction layers, which are re-initialised. If ``model`` uses coordinates, its
    input convs get zero filters for them (as in :func:`add_coordinate_channels`).

    Args:
        model: a PanoNet (either layout).
        source_state_dict: semantic weights (see :func:`semantic_icnet_state`).
    Returns:
        The re-initialised state keys of ``model``.
    Raises:
        ValueError: the source does not fit the model.
    """
    semantic = semantic_icnet_state(source_state_dict)
    share = model.config.share_weights
    state, reinit = {}, []
    for key, target in model.state_dict().items():
        icnet_key, role = _as_icnet_key(key, share)
        if role == "instance" and icnet_key.startswith(PREDICTION_LAYERS):
            reinit.append(key)
            continue
        if icnet_key not in semantic:
            raise ValueError(f"{icnet_key}: missing from the semantic source weights (needed for {key})")
        state[key] = fit_tensor(semantic[icnet_key], target, icnet_key)[0]
    model.load_state_dict(state, strict=False)
    head = model.instance_head if share else model.instance.head
    for layer in (head.classifier, head.cff_sub24.classifier, head.cff_sub124.classifier):
        init_weights(layer)
    return reinit


def add_coordinate_channels(stage1_state_dict: Mapping[str, Tensor], model_with_coords: PanoNet) -> list[str]:
    """Stage 2: load stage-1 weights into a coordinate-using PanoNet.

    Every tensor is copied; input convs get two zero input filters for the x/y
    channels, so ``model_with_coords`` starts out computing the stage-1 outputs.

    Args:
        stage1_state_dict: state dict of a PanoNet with ``use_coords=False`` and
            otherwise the same config.
        model_with_coords: PanoNet with ``use_coords=True``; modified in place.
    Returns:
        The widened state keys.
    Raises:
        ValueError: the model does not use coordinates, or keys/shapes do not fit.
    """
    if not model_with_coords.config.use_coords:
        raise ValueError("add_coordinate_channels: the target model has use_coords=False")
    target_state = model_with_coords.state_dict()
    missing = sorted(set(target_state) - set(stage1_state_dict))
    unexpected = sorted(set(stage1_state_dict) - set(target_state))
    if missing or unexpected:
        raise ValueError(f"stage-1 weights do not match the model (missing {missing[:5]}, "
                         f"unexpected {unexpected[:5]})")
    state, widened = {}, []
    for key, target in target_state.items():
        state[key], grew = fit_tensor(stage1_state_dict[key], target, key)
        if grew:
            widened.append(key)
    model_with_coords.load_state_dict(state, strict=True)
    return widened


def apply_init(model: nn.Module, *, mode: InitMode, checkpoint: str) -> list[str]:
    """Initialise ``model`` from a checkpoint for one training stage (engine entry point).

    Args:
        model: the PanoNet being trained (or a DDP wrapper of it).
        mode: ``semantic_to_instance`` (stage 1) or ``add_coords`` (stage 2).
        checkpoint: a panoptic_ros checkpoint (stem, .json or .safetensors path).
    Returns:
        The re-initialised (stage 1) or widened (stage 2) state keys, for logging.
    Raises:
        ValueError: unknown mode, or the model is not a PanoNet.
        panoptic_ros.checkpoint.CheckpointError: unreadable checkpoint (names the file).
    """
    model = getattr(model, "module", model)  # a DDP wrapper holds the network in .module
    if not isinstance(model, PanoNet):
        raise ValueError(f"init.mode {mode!r} needs a PanoNet, got {type(model).__name__}")
    weights_path, meta_path = checkpoint_paths(checkpoint)
    meta = read_checkpoint_meta(meta_path)
    tensors = {k: v.float() if v.is_floating_point() else v
               for k, v in read_weights(weights_path, meta.get("weights_sha256")).items()}
    try:
        if mode == "semantic_to_instance":
            return init_instance_from_semantic(model, tensors)
        if mode == "add_coords":
            return add_coordinate_channels(tensors, model)
    except ValueError as exc:
        raise ValueError(f"{weights_path}: {exc}") from None
    raise ValueError(f"init.mode: unknown mode {mode!r} (semantic_to_instance or add_coords)")
