"""The SynthStreet scene cache: raw .npy files that read back exactly what was drawn."""
import numpy as np
import pytest
from torch.utils.data import Dataset

from panoptic_ros.labels import CITYSCAPES
from panoptic_ros.sample import Sample
from panoptic_ros.synthstreet.scene import SynthStreetDataset, generate_scene
from panoptic_ros.synthstreet.stats import twin_ids
from panoptic_ros.training.data import CACHE_FORMAT, SceneCache, generator_version, synthstreet
from panoptic_ros.types import PanopticResult, Segment


class Counting(Dataset):
    """A base dataset that counts how often a scene is drawn."""

    def __init__(self, base):
        self.base, self.seed, self.mirror, self.calls = base, base.seed, base.mirror, 0

    def __len__(self) -> int:
        return len(self.base)

    def __getitem__(self, index: int) -> Sample:
        self.calls += 1
        return self.base[index]


def assert_same_sample(a: Sample, b: Sample) -> None:
    assert a.image.dtype == b.image.dtype and a.target.panoptic.dtype == b.target.panoptic.dtype == np.int32
    np.testing.assert_array_equal(a.image, b.image)
    np.testing.assert_array_equal(a.target.panoptic, b.target.panoptic)
    assert a.target.segments == b.target.segments
    assert a.image_id == b.image_id


def test_a_cached_scene_reads_back_exactly_and_is_not_drawn_again(tmp_path):
    base = Counting(SynthStreetDataset(7, 3, height=64, width=128))
    cache = SceneCache(base, tmp_path / "scenes", CITYSCAPES)
    first = cache[2]
    assert base.calls == 1
    assert sorted(p.name for p in (tmp_path / "scenes").iterdir()) == [
        "000002_image.npy", "000002_panoptic.npy", "000002_segments.npy"]
    again = SceneCache(base, tmp_path / "scenes", CITYSCAPES)[2]
    assert base.calls == 1
    drawn = generate_scene(7, 2, height=64, width=128)
    assert_same_sample(first, drawn)
    assert_same_sample(again, drawn)
    again.target.validate()
    assert any(s.is_thing for s in again.target.segments) and any(not s.is_thing for s in again.target.segments)


def test_a_damaged_scene_is_drawn_again(tmp_path):
    base = Counting(SynthStreetDataset(7, 2, height=64, width=128))
    cache = SceneCache(base, tmp_path, CITYSCAPES)
    cache[1]
    (tmp_path / "000001_panoptic.npy").write_bytes(b"\x93NUMPY broken")
    assert_same_sample(cache[1], generate_scene(7, 1, height=64, width=128))
    assert base.calls == 2
    assert_same_sample(SceneCache(base, tmp_path, CITYSCAPES)[1], generate_scene(7, 1, height=64, width=128))
    assert base.calls == 2                                    # the rewritten files are whole


class LargeIds(Dataset):
    seed, mirror = 0, False

    def __len__(self) -> int:
        return 1

    def __getitem__(self, index: int) -> Sample:
        pan = np.full((4, 4), 70001, np.int32)                # a COCO-sized category would not fit
        segment = Segment(70001, 70, True, 16, (0, 0, 4, 4))
        return Sample(np.zeros((4, 4, 3), np.uint8), PanopticResult(pan, (segment,)), "large")


def test_ids_beyond_uint16_are_refused(tmp_path):
    with pytest.raises(ValueError, match="uint16"):
        SceneCache(LargeIds(), tmp_path, CITYSCAPES)[0]
    assert not (tmp_path / "000000_image.npy").exists()


def test_the_cache_folder_names_format_generator_seed_and_size(tmp_path):
    cached = synthstreet(3, 2, (64, 128), cache_dir=tmp_path, mirror=True)
    cached[0]
    (folder,) = tmp_path.iterdir()
    # The earlier PNG layout lived in synthstreet_<version>_s3_... : never read as this one.
    assert folder.name == f"synthstreet_{CACHE_FORMAT}_{generator_version()}_s3_64x128_mirror"
    assert_same_sample(cached[0], generate_scene(3, 0, height=64, width=128, mirror=True))


def test_isolated_twins_replace_about_their_share_of_scenes_the_same_way_every_time():
    scenes = synthstreet(7, 40, (64, 128), isolated_twins=0.3)
    twins = [i for i in range(40) if scenes[i].image_id.endswith("_isolated")]
    assert 6 <= len(twins) <= 18                              # ~12 of 40 drawn, some without a thing that fits
    for i in twins[:3]:
        scene, again = scenes[i], scenes[i]
        assert_same_sample(scene, again)
        things = [s for s in scene.target.segments if s.is_thing]
        assert len(things) == 2 and twin_ids(scene) == {s.id for s in things}
    plain = next(i for i in range(40) if i not in twins)
    assert_same_sample(scenes[plain], generate_scene(7, plain, height=64, width=128))


def test_isolated_twins_share_must_be_a_share():
    from panoptic_ros.training.config import SynthSplit

    with pytest.raises(ValueError, match="isolated_twins must be a share"):
        SynthSplit(0, 10, isolated_twins=1.5)
