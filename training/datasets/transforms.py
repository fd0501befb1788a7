"""Training augmentations on :class:`Sample`: scale, crop/pad, flip, colour jitter.

Every transform is a small frozen dataclass called as ``transform(sample, rng) -> Sample``
with an explicit ``np.random.Generator``; none touches a global random state. Use
:func:`sample_rng` (or :class:`TransformedDataset`, which does it for you) to derive one
generator per sample from ``(seed, epoch, index)``: the augmentation of a sample then does
not depend on the number of DataLoader workers, their scheduling or on resuming mid-run.

Images and targets stay consistent: every geometric transform applies the same change to
the image and the panoptic map and rebuilds the target with
:meth:`PanopticResult.with_panoptic`, which recomputes areas and boxes and drops the
segments that vanished (categories, crowd flags and scores are kept); the flip mirrors the
boxes instead, which is exact. :func:`standard_train_transform` scales and crops in one
step (:class:`RandomScaleCrop`), so a training sample's map is resized only where the crop
keeps it and its segments are measured once.

* Images are resized bilinearly when enlarged and with pixel-area averaging when shrunk;
  panoptic maps with centre-aligned nearest neighbour (``INTER_NEAREST_EXACT``), which
  lines the labels up with the bilinear image (plain ``INTER_NEAREST`` is shifted by half a
  source pixel).
* Crop padding: the target is VOID (id 0, ignored by every loss); the image is filled
  with ``RandomCrop.fill``, black by default. Black is what the collate pads with too, so
  crop padding and batch padding look alike to the network. Pass the dataset mean colour
  instead to make padding normalise to ~0.

There is deliberately no mean/std normalisation here: by project contract the models take
RGB float32 in [0, 255] and normalise inside ``forward`` (one place for training, torch
inference and ONNX). :func:`to_tensor` therefore only changes layout and dtype.
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Protocol, Sequence

import cv2
import numpy as np
import torch
from torch.utils.data import Dataset

from panoptic_ros.sample import Sample
from panoptic_ros.types import VOID, PanopticResult

# Luma weights (ITU-R BT.601) for greyscale; YIQ matrix for the hue rotation.
_GREY = np.array([0.299, 0.587, 0.114])
_RGB2YIQ = np.array([[0.299, 0.587, 0.114], [0.596, -0.274, -0.322], [0.211, -0.523, 0.312]])
_YIQ2RGB = np.linalg.inv(_RGB2YIQ)


class Transform(Protocol):
    def __call__(self, sample: Sample, rng: np.random.Generator) -> Sample: ...


def sample_rng(seed: int, epoch: int, index: int) -> np.random.Generator:
    """The generator for sample ``index`` in ``epoch`` of a run seeded with ``seed``."""
    if min(seed, epoch, index) < 0:
        raise ValueError(f"seed, epoch and index must be >= 0, got {seed}, {epoch}, {index}")
    return np.random.default_rng([seed, epoch, index])


def to_tensor(image: np.ndarray) -> torch.Tensor:
    """(H, W, 3) uint8 RGB -> (3, H, W) float32 RGB in [0, 255] (no normalisation)."""
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError(f"expected an (H, W, 3) uint8 image, got {image.dtype} {image.shape}")
    return torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1).float()


def resize_sample(sample: Sample, height: int, width: int) -> Sample:
    """Resize image (bilinear up / area down) and target (nearest) to ``height`` x ``width``."""
    h, w = sample.image.shape[:2]
    if (h, w) == (height, width):
        return sample
    shrink = height * width < h * w
    image = cv2.resize(sample.image, (width, height), interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LINEAR)
    panoptic = cv2.resize(sample.target.panoptic, (width, height), interpolation=cv2.INTER_NEAREST_EXACT)
    return Sample(image, sample.target.with_panoptic(panoptic), sample.image_id)


@dataclass(frozen=True)
class Compose:
    """Apply ``transforms`` in order, all drawing from the same generator."""

    transforms: tuple = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "transforms", tuple(self.transforms))
        for t in self.transforms:
            if not callable(t):
                raise TypeError(f"Compose: {t!r} is not callable")

    def __call__(self, sample: Sample, rng: np.random.Generator) -> Sample:
        for t in self.transforms:
            sample = t(sample, rng)
        return sample


@dataclass(frozen=True)
class Resize:
    """Resize to a fixed ``height`` x ``width`` (deterministic; e.g. evaluation input size)."""

    height: int
    width: int

    def __post_init__(self) -> None:
        if self.height < 1 or self.width < 1:
            raise ValueError(f"Resize: size must be positive, got {self.height}x{self.width}")

    def __call__(self, sample: Sample, rng: np.random.Generator) -> Sample:
        return resize_sample(sample, self.height, self.width)


@dataclass(frozen=True)
class RandomScale:
    """Scale both sides by one factor drawn uniformly from ``[min_scale, max_scale]``."""

    min_scale: float = 0.5
    max_scale: float = 2.0

    def __post_init__(self) -> None:
        if not 0 < self.min_scale <= self.max_scale:
            raise ValueError(f"RandomScale: need 0 < min_scale <= max_scale, got {self.min_scale}, {self.max_scale}")

    def __call__(self, sample: Sample, rng: np.random.Generator) -> Sample:
        scale = rng.uniform(self.min_scale, self.max_scale)
        return resize_sample(sample, *scaled_size(sample.image.shape[:2], scale))


def scaled_size(size: tuple[int, int], scale: float) -> tuple[int, int]:
    """(H, W) of an image of ``size`` (H, W) scaled by ``scale`` (rounded, at least 1)."""
    return max(1, round(size[0] * scale)), max(1, round(size[1] * scale))


def crop_origin(rng: np.random.Generator, size: int, crop: int) -> int:
    """Uniform origin of a ``crop``-long window along an axis of ``size`` pixels; negative
    (the image then lies inside the window, the rest is padding) where ``size < crop``."""
    return int(rng.integers(min(0, size - crop), max(0, size - crop) + 1))


@dataclass(frozen=True)
class RandomCrop:
    """Crop a ``height`` x ``width`` window at a uniform random position.

    Where the image is smaller than the window it is placed at a uniform random offset
    inside it; the rest is padding: VOID in the target and ``fill`` (RGB) in the image.
    """

    height: int
    width: int
    fill: tuple[int, int, int] = (0, 0, 0)

    def __post_init__(self) -> None:
        if self.height < 1 or self.width < 1:
            raise ValueError(f"RandomCrop: size must be positive, got {self.height}x{self.width}")
        if len(self.fill) != 3 or not all(0 <= int(v) <= 255 for v in self.fill):
            raise ValueError(f"RandomCrop: fill must be three values in 0..255, got {self.fill}")

    def __call__(self, sample: Sample, rng: np.random.Generator) -> Sample:
        h, w = sample.image.shape[:2]
        y0, x0 = crop_origin(rng, h, self.height), crop_origin(rng, w, self.width)
        sy0, sy1 = max(y0, 0), min(y0 + self.height, h)
        sx0, sx1 = max(x0, 0), min(x0 + self.width, w)
        dst = (slice(sy0 - y0, sy1 - y0), slice(sx0 - x0, sx1 - x0))
        return padded_crop(sample, sample.image[sy0:sy1, sx0:sx1], sample.target.panoptic[sy0:sy1, sx0:sx1], dst,
                           (self.height, self.width), self.fill)


def padded_crop(sample: Sample, image: np.ndarray, panoptic: np.ndarray, dst: tuple[slice, slice],
                size: tuple[int, int], fill: Sequence[int]) -> Sample:
    """``image`` (h, w, 3) and ``panoptic`` (h, w) placed at ``dst`` in a ``size`` (H, W)
    canvas of ``fill`` / VOID; the segments are ``sample``'s, their stats recomputed."""
    if image.shape[:2] == tuple(size):          # nothing to pad: the usual training crop
        return Sample(np.array(image, order="C"), sample.target.with_panoptic(np.array(panoptic, order="C")),
                      sample.image_id)
    canvas = np.empty((*size, 3), np.uint8)
    canvas[:] = np.asarray(fill, np.uint8)
    ids = np.full(size, VOID, np.int32)
    canvas[dst] = image
    ids[dst] = panoptic
    return Sample(canvas, sample.target.with_panoptic(ids), sample.image_id)


@dataclass(frozen=True)
class RandomScaleCrop:
    """:class:`RandomScale` then :class:`RandomCrop`, resizing only the part the crop keeps.

    It draws the same numbers in the same order as ``Compose((RandomScale(min_scale,
    max_scale), RandomCrop(height, width, fill)))`` and gives the same scale factors (per
    axis, rounded size / size), window origin, padding and interpolation. Instead of
    resizing the whole image it resizes, with the same factors, the source region under
    the window plus a margin, and computes segment areas and boxes once, on the crop: at
    256x512 crops of 512x1024 scenes that is a fraction of the work. The one difference:
    the window lands on the scaled image's pixel grid up to a phase below half a scaled
    pixel (exact where a factor is an integer or the region starts at the image border),
    because an image region that starts inside the image maps to a fractional position.
    The window's origin stays uniform over the same range, so the augmentation's
    distribution is unchanged.
    """

    min_scale: float = 0.5
    max_scale: float = 2.0
    height: int = 512
    width: int = 1024
    fill: tuple[int, int, int] = (0, 0, 0)

    def __post_init__(self) -> None:
        RandomScale(self.min_scale, self.max_scale)       # the same checks
        RandomCrop(self.height, self.width, self.fill)

    def __call__(self, sample: Sample, rng: np.random.Generator) -> Sample:
        scale = rng.uniform(self.min_scale, self.max_scale)
        size = sample.image.shape[:2]
        scaled = scaled_size(size, scale)
        origin = crop_origin(rng, scaled[0], self.height), crop_origin(rng, scaled[1], self.width)
        rows = _window(origin[0], self.height, size[0], scaled[0])
        cols = _window(origin[1], self.width, size[1], scaled[1])
        region = (slice(rows.source_start, rows.source_stop), slice(cols.source_start, cols.source_stop))
        factors = scaled[0] / size[0], scaled[1] / size[1]
        shrink = scaled[0] * scaled[1] < size[0] * size[1]
        image = cv2.resize(sample.image[region], None, fx=factors[1], fy=factors[0],
                           interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LINEAR)
        keep = (rows.kept(image.shape[0]), cols.kept(image.shape[1]))
        # Centre-aligned nearest neighbour on the image's grid (what INTER_NEAREST_EXACT does
        # for a whole image; on a region OpenCV would derive its grid from the region's size).
        panoptic = sample.target.panoptic[np.ix_(rows.nearest(keep[0].start), cols.nearest(keep[1].start))]
        return padded_crop(sample, image[keep], panoptic, (rows.destination, cols.destination),
                           (self.height, self.width), self.fill)


@dataclass(frozen=True)
class _Window:
    """One axis of :class:`RandomScaleCrop`: the source pixels to resize, and where the
    crop's pixels lie in the resized region and in the crop."""

    source_start: int
    source_stop: int
    factor: float           # scaled size / source size
    offset: float           # position of the first kept pixel in the resized region
    count: int              # kept pixels
    destination: slice      # where they go in the crop

    def kept(self, resized: int) -> slice:
        """The kept pixels of a resized region of ``resized`` pixels (the offset rounded,
        kept inside the region: it may be short by a rounding at the image's far end)."""
        start = min(max(round(self.offset), 0), resized - self.count)
        return slice(start, start + self.count)

    def nearest(self, start: int) -> np.ndarray:
        """(count,) source pixel under the centre of each kept pixel, the first being pixel
        ``start`` of the resized region."""
        centres = self.source_start + (start + np.arange(self.count) + 0.5) / self.factor
        return np.minimum(centres.astype(np.int64), self.source_stop - 1)


def _window(origin: int, crop: int, size: int, scaled: int) -> _Window:
    """:class:`_Window` of a ``crop``-long window at ``origin`` of an axis of ``size``
    source pixels scaled to ``scaled``.

    A resize by factor f maps output pixel x to source position (x + 0.5) / f - 0.5; the
    margin covers the interpolation footprint (1 source pixel bilinear, 1/f area) and the
    offset's rounding.
    """
    factor = scaled / size
    first, last = max(origin, 0), min(origin + crop, scaled)       # kept scaled pixels [first, last)
    margin = 2 + 1 / factor
    start = max(0, math.floor((first + 0.5) / factor - 0.5 - margin))
    stop = min(size, math.ceil((last - 0.5) / factor - 0.5 + margin) + 1)
    return _Window(start, stop, factor, first - start * factor, last - first, slice(first - origin, last - origin))


@dataclass(frozen=True)
class HorizontalFlip:
    """Mirror left-right with probability ``p``."""

    p: float = 0.5

    def __post_init__(self) -> None:
        if not 0 <= self.p <= 1:
            raise ValueError(f"HorizontalFlip: p must lie in [0, 1], got {self.p}")

    def __call__(self, sample: Sample, rng: np.random.Generator) -> Sample:
        if rng.random() >= self.p:
            return sample
        target = sample.target
        # Mirroring keeps every area and mirrors every box: no pass over the map needed.
        segments = tuple(dataclasses.replace(s, bbox=(target.width - s.bbox[0] - s.bbox[2], *s.bbox[1:]))
                         for s in target.segments)
        panoptic = PanopticResult(cv2.flip(target.panoptic, 1), segments)
        return Sample(cv2.flip(sample.image, 1), panoptic, sample.image_id)


@dataclass(frozen=True)
class ColorJitter:
    """Random brightness, contrast, saturation and hue, applied in a random order.

    Factors are drawn uniformly from ``[1 - x, 1 + x]`` (brightness, contrast, saturation)
    and the hue angle from ``[-hue, hue]`` turns (rotation of the chroma plane in YIQ,
    "hue-ish"). All four are affine in RGB, so they are composed into one 3x3 matrix plus
    offset and applied in a single pass; clipping to [0, 255] happens once at the end.
    The target is untouched.
    """

    brightness: float = 0.4
    contrast: float = 0.4
    saturation: float = 0.4
    hue: float = 0.1

    def __post_init__(self) -> None:
        for name in ("brightness", "contrast", "saturation"):
            if not 0 <= getattr(self, name) <= 1:
                raise ValueError(f"ColorJitter: {name} must lie in [0, 1], got {getattr(self, name)}")
        if not 0 <= self.hue <= 0.5:
            raise ValueError(f"ColorJitter: hue must lie in [0, 0.5], got {self.hue}")

    def __call__(self, sample: Sample, rng: np.random.Generator) -> Sample:
        factors = (rng.uniform(1 - self.brightness, 1 + self.brightness),
                   rng.uniform(1 - self.contrast, 1 + self.contrast),
                   rng.uniform(1 - self.saturation, 1 + self.saturation),
                   rng.uniform(-self.hue, self.hue))
        mean = np.array(cv2.mean(sample.image)[:3])
        matrix, offset = np.eye(3), np.zeros(3)
        for op in rng.permutation(4):
            step, shift = _jitter_step(int(op), factors[op], matrix @ mean + offset)
            matrix, offset = step @ matrix, step @ offset + shift
        # One pass: OpenCV applies the 3x4 affine map per pixel, rounds and saturates to
        # uint8 (fixed point with 10 fractional bits: within one grey level of float).
        image = cv2.transform(sample.image, np.hstack([matrix, offset[:, None]]))
        return Sample(image, sample.target, sample.image_id)


def _jitter_step(op: int, factor: float, mean_rgb: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """One colour operation as ``x -> step @ x + shift``.

    Args:
        op: 0 brightness, 1 contrast, 2 saturation, 3 hue.
        factor: the drawn factor (hue: angle in turns).
        mean_rgb: (3,) mean colour of the image as transformed so far (contrast pivots on
            its grey level).
    """
    if op == 0:
        return factor * np.eye(3), np.zeros(3)
    if op == 1:
        return factor * np.eye(3), np.full(3, (1 - factor) * float(_GREY @ mean_rgb))
    if op == 2:
        return factor * np.eye(3) + (1 - factor) * np.outer(np.ones(3), _GREY), np.zeros(3)
    cos, sin = math.cos(2 * math.pi * factor), math.sin(2 * math.pi * factor)
    rotation = np.array([[1, 0, 0], [0, cos, -sin], [0, sin, cos]])
    return _YIQ2RGB @ rotation @ _RGB2YIQ, np.zeros(3)


class TransformedDataset(Dataset):
    """``dataset[index]`` transformed with the generator ``sample_rng(seed, epoch, index)``.

    Call :meth:`set_epoch` before each epoch (``build_dataloader``'s loader does it), or
    index with ``(epoch, index)``: persistent DataLoader workers keep the copy they
    started with, so ``build_dataloader`` sends the epoch with every index.

    Args:
        dataset: any map-style dataset of :class:`Sample`.
        transform: a :class:`Transform` (e.g. a :class:`Compose`).
        seed: run seed, >= 0.
    """

    def __init__(self, dataset: Dataset, transform: Transform, *, seed: int = 0):
        if seed < 0:
            raise ValueError(f"seed must be >= 0, got {seed}")
        self.dataset, self.transform, self.seed, self.epoch = dataset, transform, seed, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, key: int | tuple[int, int]) -> Sample:
        epoch, index = key if isinstance(key, tuple) else (self.epoch, key)
        return self.transform(self.dataset[index], sample_rng(self.seed, epoch, index))


def standard_train_transform(*, crop: Sequence[int], min_scale: float = 0.5, max_scale: float = 2.0,
                             jitter: bool = True) -> Compose:
    """The usual training pipeline: random scale, crop to ``crop`` (H, W), flip, jitter."""
    steps: list = [RandomScaleCrop(min_scale, max_scale, int(crop[0]), int(crop[1])), HorizontalFlip(0.5)]
    if jitter:
        steps.append(ColorJitter())
    return Compose(tuple(steps))
