"""Resumable, distributed data order.

:class:`DistributedStepSampler` shuffles like ``torch.utils.data.DistributedSampler``
(``randperm`` seeded with ``seed + epoch``), but is a *batch* sampler that

- can start in the middle of an epoch (``start_step``), so a resumed run sees exactly the
  batches the interrupted one would have seen;
- shards each optimizer step's global batch over ``world_size * accumulate`` "virtual
  replicas" (replica ``m * world_size + rank`` for micro-batch ``m``), so N processes with
  one micro-batch each see the same samples per step as one process accumulating N
  micro-batches: DistributedDataParallel's gradient average equals gradient accumulation.

Augmentation randomness is derived per sample from ``(seed, epoch, index)`` by
``datasets.transforms.TransformedDataset``, so it does not depend on the loader workers or
on where a run was resumed either.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Iterator, Mapping

import torch
from torch.utils.data import Sampler


@dataclass(frozen=True)
class GlobalBatch:
    """Samples per optimizer step: ``batch_size`` per micro-batch x ``world_size``
    processes x ``accumulate`` micro-batches. Recorded in every training checkpoint: a
    resume on another number of processes must keep it (by changing ``accumulate``).

    Attributes:
        batch_size: samples per micro-batch and process (``data.batch_size``).
        world_size: number of processes.
        accumulate: micro-batches per optimizer step (``optimizer.accumulate``).
    """

    batch_size: int
    world_size: int
    accumulate: int

    def __post_init__(self) -> None:
        if min(self.batch_size, self.world_size, self.accumulate) < 1:
            raise ValueError(f"GlobalBatch: every factor must be >= 1, got {self}")

    @property
    def samples(self) -> int:
        return self.batch_size * self.world_size * self.accumulate

    def describe(self) -> str:
        """e.g. ``4 (batch 1 x 2 processes x accumulate 2)``."""
        plural = "es" if self.world_size > 1 else ""
        return (f"{self.samples} (batch {self.batch_size} x {self.world_size} process{plural} "
                f"x accumulate {self.accumulate})")

    def accumulate_for(self, world_size: int) -> int | None:
        """The ``accumulate`` that keeps this global batch on ``world_size`` processes with
        the same ``batch_size`` (None where none does)."""
        per_step = self.batch_size * world_size
        return self.samples // per_step if self.samples % per_step == 0 else None

    def to_dict(self) -> dict:
        return {**asdict(self), "samples": self.samples}

    @classmethod
    def from_dict(cls, data: Mapping) -> "GlobalBatch":
        return cls(int(data["batch_size"]), int(data["world_size"]), int(data["accumulate"]))


class DistributedStepSampler(Sampler[list[int]]):
    """Micro-batches of sample indices for one process.

    Args:
        dataset_size: number of samples.
        batch_size: samples per micro-batch (per process).
        world_size: number of processes.
        rank: this process.
        accumulate: micro-batches per optimizer step.
        seed: shuffle seed (the same on every rank).
        shuffle: shuffle each epoch (evaluation-style fixed order otherwise).
    Raises:
        ValueError: the dataset is smaller than one global batch.
    """

    def __init__(self, dataset_size: int, *, batch_size: int, world_size: int = 1, rank: int = 0,
                 accumulate: int = 1, seed: int = 0, shuffle: bool = True):
        if not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} is outside world size {world_size}")
        self.dataset_size, self.batch_size = dataset_size, batch_size
        self.world_size, self.rank, self.accumulate = world_size, rank, accumulate
        self.seed, self.shuffle = seed, shuffle
        self.replicas = world_size * accumulate
        self.steps_per_epoch = dataset_size // (self.replicas * batch_size)
        if self.steps_per_epoch == 0:
            raise ValueError(f"dataset of {dataset_size} samples is smaller than one global batch "
                             f"({world_size} processes x {accumulate} micro-batches x {batch_size})")
        self.epoch, self.start_step = 0, 0

    def set_position(self, epoch: int, start_step: int = 0) -> None:
        """Iterate ``epoch`` from its optimizer step ``start_step``."""
        if not 0 <= start_step <= self.steps_per_epoch:
            raise ValueError(f"start_step {start_step} outside [0, {self.steps_per_epoch}]")
        self.epoch, self.start_step = epoch, start_step

    def order(self, epoch: int) -> list[int]:
        """The epoch's permutation of sample indices (shared by all ranks)."""
        if not self.shuffle:
            return list(range(self.dataset_size))
        generator = torch.Generator().manual_seed(self.seed + epoch)
        return torch.randperm(self.dataset_size, generator=generator).tolist()

    def __iter__(self) -> Iterator[list[int]]:
        order = self.order(self.epoch)
        size = self.batch_size
        for step in range(self.start_step, self.steps_per_epoch):
            for micro in range(self.accumulate):
                shard = order[micro * self.world_size + self.rank::self.replicas]
                yield shard[step * size:(step + 1) * size]

    def __len__(self) -> int:
        return (self.steps_per_epoch - self.start_step) * self.accumulate

