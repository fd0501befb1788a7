"""Resumable training checkpoints, stored without pickle.

A training checkpoint is a folder ``<out>/checkpoints/step_<N>/`` holding

- ``model.safetensors`` + ``model.json``: the model, written by
  :func:`panoptic_ros.checkpoint.save_checkpoint` (CIAE's memory embeddings are buffers,
  so they are in the weights);
- ``state.safetensors``: every tensor of the training state (optimizer moments, torch RNG
  states) under flat names such as ``optimizer.state.3.momentum_buffer``;
- ``state.json``: everything else (step, epoch, position in the epoch's data order,
  optimizer hyper-parameters, python/numpy RNG states, AMP scaler, the training config,
  the global batch and number of processes) and the sha256 of every other file.

RNG states are stored per rank (each rank's python, numpy, torch CPU and own GPU
generator), and each rank restores its own; a resume on fewer processes drops the rest.

The folder is assembled under a hidden temporary name and renamed into place, so a killed
process never leaves a partial checkpoint, and resuming picks the newest complete one.
Loading reads safetensors and JSON only: nothing is ever unpickled.
"""
from __future__ import annotations

import dataclasses
import json
import os
import random
import re
import shutil
import sys
from contextlib import contextmanager
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import Any, Iterator, Mapping, NamedTuple, Sequence

import numpy as np
import torch
from torch import nn

from panoptic_ros.checkpoint import (CheckpointError, atomic_write_bytes, foreign_file_kind, read_tagged_json,
                                     read_weights, save_checkpoint, sha256_file)
from panoptic_ros.training.sampling import GlobalBatch

STATE_FORMAT = "panoptic_ros.train_state/1"
_STEP_DIR = re.compile(r"^step_(\d{8})$")


@dataclass(frozen=True)
class Progress:
    """Where training stands.

    Attributes:
        step: optimizer steps completed.
        epoch: current epoch (the data order's shuffle seed).
        batch_in_epoch: optimizer steps already taken in ``epoch`` (data order position).
        elapsed_s: wall-clock seconds spent training so far, over all sessions.
    """

    step: int = 0
    epoch: int = 0
    batch_in_epoch: int = 0
    elapsed_s: float = 0.0


# ---- flattening: nested state -> (tensors, JSON) ---------------------------------------

def _flatten(value: Any, key: str, tensors: dict[str, torch.Tensor]) -> Any:
    """JSON-ready copy of ``value``; tensors move to ``tensors`` and leave a reference."""
    if isinstance(value, torch.Tensor):
        tensors[key] = value.detach().to("cpu").contiguous()
        return {"__tensor__": key}
    if isinstance(value, Mapping):
        if not all(isinstance(k, (str, int)) for k in value):
            raise TypeError(f"{key}: only str or int keys can be stored")
        return {"__dict__": [[k, _flatten(v, f"{key}.{k}", tensors)] for k, v in value.items()]}
    if isinstance(value, tuple):
        return {"__tuple__": [_flatten(v, f"{key}.{i}", tensors) for i, v in enumerate(value)]}
    if isinstance(value, list):
        return [_flatten(v, f"{key}.{i}", tensors) for i, v in enumerate(value)]
    if isinstance(value, np.ndarray):
        return {"__ndarray__": value.tolist(), "dtype": str(value.dtype)}
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    raise TypeError(f"{key}: cannot store a {type(value).__name__} without pickle")


def _unflatten(value: Any, tensors: Mapping[str, torch.Tensor], where: str) -> Any:
    if isinstance(value, list):
        return [_unflatten(v, tensors, where) for v in value]
    if not isinstance(value, dict):
        return value
    if "__tensor__" in value:
        try:
            return tensors[value["__tensor__"]]
        except KeyError:
            raise CheckpointError(f"{where}: tensor {value['__tensor__']!r} is missing") from None
    if "__tuple__" in value:
        return tuple(_unflatten(v, tensors, where) for v in value["__tuple__"])
    if "__ndarray__" in value:
        return np.asarray(value["__ndarray__"], dtype=np.dtype(value["dtype"]))
    if "__dict__" in value:
        return {k: _unflatten(v, tensors, where) for k, v in value["__dict__"]}
    raise CheckpointError(f"{where}: unknown entry {sorted(value)[:3]}")


# ---- RNG ------------------------------------------------------------------------------

def capture_rng() -> dict:
    """RNG states of python, numpy, torch's CPU generator and, where CUDA is in use, this
    process's GPU (the current device: each rank stores its own, never its node's others)."""
    state = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state()
    return state


def restore_rng(state: Mapping[str, Any]) -> None:
    """Inverse of :func:`capture_rng` (values as restored by :func:`_unflatten`)."""
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    name, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((name, np.asarray(keys, dtype=np.uint32), pos, has_gauss, cached))
    torch.set_rng_state(state["torch"])
    cuda = state.get("cuda")
    if cuda is not None and torch.cuda.is_available():
        if isinstance(cuda, list):  # older checkpoints: rank 0's node, one state per GPU
            index = torch.cuda.current_device()
            cuda = cuda[index] if index < len(cuda) else None
        if cuda is not None:
            torch.cuda.set_rng_state(cuda)


def rng_of_rank(states: Sequence[Mapping[str, Any]], rank: int) -> Mapping[str, Any]:
    """The RNG states rank ``rank`` restores from the per-rank ``states`` of a checkpoint.

    A rank the checkpoint has no states for (a resume on more processes than were saved)
    takes rank 0's, as every rank of a fresh run starts from the same seed.
    """
    return states[rank] if rank < len(states) else states[0]


@contextmanager
def preserved_rng() -> Iterator[None]:
    """Run a block without changing the global RNG states (e.g. evaluation mid-training)."""
    saved = capture_rng()
    try:
        yield
    finally:
        restore_rng(saved)


# ---- save / load ------------------------------------------------------------------------

def save_training_checkpoint(
    out_dir: Path, *, model: nn.Module, model_config: Any, optimizer: torch.optim.Optimizer,
    progress: Progress, scaler: torch.amp.GradScaler | None = None, postprocess: Mapping | None = None,
    config: Mapping | None = None, metadata: Mapping | None = None, keep: int = 2,
    rng_states: Sequence[Mapping] | None = None, global_batch: GlobalBatch | None = None,
) -> Path:
    """Write ``<out_dir>/checkpoints/step_<N>/`` atomically; returns the folder.

    Args:
        out_dir: the run's output folder.
        model: network (DDP wrappers are unwrapped).
        model_config: its config dataclass.
        optimizer: optimizer whose state is stored.
        progress: step, epoch and data position after the last completed step.
        scaler: fp16 gradient scaler, if used.
        postprocess: post-processing settings stored with the weights.
        config: the full training config as plain data (checked on resume).
        metadata: free JSON data stored in ``model.json``.
        keep: number of newest checkpoints kept (older ones are deleted).
        rng_states: every rank's :func:`capture_rng`, in rank order (default: this
            process's only).
        global_batch: the batch each optimizer step takes, with the number of processes.
    """
    root = Path(out_dir) / "checkpoints"
    final = root / f"step_{progress.step:08d}"
    tmp = root / f".tmp-step_{progress.step:08d}-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    save_checkpoint(tmp / "model", model, model_config, postprocess=postprocess,
                    metadata={**(metadata or {}), "step": progress.step})
    tensors: dict[str, torch.Tensor] = {}
    body = {
        "progress": dataclasses.asdict(progress),
        "optimizer": _flatten(optimizer.state_dict(), "optimizer", tensors),
        "rng": _flatten(list(rng_states or [capture_rng()]), "rng", tensors),
        "global_batch": global_batch.to_dict() if global_batch is not None else None,
        "scaler": scaler.state_dict() if scaler is not None and scaler.is_enabled() else None,
        "config": config or {},
    }
    from safetensors.torch import save_file

    save_file(tensors, str(tmp / "state.safetensors"), metadata={"format": STATE_FORMAT})
    body.update(format=STATE_FORMAT, sha256={name: sha256_file(tmp / name)
                                             for name in ("model.safetensors", "model.json", "state.safetensors")})
    atomic_write_bytes(tmp / "state.json", (json.dumps(body, indent=1) + "\n").encode())
    _fsync_dir(tmp)
    shutil.rmtree(final, ignore_errors=True)
    os.rename(tmp, final)
    _fsync_dir(root)
    for old in list_checkpoints(out_dir)[:-keep] if keep > 0 else []:
        shutil.rmtree(old, ignore_errors=True)
    return final


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def list_checkpoints(out_dir: Path) -> list[Path]:
    """Complete checkpoint folders of a run, oldest first."""
    root = Path(out_dir) / "checkpoints"
    if not root.is_dir():
        return []
    return sorted(p for p in root.iterdir() if p.is_dir() and _STEP_DIR.match(p.name))


def remove_partial_checkpoints(out_dir: Path) -> None:
    """Delete temporary folders left by a process killed while writing a checkpoint."""
    root = Path(out_dir) / "checkpoints"
    if root.is_dir():
        for tmp in root.glob(".tmp-step_*"):
            shutil.rmtree(tmp, ignore_errors=True)


class ResumeMode(Enum):
    """How a run starts: afresh, from its own newest checkpoint, or from a given one."""

    FRESH = "fresh"
    LATEST = "latest"
    FROM_PATH = "from_path"


@dataclass(frozen=True)
class Resume:
    """Where training starts (``--resume``, ``--resume-from PATH`` or neither).

    Attributes:
        mode: see :class:`ResumeMode`; ``LATEST`` on a run without checkpoints starts
            it, so one command serves every torchrun restart.
        path: the checkpoint for ``FROM_PATH`` (a run folder or ``checkpoints/step_N``).
    """

    mode: ResumeMode = ResumeMode.FRESH
    path: Path | None = None

    def __post_init__(self) -> None:
        if (self.path is not None) != (self.mode is ResumeMode.FROM_PATH):
            raise ValueError(f"Resume: a path goes with {ResumeMode.FROM_PATH} only, got {self.mode} and {self.path}")

    @classmethod
    def from_flags(cls, *, latest: bool, path: Path | None) -> "Resume":
        """``panoptic-train``'s ``--resume`` (``latest``) and ``--resume-from PATH``."""
        if path is not None:
            return cls(ResumeMode.FROM_PATH, Path(path))
        return cls(ResumeMode.LATEST if latest else ResumeMode.FRESH)

    @property
    def continues(self) -> bool:
        """Whether the run continues an earlier one (its folder may then hold a run)."""
        return self.mode is not ResumeMode.FRESH

    def checkpoint(self, out_dir: Path) -> Path | None:
        """The checkpoint folder to load for a run in ``out_dir`` (None: start afresh).

        Raises:
            CheckpointError: the given checkpoint is unusable, or every one of the run is.
        """
        if self.mode is ResumeMode.FROM_PATH:
            return resolve_resume(self.path)
        if self.mode is ResumeMode.LATEST and list_checkpoints(out_dir):
            return resolve_resume(out_dir)
        return None


def resolve_resume(path: str | Path) -> Path:
    """The checkpoint folder meant by ``path``: a run folder (its newest intact checkpoint:
    a damaged newer one is skipped with a warning on stderr, never deleted), a checkpoint
    folder, or a file inside one."""
    path = Path(path)
    if path.is_dir() and (path / "checkpoints").is_dir():
        found = list_checkpoints(path)
        if not found:
            raise CheckpointError(f"{path}: the run has no complete checkpoint to resume from")
        for folder in reversed(found):
            try:
                read_training_state(folder)  # checks the sha256 of the model and state files
                return folder
            except CheckpointError as exc:
                print(f"panoptic-train: warning: skipping a damaged checkpoint: {exc}", file=sys.stderr, flush=True)
        raise CheckpointError(f"{path}: every checkpoint of the run is damaged (see the warnings above)")
    if path.is_file():
        if path.name != "state.json" and path.suffix != ".safetensors":
            _refuse_foreign(path)
        path = path.parent
    if not (path / "state.json").is_file():
        raise CheckpointError(f"{path}: not a training checkpoint folder (no state.json)")
    return path


def _refuse_foreign(path: Path) -> None:
    raise CheckpointError(f"{path}: {foreign_file_kind(path)}; resume takes a run folder or a checkpoints/step_N folder "
                          "(training state is never unpickled)")


def read_training_state(folder: Path) -> tuple[dict, dict[str, torch.Tensor]]:
    """The checked JSON body and tensors of a checkpoint folder."""
    body = read_tagged_json(folder / "state.json", STATE_FORMAT, "training state")
    for name, digest in body.get("sha256", {}).items():
        if not (folder / name).is_file() or sha256_file(folder / name) != digest:
            raise CheckpointError(f"{folder / name}: missing, truncated or altered (sha256 differs from state.json)")
    return body, read_weights(folder / "state.safetensors")


class Restored(NamedTuple):
    """What :func:`load_training_checkpoint` hands back besides the restored objects.

    Attributes:
        progress: where training continues.
        config: the training config the checkpoint was written with (plain data).
        global_batch: its global batch and process count (None: written before they
            were recorded).
    """

    progress: Progress
    config: dict
    global_batch: GlobalBatch | None


def load_training_checkpoint(folder: Path, *, model: nn.Module, optimizer: torch.optim.Optimizer,
                             scaler: torch.amp.GradScaler | None = None, rank: int = 0) -> Restored:
    """Restore model, optimizer, scaler and this rank's RNG states from ``folder``.

    Args:
        rank: this process's rank: it restores the RNG states that rank saved (see
            :func:`rng_of_rank`).
    Raises:
        CheckpointError: a missing, truncated, foreign or mismatching file (named).
    """
    from panoptic_ros.checkpoint import load_checkpoint

    body, tensors = read_training_state(folder)
    loaded = load_checkpoint(folder / "model")
    target = getattr(model, "module", model)
    try:
        target.load_state_dict(loaded.model.state_dict(), strict=True)
        optimizer.load_state_dict(_unflatten(body["optimizer"], tensors, str(folder)))
    except (RuntimeError, ValueError, KeyError) as exc:
        raise CheckpointError(f"{folder}: checkpoint does not fit this model/optimizer ({exc})") from None
    if scaler is not None and body.get("scaler"):
        scaler.load_state_dict(body["scaler"])
    rng = _unflatten(body["rng"], tensors, str(folder))
    restore_rng(rng_of_rank(rng if isinstance(rng, list) else [rng], rank))   # a dict: rank 0's only (older)
    p = body["progress"]
    progress = Progress(int(p["step"]), int(p["epoch"]), int(p["batch_in_epoch"]), float(p.get("elapsed_s", 0.0)))
    batch = body.get("global_batch")
    return Restored(progress, body.get("config", {}), GlobalBatch.from_dict(batch) if batch else None)
