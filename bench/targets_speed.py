"""How long building training targets takes per image (PanoNet, CIAE) on street-like scenes.

Scenes: Cityscapes label space, stuff bands (sky, building, vegetation, sidewalk, road)
plus ``--things`` random car/person/rider/bicycle rectangles and one crowd region, at
512x1024 and 1024x2048. Prints ms per image for the target builders alone and for the
full collate (padding check, tensor conversion, stacking) per image, and the share of a
reference training step (``--step-ms``) that building the targets would take.

    .venv/bin/python bench/targets_speed.py [--repeat 20] [--things 40] [--step-ms 250]
"""
from __future__ import annotations

import argparse
import time

import numpy as np

from panoptic_ros.labels import CITYSCAPES
from panoptic_ros.sample import Sample
from panoptic_ros.training.datasets.loader import PanopticCollate
from panoptic_ros.training.targets import ciae_targets, panonet_targets
from panoptic_ros.types import PanopticResult

STUFF_BANDS = (23, 11, 21, 8, 7)          # sky, building, vegetation, sidewalk, road (label ids)
THING_LABELS = (26, 24, 25, 33)           # car, person, rider, bicycle


def street_scene(height: int, width: int, things: int, seed: int) -> PanopticResult:
    """A random street-like panoptic map with ``things`` instances and one crowd region."""
    rng = np.random.default_rng(seed)
    pan = np.empty((height, width), np.int32)
    edges = np.linspace(0, height, len(STUFF_BANDS) + 1).astype(int)
    for label, y0, y1 in zip(STUFF_BANDS, edges[:-1], edges[1:]):
        pan[y0:y1] = label * 1000
    counts: dict[int, int] = {}
    for _ in range(things):
        label = int(rng.choice(THING_LABELS))
        counts[label] = counts.get(label, 0) + 1
        h = int(rng.integers(height // 40, height // 3))
        w = int(rng.integers(width // 60, width // 5))
        y, x = int(rng.integers(0, height - h)), int(rng.integers(0, width - w))
        pan[y:y + h, x:x + w] = label * 1000 + counts[label]
    pan[height - height // 8:, : width // 10] = 24000            # a crowd of persons
    pan[: height // 50, :] = 0                                 # VOID strip (e.g. ego vehicle)
    return PanopticResult.from_panoptic_map(pan, CITYSCAPES)


def time_ms(fn, repeat: int) -> float:
    fn()                                                       # warm caches and lookup tables
    start = time.perf_counter()
    for _ in range(repeat):
        fn()
    return (time.perf_counter() - start) * 1000 / repeat


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=20)
    parser.add_argument("--things", type=int, default=40)
    parser.add_argument("--step-ms", type=float, default=250.0,
                        help="reference training step time per image to compare with (ms)")
    args = parser.parse_args()
    print(f"targets per image, {args.things} thing instances + crowd, {args.repeat} repeats")
    print(f"{'size':>10} {'model':>8} {'targets ms':>11} {'collate ms':>11} {'% of step*':>10}")
    for height, width in ((512, 1024), (1024, 2048)):
        target = street_scene(height, width, args.things, seed=0)
        image = np.zeros((height, width, 3), np.uint8)
        samples = [Sample(image, target, "bench")] * 4
        for kind, build in (("panonet", panonet_targets), ("ciae", ciae_targets)):
            ms = time_ms(lambda: build(target, CITYSCAPES), args.repeat)
            collate = PanopticCollate(targets=kind, label_space="cityscapes")
            collate_ms = time_ms(lambda: collate(samples), max(1, args.repeat // 4)) / len(samples)
            print(f"{height}x{width:<5} {kind:>8} {ms:11.2f} {collate_ms:11.2f} {100 * ms / args.step_ms:9.1f}%")
    print(f"* targets ms as a share of a {args.step_ms:g} ms per-image training step (--step-ms, a reference "
          "value, not measured here)")


if __name__ == "__main__":
    main()
