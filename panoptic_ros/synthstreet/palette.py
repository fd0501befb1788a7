"""Per-scene colours for SynthStreet.

Colour ranges of different classes deliberately overlap (grey road, grey pavement, grey
walls, grey cars, grey overcast sky; green cars, green fences) and every scene gets its
own white balance and exposure, so a network has to use texture, shape and context.
"""
from __future__ import annotations

import numpy as np

# Base colours (RGB) that classes draw from; each draw is then jittered.
GREYS = ((70, 70, 72), (95, 94, 96), (120, 118, 115), (150, 150, 148), (175, 172, 168))
FACADES = ((200, 190, 170), (170, 160, 150), (150, 120, 100), (180, 110, 90), (120, 120, 125),
           (210, 200, 190), (190, 170, 130), (140, 150, 160), (100, 90, 85), (225, 215, 200))
CAR_PAINTS = ((200, 200, 205), (40, 40, 45), (120, 122, 125), (150, 20, 25), (30, 50, 110),
              (235, 235, 235), (60, 90, 60), (170, 150, 110), (80, 80, 90), (20, 100, 150),
              (210, 180, 40), (100, 30, 40))
CLOTHES = ((30, 30, 35), (60, 60, 70), (40, 50, 90), (150, 30, 30), (200, 200, 200),
           (110, 90, 60), (60, 100, 60), (170, 150, 120), (90, 40, 100), (220, 120, 40))
SKIN = ((230, 190, 160), (200, 150, 120), (140, 100, 70), (90, 60, 40))
FOLIAGE = ((70, 100, 40), (50, 80, 35), (90, 110, 50), (60, 90, 60), (110, 120, 60))
TERRAIN = ((110, 140, 60), (130, 140, 80), (140, 120, 80), (100, 120, 70), (150, 150, 100))
SKIES = ((110, 160, 220), (150, 185, 225), (190, 200, 210), (170, 175, 180), (215, 215, 220))


def pick(rng: np.random.Generator, choices, jitter: float = 12.0) -> np.ndarray:
    """One of ``choices`` plus independent per-channel jitter, as float32 RGB."""
    base = choices[int(rng.integers(len(choices)))]
    noise = rng.normal(0.0, jitter, 3)
    return np.array([min(max(b + n, 0.0), 255.0) for b, n in zip(base, noise.tolist())], np.float32)


def choose(rng: np.random.Generator, options, weights=None):
    """One of ``options``, uniformly or by relative ``weights`` (cheaper than ``rng.choice``
    for the few-element lists drawn many times per scene)."""
    if weights is None:
        return options[int(rng.integers(len(options)))]
    u = rng.random() * sum(weights)
    for option, w in zip(options, weights):
        u -= w
        if u < 0:
            return option
    return options[-1]


def scene_light(rng: np.random.Generator) -> np.ndarray:
    """(3,) RGB gain of a scene: exposure times a mild white-balance shift."""
    exposure = rng.uniform(0.75, 1.15)
    balance = 1.0 + rng.normal(0.0, 0.06, 3)
    return (exposure * balance).astype(np.float32)
