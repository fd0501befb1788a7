"""Noise textures for SynthStreet: a cached bank of smooth random fields, cropped per use.

Generating fresh noise per image would cost more than drawing the whole scene, so each
process builds, once per image size, a bank of three zero-mean unit-variance fields
(fine grain, mid-size blobs, coarse patches) somewhat larger than the image; every layer of
every scene takes a crop at a random offset. The bank comes from a fixed seed and from
low-resolution grids that are only *upsampled* to the image size, so a crop at the same
relative offset shows the same pattern at every resolution and the same scene looks the
same at 512x1024 and at 1024x2048.
"""
from __future__ import annotations

from functools import lru_cache

import cv2
import numpy as np

# Bank = image size times this factor; crops start anywhere in the extra margin.
BANK_FACTOR = 1.5
# Grid cells per image height of each field: fine (about 1-2 px at 512 rows), mid, coarse.
_GRID_ROWS = (384, 40, 7)
_BANK_SEED = 20240517

NUM_FIELDS = len(_GRID_ROWS)


@lru_cache(maxsize=4)
def noise_bank(height: int, width: int) -> np.ndarray:
    """(NUM_FIELDS, BANK_FACTOR*H, BANK_FACTOR*W) float32 fields, mean 0, std 1.

    Read-only and shared by every scene of this size in this process.
    """
    rng = np.random.default_rng(_BANK_SEED)
    bank_h, bank_w = int(np.ceil(height * BANK_FACTOR)), int(np.ceil(width * BANK_FACTOR))
    fields = []
    for rows in _GRID_ROWS:
        grid_h = int(rows * BANK_FACTOR) + 1
        grid_w = int(rows * BANK_FACTOR * width / height) + 1
        grid = rng.standard_normal((grid_h, grid_w)).astype(np.float32)
        field = cv2.resize(grid, (bank_w, bank_h), interpolation=cv2.INTER_CUBIC)
        field -= field.mean()
        field /= field.std() + 1e-6
        fields.append(field)
    bank = np.stack(fields)
    bank.setflags(write=False)
    return bank


def noise_crop(bank: np.ndarray, height: int, width: int, offset: tuple[float, float]) -> np.ndarray:
    """A (NUM_FIELDS, height, width) view of the bank.

    Args:
        bank: from :func:`noise_bank`.
        height, width: crop size in pixels; larger than the bank wraps around (tiles).
        offset: (fy, fx) in [0, 1): where the crop starts within the free margin.
    """
    _, bank_h, bank_w = bank.shape
    if height > bank_h or width > bank_w:
        reps = (1, -(-height // bank_h), -(-width // bank_w))
        return np.tile(bank, reps)[:, :height, :width]
    y0 = int(offset[0] * (bank_h - height))
    x0 = int(offset[1] * (bank_w - width))
    return bank[:, y0:y0 + height, x0:x0 + width]
