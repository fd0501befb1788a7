"""Datasets and loaders as the training config describes them.

SynthStreet scenes are drawn on the fly (about a second per 512x1024 scene on one CPU
core, far more than a small model's training step), so a training run can keep them in a
disk cache (``data.cache_dir``): the first epoch draws and stores each scene, later epochs
read it back. A scene is three raw ``.npy`` files: the (H, W, 3) uint8 RGB image, the
(H, W) uint16 panoptic ids (Cityscapes ids stay below 34000) and the segment table, so a
read is a copy (about 1 ms at 512x1024) where the earlier PNG pair took 20+ ms to decode
and to re-measure every segment. The cache key is the dataset's identity (cache format,
generator source hash, seed, size); a scene file is written atomically, and the image last,
so parallel loader workers and killed runs never leave half a scene.
"""
from __future__ import annotations

import io
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from torch.utils.data import Dataset

from panoptic_ros.checkpoint import atomic_write_bytes
from panoptic_ros.labels import LabelSpace, get_label_space
from panoptic_ros.sample import Sample
from panoptic_ros.training.config import DataConfig, TrainConfig
from panoptic_ros.training.datasets.loader import PanopticCollate, PanopticDataLoader, build_dataloader
from panoptic_ros.training.datasets.transforms import TransformedDataset, standard_train_transform
from panoptic_ros.training.distributed import DistInfo
from panoptic_ros.training.sampling import DistributedStepSampler
from panoptic_ros.types import LABEL_DIVISOR, PanopticResult, Segment

Split = Literal["train", "val"]


CACHE_FORMAT = "npy1"
"""Layout of a scene in the cache (part of its folder name, so a new layout never reads an
older one's files); the PNG layout before it had no tag."""
_SEGMENT_COLUMNS = 6            # id, area, x, y, w, h


class SceneCache(Dataset):
    """``base[index]`` stored in ``folder`` on first use and read back afterwards.

    Args:
        base: a dataset of :class:`Sample` whose items are pure functions of the index.
        folder: cache folder of this dataset (one per seed and size).
        label_space: categories of the stored panoptic ids.
    """

    def __init__(self, base: Dataset, folder: Path, label_space: LabelSpace):
        self.base, self.folder, self.label_space = base, Path(folder), label_space

    def __len__(self) -> int:
        return len(self.base)

    def _paths(self, index: int) -> dict[str, Path]:
        return {part: self.folder / f"{index:06d}_{part}.npy" for part in ("segments", "panoptic", "image")}

    def __getitem__(self, index: int) -> Sample:
        paths = self._paths(index)
        if paths["image"].is_file():
            sample = self._read(index, paths)
            if sample is not None:
                return sample
        sample = self.base[index]
        self._write(sample, paths)
        return sample

    def _read(self, index: int, paths: dict[str, Path]) -> Sample | None:
        """The stored scene, or None where a file is missing or unreadable (drawn again)."""
        try:
            arrays = {part: np.load(path, allow_pickle=False) for part, path in paths.items()}
            segments = tuple(
                Segment(i, i // LABEL_DIVISOR, i // LABEL_DIVISOR in self.label_space.thing_ids, area, (x, y, w, h))
                for i, area, x, y, w, h in arrays["segments"].reshape(-1, _SEGMENT_COLUMNS).tolist())
            target = PanopticResult(arrays["panoptic"].astype(np.int32), segments)
            return Sample(arrays["image"], target, self._image_id(index))
        except (OSError, ValueError):
            return None

    def _write(self, sample: Sample, paths: dict[str, Path]) -> None:
        """Store ``sample``; the image last, as its presence marks a complete scene.

        Raises:
            ValueError: a panoptic id does not fit the cache's uint16 (65535).
        """
        panoptic = sample.target.panoptic
        if panoptic.max(initial=0) > np.iinfo(np.uint16).max:
            raise ValueError(f"{self.folder}: panoptic id {panoptic.max()} of {sample.image_id} does not fit "
                             "the scene cache's uint16 ids")
        table = np.array([(s.id, s.area, *s.bbox) for s in sample.target.segments], np.int64)
        _write_npy(paths["segments"], table.reshape(-1, _SEGMENT_COLUMNS))
        _write_npy(paths["panoptic"], panoptic.astype(np.uint16))
        _write_npy(paths["image"], sample.image)

    def _image_id(self, index: int) -> str:
        base = self.base
        return f"synth_{base.seed}_{index}" + ("_mirror" if getattr(base, "mirror", False) else "")


def _write_npy(path: Path, array: np.ndarray) -> None:
    buffer = io.BytesIO()
    np.save(buffer, np.ascontiguousarray(array), allow_pickle=False)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(path, buffer.getvalue())


def synthstreet(seed: int, count: int, size: tuple[int, int], *, mirror: bool = False,
                cache_dir: Path | None = None, isolated_twins: float = 0.0) -> Dataset:
    """SynthStreet scenes ``0..count-1`` of stream ``seed`` at ``size`` (H, W), cached in
    ``cache_dir`` when given; a share ``isolated_twins`` of them as isolated twins
    (:class:`IsolatedTwinScenes`)."""
    from panoptic_ros.synthstreet.scene import SynthStreetDataset

    dataset = SynthStreetDataset(seed, count, height=size[0], width=size[1], mirror=mirror)
    if cache_dir is not None:
        name = (f"synthstreet_{CACHE_FORMAT}_{generator_version()}_s{seed}_{size[0]}x{size[1]}"
                + ("_mirror" if mirror else ""))
        dataset = SceneCache(dataset, Path(cache_dir) / name, get_label_space("cityscapes"))
    return IsolatedTwinScenes(dataset, seed, isolated_twins) if isolated_twins > 0 else dataset


class IsolatedTwinScenes(Dataset):
    """A dataset where a share of the scenes become isolated twins.

    Scene ``i`` is replaced, when a generator seeded by (``seed``, ``i``) draws below
    ``share``, by two copies of its largest non-crowd thing that fits, a gap of 0.25-1.0
    of its width apart, on a plain background (:func:`panoptic_ros.synthstreet.twins.isolate_twins`).
    A scene without such a thing stays as it is. The choice is the same in every epoch.
    """

    MIN_AREA_SHARE = 0.002   # things smaller than this share of the image are not copied

    def __init__(self, base: Dataset, seed: int, share: float):
        self.base, self.seed, self.share = base, seed, share

    def __len__(self) -> int:
        return len(self.base)

    def __getitem__(self, index: int) -> Sample:
        from panoptic_ros.synthstreet.twins import copies_fit, isolate_twins

        sample = self.base[index]
        rng = np.random.default_rng([self.seed, int(index), 0x7717])
        if rng.random() >= self.share:
            return sample
        gap_share = float(rng.uniform(0.25, 1.0))
        min_area = self.MIN_AREA_SHARE * sample.target.panoptic.size
        width = sample.image.shape[1]
        things = sorted((s for s in sample.target.segments if s.is_thing and not s.iscrowd and s.area >= min_area),
                        key=lambda s: -s.area)
        for thing in things:
            if copies_fit(thing.bbox[2], gap_share, width):
                return isolate_twins(sample, thing.id, gap_share)
        return sample


def generator_version() -> str:
    """Short hash of the SynthStreet package's source: a changed generator never reads
    scenes cached by an older one."""
    import hashlib

    from panoptic_ros import synthstreet

    digest = hashlib.sha256()
    for path in sorted(Path(synthstreet.__file__).parent.glob("*.py")):
        digest.update(path.name.encode() + path.read_bytes())
    return digest.hexdigest()[:10]


def build_dataset(data: DataConfig, split: Split) -> Dataset:
    """The (untransformed) train or validation dataset of ``data``."""
    if data.dataset == "synthstreet":
        part = data.synth_train if split == "train" else data.synth_val
        return synthstreet(part.seed, part.count, data.scene_size, mirror=part.mirror, cache_dir=data.cache_dir,
                           isolated_twins=part.isolated_twins)
    return real_dataset(data.dataset, data.root, data.train_split if split == "train" else data.val_split)


def real_dataset(name: Literal["cityscapes", "coco"], root: Path, split: str) -> Dataset:
    """Cityscapes or COCO panoptic ``split`` under ``root``."""
    if name == "cityscapes":
        from panoptic_ros.training.datasets.cityscapes import CityscapesPanoptic

        return CityscapesPanoptic(root, split)
    from panoptic_ros.training.datasets.coco_panoptic import CocoPanoptic

    return CocoPanoptic(root, split)


def build_train_loader(config: TrainConfig, dist: DistInfo) -> tuple[PanopticDataLoader, DistributedStepSampler]:
    """The training loader (augmentation + targets) and its resumable step sampler."""
    data = config.data
    dataset = TransformedDataset(
        build_dataset(data, "train"),
        standard_train_transform(crop=data.crop_size, min_scale=data.min_scale, max_scale=data.max_scale,
                                 jitter=data.color_jitter),
        seed=config.runtime.seed)
    sampler = DistributedStepSampler(len(dataset), batch_size=data.batch_size, world_size=dist.world_size,
                                     rank=dist.rank, accumulate=config.optimizer.accumulate,
                                     seed=config.runtime.seed)
    collate = PanopticCollate(targets=config.model.kind, label_space=config.model.label_space)
    loader = build_dataloader(dataset, batch_size=data.batch_size, num_workers=data.workers, seed=config.runtime.seed,
                              collate=collate, pin_memory=dist.device.type == "cuda", batch_sampler=sampler)
    return loader, sampler


def seed_everything(seed: int) -> None:
    """Seed python, numpy and torch (all devices)."""
    import random

    random.seed(seed)
    np.random.seed(seed % (1 << 32))
    torch.manual_seed(seed)
