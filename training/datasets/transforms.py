"""Training augmentations on :class:`Sample`: scale, crop/pad, flip, colour jitter.

Every transform is a small frozen dataclass called as ``transform(sample, rng) -> Sample``
with an explicit ``np.random.Generator``; none touches a global random state. Use
:func:`sample_rng` (or :class:`TransformedDataset`, which does it for you) to derive one
generator per sample from ``(seed, epoch, index)``: the augmentation of a sample then does
not depend on the number of DataLoader workers, their scheduling or on resuming mid-run.

Images and targets stay consistent: every geometric transform applies the same change to
the image and the panoptic map and rebuilds the target with
:meth:`PanopticResult.with_panoptic`, which recomputes areas and boxes and drops the
segments that vanished (categories, crowd flags and scores are kept).

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

import math
from dataclasses import dataclass
from typing import Protocol, Sequence

import cv2
import numpy as np
import torch
from torch.utils.data import Dataset

from panoptic_ros.training.datasets.sample import Sample
from panoptic_ros.types import VOID

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
        h, w = sample.image.shape[:2]
        return resize_sample(sample, max(1, round(h * scale)), max(1, round(w * scale)))


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
        # Window origin in image coordinates; negative where the image is smaller (padding).
        y0 = int(rng.integers(min(0, h - self.height), max(0, h - self.height) + 1))
        x0 = int(rng.integers(min(0, w - self.width), max(0, w - self.width) + 1))
        sy0, sy1 = max(y0, 0), min(y0 + self.height, h)
        sx0, sx1 = max(x0, 0), min(x0 + self.width, w)
        image = np.empty((self.height, self.width, 3), np.uint8)
        image[:] = np.asarray(self.fill, np.uint8)
        panoptic = np.full((self.height, self.width), VOID, np.int32)
        dst = (slice(sy0 - y0, sy1 - y0), slice(sx0 - x0, sx1 - x0))
        image[dst] = sample.image[sy0:sy1, sx0:sx1]
        panoptic[dst] = sample.target.panoptic[sy0:sy1, sx0:sx1]
        return Sample(image, sample.target.with_panoptic(panoptic), sample.image_id)


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
        image = np.ascontiguousarray(sample.image[:, ::-1])
        panoptic = np.ascontiguousarray(sample.target.panoptic[:, ::-1])
        return Sample(image, sample.target.with_panoptic(panoptic), sample.image_id)


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
        mean = sample.image.reshape(-1, 3).mean(axis=0)
        matrix, offset = np.eye(3), np.zeros(3)
        for op in rng.permutation(4):
            step, shift = _jitter_step(int(op), factors[op], matrix @ mean + offset)
            matrix, offset = step @ matrix, step @ offset + shift
        pixels = sample.image.reshape(-1, 3).astype(np.float32) @ matrix.T.astype(np.float32)
        pixels += offset.astype(np.float32)
        image = np.clip(np.rint(pixels), 0, 255).astype(np.uint8).reshape(sample.image.shape)
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

    Call :meth:`set_epoch` before each epoch (``build_dataloader``'s loader does it); with
    non-persistent DataLoader workers every epoch's workers get a copy with the new epoch.

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

    def __getitem__(self, index: int) -> Sample:
        return self.transform(self.dataset[index], sample_rng(self.seed, self.epoch, index))


def standard_train_transform(*, crop: Sequence[int], min_scale: float = 0.5, max_scale: float = 2.0,
                             jitter: bool = True) -> Compose:
    """The usual training pipeline: random scale, crop to ``crop`` (H, W), flip, jitter."""
    steps: list = [RandomScale(min_scale, max_scale), RandomCrop(int(crop[0]), int(crop[1])), HorizontalFlip(0.5)]
    if jitter:
        steps.append(ColorJitter())
    return Compose(tuple(steps))
