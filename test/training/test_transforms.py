"""Augmentations keep image and panoptic target consistent and are reproducible."""
import numpy as np
import pytest
import torch

from panoptic_ros.labels import CITYSCAPES
from panoptic_ros.sample import Sample
from panoptic_ros.training.datasets.transforms import (
    ColorJitter, Compose, HorizontalFlip, RandomCrop, RandomScale, RandomScaleCrop, Resize, TransformedDataset,
    sample_rng, standard_train_transform, to_tensor)
from panoptic_ros.types import PanopticResult


def make_sample(height: int = 24, width: int = 32, seed: int = 0) -> Sample:
    rng = np.random.default_rng(seed)
    pan = np.full((height, width), 7000, np.int32)           # road
    pan[: height // 4] = 23000                               # sky
    pan[height // 3: height // 3 + 6, 2:10] = 26001          # car 1
    pan[height // 2:, width - 9: width - 3] = 24001          # person 1
    pan[height - 3:, :4] = 24000                             # person crowd
    pan[0, 0] = 0                                            # VOID
    image = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
    return Sample(image, PanopticResult.from_panoptic_map(pan, CITYSCAPES), "s")


def assert_same(a: Sample, b: Sample) -> None:
    np.testing.assert_array_equal(a.image, b.image)
    np.testing.assert_array_equal(a.target.panoptic, b.target.panoptic)
    assert a.target.segments == b.target.segments


def test_flip_twice_is_identity_and_boxes_mirror():
    s = make_sample()
    flip = HorizontalFlip(p=1.0)
    once = flip(s, sample_rng(0, 0, 0))
    np.testing.assert_array_equal(once.image, s.image[:, ::-1])
    once.target.validate()
    car = once.target.segment(26001)
    x, y, w, h = s.target.segment(26001).bbox
    assert car.bbox == (32 - x - w, y, w, h) and car.area == s.target.segment(26001).area
    assert once.target.segment(24000).iscrowd
    assert_same(flip(once, sample_rng(0, 0, 1)), s)
    assert HorizontalFlip(p=0.0)(s, sample_rng(0, 0, 0)) is s


def test_crop_inside_the_image_takes_a_window():
    s = make_sample(40, 50)
    out = RandomCrop(16, 20)(s, sample_rng(3, 0, 0))
    assert out.image.shape == (16, 20, 3)
    out.target.validate()
    windows = [(y, x) for y in range(40 - 16 + 1) for x in range(50 - 20 + 1)
               if np.array_equal(s.image[y:y + 16, x:x + 20], out.image)]
    assert len(windows) == 1
    y, x = windows[0]
    np.testing.assert_array_equal(out.target.panoptic, s.target.panoptic[y:y + 16, x:x + 20])


def test_crop_larger_than_image_pads_void_and_fill():
    s = make_sample(10, 12)
    crop = RandomCrop(16, 20, fill=(1, 2, 3))
    for index in range(5):
        out = crop(s, sample_rng(0, 0, index))
        out.target.validate()
        # the image appears once, uncut; everything else is padding
        origins = [(y, x) for y in range(7) for x in range(9)
                   if np.array_equal(out.image[y:y + 10, x:x + 12], s.image)]
        assert len(origins) == 1
        y, x = origins[0]
        np.testing.assert_array_equal(out.target.panoptic[y:y + 10, x:x + 12], s.target.panoptic)
        pad = np.ones((16, 20), bool)
        pad[y:y + 10, x:x + 12] = False
        assert np.all(out.target.panoptic[pad] == 0)
        assert np.all(out.image[pad] == (1, 2, 3))
        areas = {seg.id: seg.area for seg in out.target.segments}
        assert areas == {seg.id: seg.area for seg in s.target.segments}


def test_scale_keeps_labels_nearest_and_drops_vanished_segments():
    s = make_sample(24, 32)
    up = RandomScale(2.0, 2.0)(s, sample_rng(0, 0, 0))
    np.testing.assert_array_equal(up.target.panoptic, np.kron(s.target.panoptic, np.ones((2, 2), np.int32)))
    up.target.validate()
    down = RandomScale(0.5, 0.5)(s, sample_rng(0, 0, 0))
    np.testing.assert_array_equal(down.target.panoptic, s.target.panoptic[1::2, 1::2])
    assert down.image.shape == (12, 16, 3)
    down.target.validate()
    assert 0 not in down.target.panoptic                   # the single VOID pixel vanished ...
    tiny = RandomScale(0.25, 0.25)(s, sample_rng(0, 0, 0))
    ids = set(np.unique(tiny.target.panoptic).tolist())
    assert {seg.id for seg in tiny.target.segments} == ids - {0}   # ... and so do segments
    assert ids <= {0} | {seg.id for seg in s.target.segments}


def test_resize_image_interpolation_is_smooth():
    s = Sample(np.full((8, 8, 3), 100, np.uint8), make_sample(8, 8).target, "flat")
    out = Resize(20, 12)(s, sample_rng(0, 0, 0))
    assert out.image.shape == (20, 12, 3) and np.all(out.image == 100)
    assert out.target.panoptic.shape == (20, 12)


def test_color_jitter_leaves_grey_under_saturation_and_hue_and_never_the_target():
    grey = np.repeat(np.arange(0, 250, 10, dtype=np.uint8)[None, :, None], 3, axis=2).repeat(4, axis=0)
    s = Sample(grey, make_sample(4, 25).target, "grey")
    out = ColorJitter(brightness=0, contrast=0, saturation=0.9, hue=0.5)(s, sample_rng(1, 2, 3))
    np.testing.assert_array_equal(out.image, grey)
    assert out.target is s.target
    colour = make_sample().image
    bright = ColorJitter(brightness=0.5, contrast=0, saturation=0, hue=0)
    factor = np.random.default_rng([5, 0, 0]).uniform(0.5, 1.5)     # first draw is brightness
    expected = np.clip(np.rint(colour.astype(np.float64) * factor), 0, 255)
    got = bright(Sample(colour, make_sample().target, "c"), sample_rng(5, 0, 0)).image
    assert np.abs(got.astype(int) - expected).max() <= 1


@pytest.mark.parametrize("top, bottom", [((140, 140, 140), (100, 100, 100)), ((200, 40, 90), (30, 160, 10))])
def test_contrast_pivots_on_the_grey_level_of_the_mean_colour(top, bottom):
    # Reference, by hand: x -> g + c (x - g), g = 0.299 R + 0.587 G + 0.114 B of the mean
    # colour (ITU-R 601 luma), c the second draw of the sample's generator (brightness,
    # drawn first, is the identity here).
    img = np.empty((10, 10, 3), np.uint8)
    img[:5], img[5:] = top, bottom
    s = Sample(img, make_sample(10, 10).target, "c")
    draws = np.random.default_rng([0, 0, 7])
    draws.uniform(1, 1)                                # brightness
    factor = draws.uniform(0.5, 1.5)
    grey = np.array([0.299, 0.587, 0.114]) @ img.reshape(-1, 3).mean(0)
    expected = np.clip(np.rint(grey + factor * (img.astype(np.float64) - grey)), 0, 255)
    out = ColorJitter(brightness=0, contrast=0.5, saturation=0, hue=0)(s, sample_rng(0, 0, 7)).image
    assert abs(factor - 1) > 0.1                       # the case changes contrast visibly
    assert np.abs(out.astype(int) - expected).max() <= 1


def test_pipeline_is_deterministic_per_seed_epoch_index():
    s = make_sample(48, 64)
    pipeline = standard_train_transform(crop=(32, 32))
    a = pipeline(s, sample_rng(7, 1, 4))
    assert_same(a, pipeline(s, sample_rng(7, 1, 4)))
    b = pipeline(s, sample_rng(7, 2, 4))
    assert not np.array_equal(a.image, b.image)
    for out in (a, b):
        assert out.image.shape == (32, 32, 3)
        out.target.validate()


def test_transformed_dataset_order_independent():
    base = [make_sample(30, 40, seed=i) for i in range(4)]
    ds = TransformedDataset(base, Compose((RandomScale(0.5, 1.5), RandomCrop(16, 16), HorizontalFlip())), seed=3)
    forward = [ds[i] for i in range(4)]
    backward = [ds[i] for i in reversed(range(4))][::-1]
    for a, b in zip(forward, backward):
        assert_same(a, b)
    ds.set_epoch(1)
    assert any(not np.array_equal(a.image, ds[i].image) for i, a in enumerate(forward))


def test_to_tensor_layout_and_range():
    img = make_sample().image
    t = to_tensor(img)
    assert t.dtype == torch.float32 and t.shape == (3, 24, 32)
    assert torch.equal(t, torch.from_numpy(img.astype(np.float32)).permute(2, 0, 1))
    with pytest.raises(ValueError, match="uint8"):
        to_tensor(img.astype(np.float32))


@pytest.mark.parametrize("bad, error, message", [
    (lambda: RandomScale(0, 1), ValueError, r"RandomScale: need 0 < min_scale <= max_scale, got 0, 1"),
    (lambda: RandomScale(2, 1), ValueError, r"RandomScale: need 0 < min_scale <= max_scale, got 2, 1"),
    (lambda: RandomCrop(0, 4), ValueError, r"RandomCrop: size must be positive, got 0x4"),
    (lambda: RandomCrop(4, 4, fill=(0, 0, 300)), ValueError, r"RandomCrop: fill must be three values in 0\.\.255"),
    (lambda: HorizontalFlip(1.5), ValueError, r"HorizontalFlip: p must lie in \[0, 1\], got 1\.5"),
    (lambda: ColorJitter(hue=0.7), ValueError, r"ColorJitter: hue must lie in \[0, 0\.5\], got 0\.7"),
    (lambda: ColorJitter(brightness=-1), ValueError, r"ColorJitter: brightness must lie in \[0, 1\], got -1"),
    (lambda: Compose((1,)), TypeError, r"Compose: 1 is not callable"),
])
def test_invalid_parameters_raise(bad, error, message):
    with pytest.raises(error, match=message):
        bad()


def scale_then_crop(min_scale: float, max_scale: float, height: int, width: int, fill=(0, 0, 0)) -> Compose:
    """The two-step reference that RandomScaleCrop fuses."""
    return Compose((RandomScale(min_scale, max_scale), RandomCrop(height, width, fill)))


def street_sample(height: int = 96, width: int = 160, seed: int = 0) -> Sample:
    """A smooth image (bilinear and area resizes stay comparable) over blocky segments."""
    rng = np.random.default_rng(seed)
    pan = np.full((height, width), 7000, np.int32)
    pan[: height // 3] = 23000
    for k in range(1, 7):
        y, x = int(rng.integers(0, height - 20)), int(rng.integers(0, width - 24))
        pan[y:y + int(rng.integers(6, 20)), x:x + int(rng.integers(6, 24))] = 26000 + k
    yy, xx = np.mgrid[0:height, 0:width]
    image = np.stack([(yy * 2) % 256, (xx * 1.5) % 256, (pan // 1000) * 7 % 256], axis=-1).astype(np.uint8)
    return Sample(image, PanopticResult.from_panoptic_map(pan, CITYSCAPES), "street")


@pytest.mark.parametrize("scale", [1.0, 2.0, 3.0])
def test_scale_crop_equals_scale_then_crop_for_integer_factors(scale):
    s = street_sample()
    for index in range(6):
        fused = RandomScaleCrop(scale, scale, 48, 64)(s, sample_rng(0, 0, index))
        assert_same(fused, scale_then_crop(scale, scale, 48, 64)(s, sample_rng(0, 0, index)))


def test_scale_crop_draws_like_scale_then_crop_and_agrees_up_to_a_subpixel_phase():
    s = street_sample()
    agree, total = 0, 0
    for index in range(40):
        a_rng, b_rng = sample_rng(1, 0, index), sample_rng(1, 0, index)
        fused = RandomScaleCrop(0.5, 1.5, 48, 64)(s, a_rng)
        reference = scale_then_crop(0.5, 1.5, 48, 64)(s, b_rng)
        assert a_rng.random() == b_rng.random()              # the same numbers were drawn
        fused.target.validate()
        same = fused.target.panoptic == reference.target.panoptic
        agree, total = agree + same.sum(), total + same.size
        # a label differs only next to a boundary of the reference (a shift below one pixel)
        ref = np.pad(reference.target.panoptic, 1, mode="edge")
        near = np.zeros_like(same)
        for dy in (0, 1, 2):
            for dx in (0, 1, 2):
                near |= ref[dy:dy + 48, dx:dx + 64] == fused.target.panoptic
        assert near.all()
        assert np.abs(fused.image.astype(int) - reference.image.astype(int)).mean() < 6
    assert agree / total > 0.97


def test_scale_crop_pads_where_the_scaled_image_is_smaller():
    s = street_sample(24, 32)
    for index in range(5):
        fused = RandomScaleCrop(0.5, 0.7, 40, 48, fill=(9, 8, 7))(s, sample_rng(2, 0, index))
        reference = scale_then_crop(0.5, 0.7, 40, 48, fill=(9, 8, 7))(s, sample_rng(2, 0, index))
        fused.target.validate()
        pad = (reference.target.panoptic == 0) & np.all(reference.image == (9, 8, 7), axis=-1)
        np.testing.assert_array_equal(fused.target.panoptic[pad], 0)
        assert np.all(fused.image[pad] == (9, 8, 7))
        assert (fused.target.panoptic != 0).sum() == (reference.target.panoptic != 0).sum()


def test_scale_crop_rejects_bad_parameters():
    with pytest.raises(ValueError):
        RandomScaleCrop(2.0, 1.0, 8, 8)
    with pytest.raises(ValueError):
        RandomScaleCrop(0.5, 1.0, 0, 8)


def test_color_jitter_matches_the_four_operations_applied_one_by_one():
    image = street_sample().image
    jitter = ColorJitter(brightness=0.4, contrast=0.4, saturation=0.4, hue=0.1)
    grey = np.array([0.299, 0.587, 0.114])
    yiq = np.array([[0.299, 0.587, 0.114], [0.596, -0.274, -0.322], [0.211, -0.523, 0.312]])
    for index in range(5):
        rng = np.random.default_rng([4, 0, index])                # what sample_rng(4, 0, index) gives
        factors = [rng.uniform(0.6, 1.4), rng.uniform(0.6, 1.4), rng.uniform(0.6, 1.4), rng.uniform(-0.1, 0.1)]
        x = image.reshape(-1, 3).astype(np.float64)
        for op in rng.permutation(4):
            f = factors[op]
            if op == 0:
                x = x * f
            elif op == 1:
                x = f * x + (1 - f) * (x.mean(axis=0) @ grey)
            elif op == 2:
                x = f * x + (1 - f) * (x @ grey)[:, None]
            else:
                c, s = np.cos(2 * np.pi * f), np.sin(2 * np.pi * f)
                x = x @ (np.linalg.inv(yiq) @ np.array([[1, 0, 0], [0, c, -s], [0, s, c]]) @ yiq).T
        expected = np.clip(np.rint(x), 0, 255).reshape(image.shape)
        got = jitter(Sample(image, street_sample().target, "j"), sample_rng(4, 0, index)).image
        assert np.abs(got.astype(int) - expected).max() <= 1
