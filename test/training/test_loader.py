"""Collate (padding, targets) and the DataLoader builder (workers, seeds, DistributedSampler)."""
import json
import os

import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch.utils.data import Dataset

from panoptic_ros.labels import CITYSCAPES
from panoptic_ros.sample import Sample
from panoptic_ros.training.datasets.loader import Batch, PanopticCollate, build_dataloader
from panoptic_ros.training.datasets.transforms import (
    Compose, HorizontalFlip, RandomCrop, RandomScale, TransformedDataset)
from panoptic_ros.training.targets import ciae_targets, fcos_locations, panonet_targets
from panoptic_ros.types import PanopticResult


def make_sample(index: int, height: int = 64, width: int = 64) -> Sample:
    pan = np.full((height, width), 7000, np.int32)
    pan[: height // 4] = 23000
    pan[20:40, 8 + index % 8:30] = 26001
    pan[10:50, 40:56] = 24001
    pan[0:2, 0:2] = 0
    image = np.random.default_rng(index).integers(0, 256, (height, width, 3), dtype=np.uint8)
    return Sample(image, PanopticResult.from_panoptic_map(pan, CITYSCAPES), f"img{index:02d}")


class TinyDataset(Dataset):
    """Samples built on the fly (module level so that worker processes can import it)."""

    def __init__(self, size: int = 10, height: int = 64, width: int = 64):
        self.size, self.height, self.width = size, height, width

    def __len__(self) -> int:
        return self.size

    def __getitem__(self, index: int) -> Sample:
        return make_sample(index, self.height, self.width)


def augmented(size: int = 10) -> TransformedDataset:
    return TransformedDataset(TinyDataset(size), Compose((RandomScale(0.75, 1.5), RandomCrop(64, 64), HorizontalFlip())),
                              seed=11)


def test_collate_pads_with_ignore_values_and_builds_targets_on_the_padded_map():
    samples = [make_sample(0, 40, 50), make_sample(1, 64, 30)]
    batch = PanopticCollate(targets="ciae", label_space="cityscapes", size_divisor=32)(samples)
    assert batch.images.shape == (2, 3, 64, 64) and batch.images.dtype == torch.uint8
    assert torch.equal(batch.images[0, :, :40, :50], torch.from_numpy(samples[0].image).permute(2, 0, 1))
    assert not batch.images[0, :, 40:].any() and not batch.images[0, :, :, 50:].any()
    t = batch.targets
    assert t["segment_map"].shape == (2, 16, 16) and t["category_map"].shape == (2, 16, 16)
    assert torch.all(t["segment_map"][0, 10:] == -1) and torch.all(t["category_map"][0, 10:] == 255)
    assert t["fcos_labels"].shape == (2, len(fcos_locations(64, 64)[0]))
    assert isinstance(t["segment_boxes"], list) and len(t["segment_boxes"]) == 2
    padded = np.zeros((64, 64), np.int32)
    padded[:40, :50] = samples[0].target.panoptic
    expected = ciae_targets(PanopticResult.from_panoptic_map(padded, CITYSCAPES), CITYSCAPES)
    for key, value in expected.items():
        got = t[key][0]
        np.testing.assert_array_equal(got.numpy(), value, err_msg=key)
    assert batch.samples == samples
    images, targets = batch                                   # what a training step unpacks
    assert images is batch.images and targets is batch.targets


def test_panonet_collate_pads_semantic_255_instance_0():
    batch = PanopticCollate(targets="panonet", label_space="cityscapes", size_divisor=16)([
        make_sample(0, 48, 48), make_sample(1, 32, 32)])
    t = batch.targets
    for s in (4, 8, 16):
        assert t[f"semantic_{s}"].shape == (2, 48 // s, 48 // s) and t[f"semantic_{s}"].dtype == torch.int64
        assert torch.all(t[f"semantic_{s}"][1, 32 // s:] == 255) and torch.all(t[f"instance_{s}"][1, 32 // s:] == 0)
    same = panonet_targets(make_sample(0, 48, 48).target, CITYSCAPES)
    for key, value in same.items():
        np.testing.assert_array_equal(t[key][0].numpy(), value)


def test_collate_without_targets_and_errors():
    batch = PanopticCollate(targets=None, label_space="coco")([make_sample(0)])
    assert batch.targets == {} and batch.batch_size == 1
    moved = batch.to("cpu")
    assert isinstance(moved, Batch) and moved.samples is batch.samples
    with pytest.raises(ValueError, match="targets"):
        PanopticCollate(targets="maskrcnn", label_space="coco")
    with pytest.raises(ValueError, match="unknown label space"):
        PanopticCollate(targets=None, label_space="kitti")


def ids_of(loader) -> list[list[str]]:
    return [[s.image_id for s in batch.samples] for batch in loader]


def test_workers_give_the_same_batches_as_the_main_process():
    collate = PanopticCollate(targets="ciae", label_space="cityscapes")
    runs = []
    for workers in (0, 2):
        loader = build_dataloader(augmented(), batch_size=3, num_workers=workers, shuffle=True, seed=5,
                                  collate=collate)
        loader.set_epoch(1)
        runs.append(list(loader))
    assert [b.batch_size for b in runs[0]] == [3, 3, 3, 1]
    for a, b in zip(*runs):
        assert [s.image_id for s in a.samples] == [s.image_id for s in b.samples]
        assert torch.equal(a.images, b.images)
        for key in ("fcos_labels", "fcos_boxes", "segment_map", "category_map"):
            assert torch.equal(a.targets[key], b.targets[key])


@pytest.mark.timeout(120)
def test_persistent_workers_see_every_epoch_of_the_step_sampler():
    # The workers start once; each pass must still augment with its own epoch (sent with
    # every index), as the main process does: workers stuck at epoch 0 would differ.
    from panoptic_ros.training.sampling import DistributedStepSampler

    collate = PanopticCollate(targets=None, label_space="cityscapes")
    passes = {}
    for workers in (0, 2):
        sampler = DistributedStepSampler(10, batch_size=2, seed=5)
        loader = build_dataloader(augmented(), batch_size=2, num_workers=workers, seed=5, collate=collate,
                                  batch_sampler=sampler)
        assert loader.persistent_workers == (workers > 0)
        runs = []
        for epoch in (0, 1, 1):
            sampler.set_position(epoch, 1 if epoch else 0)
            loader.dataset.set_epoch(epoch)   # what train_to does; the workers do not see it
            runs.append(list(loader))
        passes[workers] = runs
    for a, b in zip(passes[0], passes[2]):
        assert [ids_of([x]) for x in a] == [ids_of([x]) for x in b]
        assert all(torch.equal(x.images, y.images) for x, y in zip(a, b))


class OpenCVThreads(Dataset):
    """Reports the OpenCV thread count inside the worker after a parallel OpenCV call."""

    def __len__(self) -> int:
        return 2

    def __getitem__(self, index: int) -> int:
        import cv2

        cv2.GaussianBlur(np.ones((600, 600), np.float32), (9, 9), 2)
        return cv2.getNumThreads()


@pytest.mark.timeout(120)
def test_workers_run_opencv_single_threaded_after_the_parent_used_its_pool():
    import cv2

    before = cv2.getNumThreads()
    cv2.setNumThreads(2)
    try:
        cv2.GaussianBlur(np.ones((1500, 1500), np.float32), (15, 15), 3)   # parent pool is running
        loader = build_dataloader(OpenCVThreads(), batch_size=1, num_workers=2, collate=lambda items: items)
        assert [n for batch in loader for n in batch] == [1, 1]
        assert cv2.getNumThreads() == 2                                      # parent restored
    finally:
        cv2.setNumThreads(before)


def test_set_epoch_reshuffles_and_reaugments():
    loader = build_dataloader(augmented(), batch_size=4, shuffle=True, seed=5, drop_last=True)
    first = list(loader)
    assert [len(b.samples) for b in first] == [4, 4]
    again = list(loader)
    assert ids_of(again) == ids_of(first) and torch.equal(again[0].images, first[0].images)
    loader.set_epoch(1)
    assert ids_of(loader) != ids_of(first)
    unshuffled = build_dataloader(TinyDataset(5), batch_size=2, shuffle=False)
    assert ids_of(unshuffled) == [["img00", "img01"], ["img02", "img03"], ["img04"]]


def test_distributed_true_needs_an_initialised_process_group():
    with pytest.raises(RuntimeError, match="initialised"):
        build_dataloader(TinyDataset(), batch_size=2, distributed=True)


def _distributed_worker(rank: int, world: int, init_file: str, out_dir: str) -> None:
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    try:
        loader = build_dataloader(TinyDataset(10), batch_size=2, num_workers=0, shuffle=True, seed=3)
        seen = {}
        for epoch in (0, 1):
            loader.set_epoch(epoch)
            seen[epoch] = [s.image_id for batch in loader for s in batch.samples]
        with open(os.path.join(out_dir, f"rank{rank}.json"), "w") as f:
            json.dump(seen, f)
    finally:
        dist.destroy_process_group()


def test_distributed_sampler_splits_across_two_gloo_processes(tmp_path):
    # fork: the children need no re-import of torch (seconds on 2 cores); gloo is fine with it.
    mp.start_processes(_distributed_worker, args=(2, str(tmp_path / "init"), str(tmp_path)), nprocs=2, join=True,
                       start_method="fork")
    ranks = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in range(2)]
    everything = {f"img{i:02d}" for i in range(10)}
    for epoch in ("0", "1"):
        a, b = ranks[0][epoch], ranks[1][epoch]
        assert len(a) == len(b) == 5
        assert set(a).isdisjoint(b) and set(a) | set(b) == everything
    assert ranks[0]["0"] != ranks[0]["1"]


def test_synthstreet_through_transforms_collate_and_workers():
    from panoptic_ros.synthstreet.scene import SynthStreetDataset
    from panoptic_ros.training.datasets.transforms import standard_train_transform

    dataset = TransformedDataset(SynthStreetDataset(seed=2, length=4, height=128, width=256),
                                 standard_train_transform(crop=(96, 128)), seed=1)
    loader = build_dataloader(dataset, batch_size=2, num_workers=2, shuffle=True, seed=0,
                              collate=PanopticCollate(targets="ciae", label_space="cityscapes"))
    for batch in loader:
        t = batch.targets
        assert batch.images.shape == (2, 3, 96, 128)
        for b in range(2):
            k = len(t["segment_category"][b])
            assert set(t["segment_map"][b].unique().tolist()) - {-1} == set(range(k))   # every segment has cells
            things = t["segment_is_thing"][b]
            assert torch.all(t["segment_category"][b][things] == 11) and torch.all(t["segment_category"][b][~things] < 11)
            assert torch.all((t["fcos_labels"][b] >= -1) & (t["fcos_labels"][b] < 8))
        batch.samples[0].target.validate()


def test_synthstreet_splits_can_be_mirrored(tmp_path):
    from panoptic_ros.training.config import DataConfig, SynthSplit
    from panoptic_ros.training.data import build_dataset
    from panoptic_ros.synthstreet.scene import generate_scene

    data = DataConfig(synth_train=SynthSplit(5, 2, mirror=True), synth_val=SynthSplit(6, 1),
                      scene_size=(128, 256), cache_dir=tmp_path)
    train, val = build_dataset(data, "train"), build_dataset(data, "val")
    mirrored, plain = generate_scene(5, 1, height=128, width=256, mirror=True), generate_scene(6, 0, height=128, width=256)
    assert np.array_equal(train[1].target.panoptic, mirrored.target.panoptic)
    assert np.array_equal(train[1].image, mirrored.image)
    assert np.array_equal(val[0].target.panoptic, plain.target.panoptic)
    assert any(p.name.endswith("_mirror") for p in tmp_path.iterdir())
    assert any(not p.name.endswith("_mirror") for p in tmp_path.iterdir())
