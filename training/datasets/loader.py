"""Batching: the collate that builds training targets, and the DataLoader builder.

:class:`PanopticCollate` pads every sample of a batch to one size (the largest height and
width, rounded up to ``size_divisor``), then builds each image's targets from its *padded*
panoptic map (:mod:`panoptic_ros.training.targets`). Padding is VOID, so padded cells come
out as the ignore values by construction (semantic/category maps 255, instance maps 0,
segment maps -1, FCOS locations negative) and the FCOS location grid matches the padded
input the network sees. Training normally uses fixed-size crops (``RandomScaleCrop``)
whose size is a multiple of ``size_divisor``: then nothing is padded. Evaluation batches of
mixed sizes are padded; ``Batch.samples`` keeps the unpadded originals (ground truth for
the evaluator).

The collate runs inside the DataLoader workers, so target building is parallel too.

:func:`build_dataloader` always samples through a ``DistributedSampler`` (one replica when
``torch.distributed`` is not initialised), which gives one code path for seeded shuffling
and ``set_epoch``. :meth:`PanopticDataLoader.set_epoch` forwards the epoch to the sampler
and to the dataset (``TransformedDataset`` derives per-sample generators from it). Workers
are persistent (started once per loader), so they never see a later ``set_epoch``: for an
epoch-dependent dataset every index travels as ``(epoch, index)`` (:class:`EpochTagged`).
Images are collated as uint8; the training step converts them on the device.
With several replicas and ``drop_last=False`` the sampler repeats a few samples to give
every rank the same count: evaluation code should de-duplicate by ``image_id``.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass, field
from typing import Callable, Literal, Sequence

import cv2
import numpy as np
import torch
import torch.distributed as dist
from torch.utils.data import BatchSampler, DataLoader, Dataset, DistributedSampler, Sampler

from panoptic_ros.labels import get_label_space
from panoptic_ros.sample import Sample
from panoptic_ros.training.targets import INSTANCE_SLOTS, ciae_targets, instance_slots_of, panonet_targets
from panoptic_ros.types import VOID

TargetKind = Literal["panonet", "ciae"]
# Per-image variable-length targets: kept as lists, one tensor per image.
PER_IMAGE_KEYS = frozenset({"segment_category", "segment_is_thing", "segment_boxes"})
_TARGET_BUILDERS: dict[str, Callable] = {"panonet": panonet_targets, "ciae": ciae_targets}


@dataclass
class Batch:
    """A collated batch.

    Attributes:
        images: (B, 3, H, W) uint8 RGB, zero-padded (a quarter of float32's bytes to
            collate, pin and copy to the device; the training step converts it there,
            ``engine.float_images``, and the models normalise it).
        targets: stacked target tensors (B, ...) by name; the keys in ``PER_IMAGE_KEYS``
            are lists of B tensors; plain ints are batch facts known on the host
            (``instance_slots`` of PanoNet targets). Empty when the collate builds no targets.
        samples: the B original (unpadded) samples, e.g. ground truth for evaluation.

    A batch unpacks as ``images, targets = batch`` (what a training step consumes).
    """

    images: torch.Tensor
    targets: dict[str, torch.Tensor | list[torch.Tensor] | int] = field(default_factory=dict)
    samples: list[Sample] = field(default_factory=list)

    def _map(self, fn: Callable[[torch.Tensor], torch.Tensor]) -> "Batch":
        def apply(value):
            if isinstance(value, list):
                return [fn(t) for t in value]
            return fn(value) if isinstance(value, torch.Tensor) else value

        return Batch(fn(self.images), {k: apply(v) for k, v in self.targets.items()}, self.samples)

    def to(self, device: torch.device | str, non_blocking: bool = False) -> "Batch":
        """Images and targets moved to ``device`` (samples stay numpy)."""
        return self._map(lambda t: t.to(device, non_blocking=non_blocking))

    def pin_memory(self) -> "Batch":
        """Called by the DataLoader when ``pin_memory=True``."""
        return self._map(lambda t: t.pin_memory())

    def __iter__(self):
        return iter((self.images, self.targets))

    @property
    def batch_size(self) -> int:
        return self.images.shape[0]


class PanopticCollate:
    """Collate :class:`Sample` lists into a :class:`Batch`, building training targets.

    Args:
        targets: ``"panonet"``, ``"ciae"`` or None (images and samples only).
        label_space: ``"cityscapes"`` or ``"coco"``.
        size_divisor: padded height and width are multiples of this.
    """

    def __init__(self, *, targets: TargetKind | None, label_space: str, size_divisor: int = 32):
        if targets is not None and targets not in _TARGET_BUILDERS:
            raise ValueError(f"targets must be one of {sorted(_TARGET_BUILDERS)} or None, got {targets!r}")
        if size_divisor < 1:
            raise ValueError(f"size_divisor must be >= 1, got {size_divisor}")
        get_label_space(label_space)    # fail early on an unknown name
        self.targets, self.label_space, self.size_divisor = targets, label_space, size_divisor

    def padded_size(self, samples: Sequence[Sample]) -> tuple[int, int]:
        """(H, W) of the batch: largest sizes rounded up to ``size_divisor``."""
        d = self.size_divisor
        height = max(s.image.shape[0] for s in samples)
        width = max(s.image.shape[1] for s in samples)
        return -(-height // d) * d, -(-width // d) * d

    def __call__(self, samples: Sequence[Sample]) -> Batch:
        if not samples:
            raise ValueError("cannot collate an empty batch")
        height, width = self.padded_size(samples)
        padding = any(s.image.shape[:2] != (height, width) for s in samples)
        images = (torch.zeros if padding else torch.empty)((len(samples), 3, height, width), dtype=torch.uint8)
        per_image = []
        for i, sample in enumerate(samples):
            h, w = sample.image.shape[:2]
            # HWC -> CHW: OpenCV splits the planes (0.2 ms at 256x512), then one contiguous
            # copy each; a strided permuted copy_ took 1.4 ms.
            for channel, plane in enumerate(cv2.split(sample.image)):
                images[i, channel, :h, :w].copy_(torch.from_numpy(plane))
            if self.targets is not None:
                per_image.append(self._targets(sample, height, width))
        targets = _stack(per_image)
        if self.targets == "panonet":
            targets[INSTANCE_SLOTS] = instance_slots_of(per_image)
        return Batch(images, targets, list(samples))

    def _targets(self, sample: Sample, height: int, width: int) -> dict[str, np.ndarray]:
        target = sample.target
        if target.panoptic.shape != (height, width):
            # VOID padding leaves every segment's area and box unchanged.
            padded = np.full((height, width), VOID, np.int32)
            padded[: target.height, : target.width] = target.panoptic
            target = type(target)(padded, target.segments)
        return _TARGET_BUILDERS[self.targets](target, get_label_space(self.label_space))


def _stack(per_image: list[dict[str, np.ndarray]]) -> dict[str, torch.Tensor | list[torch.Tensor]]:
    """Stack same-shaped targets along a new batch dim; per-image keys become lists."""
    if not per_image:
        return {}
    out: dict[str, torch.Tensor | list[torch.Tensor]] = {}
    for key in per_image[0]:
        arrays = [t[key] for t in per_image]
        if key in PER_IMAGE_KEYS:
            out[key] = [torch.from_numpy(a) for a in arrays]
        else:
            out[key] = torch.from_numpy(np.stack(arrays))
    return out


class EpochTagged(Sampler[list[tuple[int, int]]]):
    """``batches``' index lists as ``(epoch, index)`` pairs, the epoch read from
    ``epochs.epoch`` as each pass starts.

    Persistent DataLoader workers keep the dataset copy they were started with, so a
    ``set_epoch`` in the main process never reaches them: the epoch (the augmentation
    seed of ``TransformedDataset``) travels with every index instead.
    """

    def __init__(self, batches: Sampler[list[int]], epochs: object):
        self.batches, self.epochs = batches, epochs

    def __iter__(self):
        epoch = int(self.epochs.epoch)
        for batch in self.batches:
            yield [(epoch, index) for index in batch]

    def __len__(self) -> int:
        return len(self.batches)


class PanopticDataLoader(DataLoader):
    """A DataLoader with :meth:`set_epoch` (sampler reshuffle + per-sample augmentation).

    Args:
        epochs: the sampler that holds the epoch (reshuffled by :meth:`set_epoch`).
    """

    def __init__(self, dataset: Dataset, *, epochs: Sampler, **kwargs):
        super().__init__(dataset, **kwargs)
        self.epochs = epochs

    def set_epoch(self, epoch: int) -> None:
        if hasattr(self.epochs, "set_epoch"):
            self.epochs.set_epoch(epoch)
        if hasattr(self.dataset, "set_epoch"):
            self.dataset.set_epoch(epoch)


_cv2_threads: list[int] = []


def _cv2_before_fork() -> None:
    import cv2

    _cv2_threads.append(cv2.getNumThreads())
    cv2.setNumThreads(1)


def _cv2_after_fork_in_parent() -> None:
    import cv2

    cv2.setNumThreads(_cv2_threads.pop() if _cv2_threads else cv2.getNumThreads())


def _cv2_after_fork_in_child() -> None:
    import cv2

    _cv2_threads.clear()
    cv2.setNumThreads(1)      # one thread per worker: the workers are the parallelism


@functools.cache
def make_cv2_fork_safe() -> None:
    """One OpenCV thread per forked worker, without the fork hang (installed once per process).

    Workers should run OpenCV single-threaded (the workers are the parallelism, as torch
    does for its own threads in DataLoader workers). But a forked child that resizes an
    OpenCV thread pool its parent had started (``cv2.setNumThreads`` in the child) hangs
    most of the time: 6 of 8 runs here with opencv-python-headless 5.0. So the pool is cut
    to one thread in the parent just before each fork, restored in the parent right after,
    and children start with one thread. Workers otherwise get distinct torch/numpy/random
    seeds from the loader's generator.
    """
    import os

    os.register_at_fork(before=_cv2_before_fork, after_in_parent=_cv2_after_fork_in_parent,
                        after_in_child=_cv2_after_fork_in_child)


def build_dataloader(
    dataset: Dataset,
    *,
    batch_size: int,
    num_workers: int = 0,
    shuffle: bool = False,
    seed: int = 0,
    distributed: bool | None = None,
    drop_last: bool = False,
    collate: Callable[[list[Sample]], Batch] | None = None,
    pin_memory: bool = False,
    batch_sampler: Sampler[list[int]] | None = None,
) -> PanopticDataLoader:
    """A seeded DataLoader over ``dataset``, split across ranks when distributed.

    Args:
        dataset: map-style dataset of :class:`Sample`.
        batch_size: samples per batch (per rank).
        num_workers: worker processes (0 = load in the main process).
        shuffle: reshuffle every epoch (seeded by ``seed`` and the epoch).
        seed: run seed for shuffling and worker seeds.
        distributed: split across ``torch.distributed`` ranks; None = whenever it is
            initialised; True requires it to be initialised.
        drop_last: drop the last incomplete batch (and, distributed, the samples that do
            not divide evenly across ranks instead of repeating some).
        collate: batch builder; default ``PanopticCollate(targets=None, label_space="cityscapes")``.
        pin_memory: pin batches for faster host-to-GPU copies.
        batch_sampler: a sampler of index lists (e.g. a resumable step sampler) used
            instead of the built-in ``DistributedSampler``; it then owns batching,
            shuffling and the split across ranks (``batch_size``, ``shuffle``,
            ``distributed`` and ``drop_last`` are not used) and its caller positions it.
    """
    if batch_size < 1 or num_workers < 0:
        raise ValueError(f"need batch_size >= 1 and num_workers >= 0, got {batch_size}, {num_workers}")
    if num_workers:
        make_cv2_fork_safe()
    if batch_sampler is None:
        sampler = _distributed_sampler(dataset, distributed, shuffle=shuffle, seed=seed, drop_last=drop_last)
        batch_sampler, epochs = BatchSampler(sampler, batch_size, drop_last), sampler
    else:
        epochs = batch_sampler
    if hasattr(dataset, "set_epoch"):   # epoch-dependent items: the epoch goes with each index
        batch_sampler = EpochTagged(batch_sampler, epochs)
    # Persistent workers: forked once per loader, not once per pass (every pause for a
    # checkpoint or an evaluation starts a pass).
    return PanopticDataLoader(dataset, epochs=epochs, batch_sampler=batch_sampler, num_workers=num_workers,
                              pin_memory=pin_memory, persistent_workers=num_workers > 0,
                              collate_fn=collate or PanopticCollate(targets=None, label_space="cityscapes"),
                              generator=torch.Generator().manual_seed(seed))


def _distributed_sampler(dataset: Dataset, distributed: bool | None, *, shuffle: bool, seed: int,
                         drop_last: bool) -> DistributedSampler:
    """A ``DistributedSampler`` over the ranks of ``torch.distributed`` (one replica when
    it is not initialised or ``distributed`` is False)."""
    initialised = dist.is_available() and dist.is_initialized()
    if distributed and not initialised:
        raise RuntimeError("build_dataloader(distributed=True) needs torch.distributed to be initialised")
    use_dist = initialised if distributed is None else bool(distributed)
    return DistributedSampler(
        dataset, num_replicas=dist.get_world_size() if use_dist else 1, rank=dist.get_rank() if use_dist else 0,
        shuffle=shuffle, seed=seed, drop_last=drop_last)
