"""SynthStreet generator and data set: determinism, label contract, mirror, workers."""
import numpy as np
import pytest
import torch.utils.data

from panoptic_ros.labels import CITYSCAPES
from panoptic_ros.sample import Sample
from panoptic_ros.synthstreet.scene import (
    MAX_INSTANCES, MIN_INSTANCES, SynthStreetDataset, count_instances, generate_scene)
from panoptic_ros.types import LABEL_DIVISOR


def _instances_by_category(sample: Sample) -> dict[int, list[int]]:
    out: dict[int, list[int]] = {}
    for seg in sample.target.segments:
        if seg.is_thing and not seg.iscrowd:
            out.setdefault(seg.category_id, []).append(seg.instance)
    return out


@pytest.mark.parametrize("seed,index,size", [(0, 0, (256, 512)), (7, 3, (128, 256)), (12345, 99, (200, 300))])
def test_scene_contract(seed, index, size):
    sample = generate_scene(seed, index, height=size[0], width=size[1])
    assert sample.image.shape == size + (3,) and sample.image.dtype == np.uint8
    assert sample.image_id == f"synth_{seed}_{index}"
    target = sample.target.validate()
    assert target.panoptic.dtype == np.int32
    categories = {s.category_id for s in target.segments}
    assert categories <= set(CITYSCAPES.ids)
    assert {7, 23} <= categories                      # road and sky are always there
    assert MIN_INSTANCES <= count_instances(target) <= MAX_INSTANCES
    for category, instances in _instances_by_category(sample).items():
        assert sorted(instances) == list(range(1, len(instances) + 1)), category
    # stuff carries instance 0; the ego hood is VOID at the bottom centre
    assert all(s.instance == 0 for s in target.segments if not s.is_thing)
    assert target.panoptic[-1, size[1] // 2] == 0


def test_same_seed_same_scene_and_different_seeds_differ():
    a, b = generate_scene(3, 5, height=128, width=256), generate_scene(3, 5, height=128, width=256)
    assert np.array_equal(a.image, b.image) and np.array_equal(a.target.panoptic, b.target.panoptic)
    c = generate_scene(4, 5, height=128, width=256)
    d = generate_scene(3, 6, height=128, width=256)
    assert not np.array_equal(a.image, c.image) and not np.array_equal(a.image, d.image)


def test_scene_looks_the_same_at_two_resolutions():
    small = generate_scene(2, 1, height=128, width=256)
    large = generate_scene(2, 1, height=256, width=512)
    down = large.target.resize(256, 128).semantic_map(CITYSCAPES)
    agree = np.mean(down == small.target.semantic_map(CITYSCAPES))
    assert agree > 0.9


def test_mirror_keeps_instances_distinct():
    sample = generate_scene(5, 2, height=128, width=256, mirror=True)
    pan, img = sample.target.panoptic, sample.image
    half = pan.shape[1] // 2
    assert np.array_equal(img[:, :half], img[:, -half:][:, ::-1])
    left, right = pan[:, :half], pan[:, -half:][:, ::-1]
    assert np.array_equal(left // LABEL_DIVISOR, right // LABEL_DIVISOR)
    things = (left % LABEL_DIVISOR) > 0
    assert things.any()
    # a mirrored thing is another instance: no thing id occurs in both halves
    assert not set(np.unique(left[things]).tolist()) & set(np.unique(right[things]).tolist())
    assert sample.image_id.endswith("_mirror")


@pytest.mark.parametrize("bad", [-1, 1.5, "3", True])
def test_bad_seed_or_index_is_rejected(bad):
    with pytest.raises(ValueError, match="seed"):
        generate_scene(bad, 0, height=64, width=128)
    with pytest.raises(ValueError, match="index"):
        generate_scene(0, bad, height=64, width=128)


def test_bad_size_is_rejected():
    with pytest.raises(ValueError, match="64x128"):
        generate_scene(0, 0, height=32, width=64)


def _collate(samples):
    return samples


def test_dataset_with_workers_matches_generator():
    flips = []

    def transform(sample: Sample) -> Sample:
        flips.append(sample.image_id)
        return Sample(sample.image[:, ::-1].copy(), sample.target, sample.image_id)

    ds = SynthStreetDataset(seed=9, length=4, height=64, width=128, transform=transform)
    assert len(ds) == 4
    loader = torch.utils.data.DataLoader(ds, batch_size=2, num_workers=2, collate_fn=_collate)
    got = [s for batch in loader for s in batch]
    assert [s.image_id for s in got] == [f"synth_9_{i}" for i in range(4)]
    for i, s in enumerate(got):
        ref = generate_scene(9, i, height=64, width=128)
        assert np.array_equal(s.image, ref.image[:, ::-1])
    # indices beyond the epoch are valid: the stream is infinite
    assert ds[1000].image_id == "synth_9_1000"
    with pytest.raises(ValueError, match="length"):
        SynthStreetDataset(seed=0, length=0)
