"""Model checkpoints: safetensors weights plus a JSON file that rebuilds the model.

``<stem>.safetensors`` holds every tensor of the model's ``state_dict`` (buffers such as
CIAE's memory embeddings included); ``<stem>.json`` holds the format tag, the model
config, the post-processing settings, free metadata (training step, scores, command),
and the weights' sha256. Both are written atomically (temporary file, fsync, rename), so
a killed process never leaves half a checkpoint. Loading never unpickles anything.
"""
from __future__ import annotations

import hashlib
import json
import os
import tempfile
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Mapping

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn

from panoptic_ros.config import ConfigError, to_dict
from panoptic_ros.jsonfile import read_json
from panoptic_ros.kinds import build_model, model_config_from_dict

FORMAT = "panoptic_ros.checkpoint/1"


class CheckpointError(ValueError):
    """A checkpoint that is missing, truncated, foreign or does not fit its model."""


@dataclass
class LoadedCheckpoint:
    """A model rebuilt from a checkpoint (in eval mode, float32)."""

    model: nn.Module
    model_config: Any
    postprocess: dict = field(default_factory=dict)
    metadata: dict = field(default_factory=dict)
    weights_path: Path = Path()


def checkpoint_paths(path: str | Path) -> tuple[Path, Path]:
    """(weights, meta) paths for a checkpoint named by its .safetensors, .json or stem."""
    path = Path(path)
    stem = path.with_suffix("") if path.suffix in (".safetensors", ".json") else path
    return stem.with_name(stem.name + ".safetensors"), stem.with_name(stem.name + ".json")


@contextmanager
def atomic_path(path: Path) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success it is fsynced and renamed onto
    ``path``, so readers see the old file or the whole new one, never a partial one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically (see :func:`atomic_path`)."""
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def save_checkpoint(
    path: str | Path,
    model: nn.Module,
    model_config: Any,
    *,
    postprocess: Mapping[str, Any] | None = None,
    metadata: Mapping[str, Any] | None = None,
    half: bool = False,
) -> tuple[Path, Path]:
    """Write ``model`` as a checkpoint; returns the (weights, meta) paths.

    Args:
        path: checkpoint name (``x``, ``x.safetensors`` or ``x.json``).
        model: the network (a DDP/compiled wrapper is unwrapped via ``.module``).
        model_config: its config dataclass (has ``kind``).
        postprocess: post-processing settings stored beside the weights.
        metadata: free JSON-serialisable information.
        half: store floating tensors as float16 (shipped weights).
    """
    weights_path, meta_path = checkpoint_paths(path)
    model = getattr(model, "module", model)
    tensors = {}
    for name, tensor in model.state_dict().items():
        tensor = tensor.detach().to("cpu")
        if half and tensor.is_floating_point():
            tensor = tensor.half()
        tensors[name] = tensor.contiguous()
    with atomic_path(weights_path) as tmp:
        save_file(tensors, str(tmp), metadata={"format": FORMAT})
    meta = {
        "format": FORMAT,
        "model": to_dict(model_config),
        "postprocess": to_dict(dict(postprocess or {})),
        "metadata": to_dict(dict(metadata or {})),
        "weights": weights_path.name,
        "weights_sha256": sha256_file(weights_path),
        "dtype": "float16" if half else "float32",
    }
    atomic_write_bytes(meta_path, (json.dumps(meta, indent=2, sort_keys=True) + "\n").encode())
    return weights_path, meta_path


def read_tagged_json(path: Path, fmt: str, what: str) -> dict:
    """A JSON object whose ``format`` is ``fmt``; errors name ``path`` and say ``what`` it
    should have been (e.g. ``checkpoint metadata``)."""
    data = read_json(path, CheckpointError, missing=f"{what} file not found",
                     malformed=f"not a panoptic_ros {what} file")
    if not isinstance(data, dict) or data.get("format") != fmt:
        raise CheckpointError(f"{path}: unknown {what} format (expected {fmt!r})")
    return data


def read_checkpoint_meta(path: str | Path) -> dict:
    """The JSON half of a checkpoint, checked for its format tag."""
    return read_tagged_json(checkpoint_paths(path)[1], FORMAT, "checkpoint metadata")


def read_weights(weights_path: Path, expected_sha256: str | None = None) -> dict[str, torch.Tensor]:
    """Tensors of a safetensors file; truncated, foreign or altered files raise CheckpointError."""
    if not weights_path.is_file():
        raise CheckpointError(f"{weights_path}: weights file not found")
    if expected_sha256 and sha256_file(weights_path) != expected_sha256:
        raise CheckpointError(f"{weights_path}: sha256 differs from its metadata (truncated or altered file)")
    try:
        return load_file(str(weights_path), device="cpu")
    except (SafetensorError, OSError, ValueError) as exc:
        raise CheckpointError(f"{weights_path}: not a readable safetensors file ({exc})") from None


def foreign_file_kind(path: Path) -> str:
    """What a file that is not part of a checkpoint looks like, for the error message."""
    try:
        with path.open("rb") as stream:
            head = stream.read(4)
    except OSError:
        return "not a checkpoint"
    # protocol-2+ pickles start with 0x80; torch.save writes a zip archive of pickles
    return "a pickle / torch.save file" if head[:1] == b"\x80" or head[:2] == b"PK" else "not a checkpoint"


def load_checkpoint(path: str | Path, device: str | torch.device = "cpu") -> LoadedCheckpoint:
    """Rebuild the model stored at ``path`` (float32, eval mode, on ``device``).

    Raises:
        CheckpointError: missing, truncated, foreign or mismatching files; the message
            names the file.
    """
    path = Path(path)
    if path.is_file() and path.suffix not in (".safetensors", ".json"):
        raise CheckpointError(f"{path}: {foreign_file_kind(path)}; weights must be a panoptic_ros checkpoint "
                              "(.safetensors + .json, named by either or their stem), never unpickled")
    weights_path, meta_path = checkpoint_paths(path)
    meta = read_checkpoint_meta(meta_path)
    try:
        model_config = model_config_from_dict(meta["model"])
    except (ConfigError, KeyError) as exc:
        raise CheckpointError(f"{meta_path}: model config is invalid: {exc}") from None
    tensors = read_weights(weights_path, meta.get("weights_sha256"))
    model = build_model(model_config)
    reference = model.state_dict()
    missing = sorted(set(reference) - set(tensors))
    unexpected = sorted(set(tensors) - set(reference))
    wrong_shape = sorted(k for k in set(reference) & set(tensors) if reference[k].shape != tensors[k].shape)
    if missing or unexpected or wrong_shape:
        raise CheckpointError(
            f"{weights_path}: weights do not fit the {model_config.kind} model in {meta_path.name} "
            f"(missing {missing[:5]}, unexpected {unexpected[:5]}, wrong shape {wrong_shape[:5]})")
    state = {k: v.to(reference[k].dtype) for k, v in tensors.items()}
    model.load_state_dict(state, strict=True)
    model.to(device).eval()
    return LoadedCheckpoint(model, model_config, dict(meta.get("postprocess", {})),
                            dict(meta.get("metadata", {})), weights_path)
