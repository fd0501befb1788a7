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

from typing import Iterator

import torch
from torch.utils.data import Sampler


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

