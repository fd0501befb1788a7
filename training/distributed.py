"""torchrun helpers: process group set-up, rank queries and cross-rank reductions.

``panoptic-train`` runs unchanged as one process or under ``torchrun`` (single or
multi-node): torchrun sets ``RANK``, ``LOCAL_RANK`` and ``WORLD_SIZE`` (plus the
rendezvous address), which :func:`init_distributed` reads. NCCL is used on GPUs, gloo on
CPUs.
"""
from __future__ import annotations

import datetime
import os
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist

from panoptic_ros.config import ConfigError


@dataclass(frozen=True)
class DistInfo:
    """This process's place in the job.

    Attributes:
        rank: global rank (0 logs and writes checkpoints).
        world_size: number of processes.
        local_rank: rank on this node (picks the GPU).
        device: the device this process computes on.
    """

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def _env_int(name: str, default: int) -> int:
    raw = os.environ.get(name)
    if raw is None:
        return default
    try:
        return int(raw)
    except ValueError:
        raise ConfigError(f"environment variable {name}={raw!r} is not an integer") from None


def pick_device(requested: str, local_rank: int = 0) -> torch.device:
    """``auto`` -> CUDA (this node's ``local_rank``-th GPU) when available, else CPU.

    Raises:
        ConfigError: ``cuda`` asked for where there is none.
    """
    if requested == "cpu" or (requested == "auto" and not torch.cuda.is_available()):
        return torch.device("cpu")
    if not torch.cuda.is_available():
        raise ConfigError("runtime.device: 'cuda' asked for, but CUDA is not available on this machine")
    return torch.device("cuda", local_rank % torch.cuda.device_count())


def init_distributed(requested_device: str = "auto") -> DistInfo:
    """Join the torchrun job described by the environment (or run alone without one)."""
    world_size = _env_int("WORLD_SIZE", 1)
    rank, local_rank = _env_int("RANK", 0), _env_int("LOCAL_RANK", 0)
    device = pick_device(requested_device, local_rank)
    if device.type == "cuda":
        torch.cuda.set_device(device)
    if world_size > 1 and not dist.is_initialized():
        backend = "nccl" if device.type == "cuda" else "gloo"
        # Rank 0 writes checkpoints while the others wait in a barrier: allow more than the
        # default 10 minutes (NCCL) for slow disks.
        dist.init_process_group(backend=backend, device_id=device if device.type == "cuda" else None,
                                timeout=datetime.timedelta(minutes=60))
    return DistInfo(rank, world_size, local_rank, device)


def shutdown_distributed() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def barrier() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.barrier()


def rank_and_world() -> tuple[int, int]:
    """(this process's rank, number of processes) of the process group; (0, 1) alone."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def all_objects(value: Any) -> list:
    """Every rank's ``value``, in rank order, on every rank (``[value]`` when alone)."""
    if not (dist.is_available() and dist.is_initialized()):
        return [value]
    values = [None] * dist.get_world_size()
    dist.all_gather_object(values, value)
    return values


def buffers_from_rank0(model: torch.nn.Module) -> None:
    """Rank 0's buffers (BatchNorm statistics, CIAE's category memory) into every rank's
    ``model``: DDP would broadcast them at the next training forward anyway, but a model
    used outside DDP (validation) must not run with a rank's own updates."""
    if dist.is_available() and dist.is_initialized():
        for buffer in model.buffers():
            dist.broadcast(buffer.data, src=0)


def from_rank0(value: Any) -> Any:
    """``value`` as rank 0 has it, on every rank (one broadcast; ``value`` when alone)."""
    if not (dist.is_available() and dist.is_initialized()):
        return value
    box = [value]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def mean_across_ranks(values: torch.Tensor) -> torch.Tensor:
    """``values`` averaged over all processes (one all-reduce, on their device: no host read).

    Every rank gets the same numbers, so a decision taken on them (e.g. stopping on a
    non-finite loss) is taken by all ranks together.
    """
    if dist.is_available() and dist.is_initialized():
        values = values.clone()
        dist.all_reduce(values)
        values /= dist.get_world_size()
    return values
