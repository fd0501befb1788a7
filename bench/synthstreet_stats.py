"""SynthStreet statistics and generation speed on one core.

Draws ``--count`` scenes (default 200) at ``--size`` (default 512x1024) pinned to one CPU
core and prints: instances per image (min/mean/max), the share of instances with an
identical twin and of instances cut into several pieces, crowd and VOID shares, per-class
pixel share and share of images containing the class, and the generation speed in
images/s (target >= 20 on one core). The speed is given from wall time and from the
process's CPU time; the second is what the generator costs when the machine is shared.
It also fits a colour-only per-pixel classifier (RGB -> class, gradient boosting) on the
first 70% of the scenes and scores it on the rest: the scenes are meant to need shape and
context, so this should stay far from what a network reaches.
Exits 1 if one of the label space's classes never occurs.

Usage: .venv/bin/python bench/synthstreet_stats.py [--count 200] [--size 512x1024] [--seed 0] [--mirror]
"""
from __future__ import annotations

import argparse
import gc
import os
import sys
import time

import cv2
import numpy as np

from panoptic_ros.cli_common import parse_size
from panoptic_ros.labels import CITYSCAPES
from panoptic_ros.synthstreet.scene import generate_scene
from panoptic_ros.synthstreet.stats import SynthStats

TARGET_IMAGES_PER_S = 20.0


def colour_only_baseline(pixels: list[tuple[np.ndarray, np.ndarray]], num_classes: int) -> str:
    """Pixel accuracy and mIoU of an RGB-only classifier trained on 70% of the scenes."""
    from sklearn.ensemble import HistGradientBoostingClassifier

    cut = int(len(pixels) * 0.7)
    x_train = np.concatenate([x for x, _ in pixels[:cut]])
    y_train = np.concatenate([y for _, y in pixels[:cut]])
    x_test = np.concatenate([x for x, _ in pixels[cut:]])
    y_test = np.concatenate([y for _, y in pixels[cut:]])
    pred = HistGradientBoostingClassifier(max_iter=60, random_state=0).fit(x_train, y_train).predict(x_test)
    ious = []
    for c in range(num_classes):
        union = np.count_nonzero((pred == c) | (y_test == c))
        if union:
            ious.append(np.count_nonzero((pred == c) & (y_test == c)) / union)
    majority = np.bincount(y_test).max() / len(y_test)
    return (f"colour-only pixel classifier on held-out scenes: accuracy {np.mean(pred == y_test):.1%} "
            f"(most frequent class {majority:.1%}), mIoU {np.mean(ious):.1%}")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--count", type=int, default=200)
    p.add_argument("--size", type=parse_size, default=(512, 1024))
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--mirror", action="store_true")
    p.add_argument("--cpu", type=int, default=None, help="core to pin to (default: the first allowed)")
    p.add_argument("--no-baseline", action="store_true", help="skip the colour-only classifier")
    args = p.parse_args()
    cpu = args.cpu if args.cpu is not None else min(os.sched_getaffinity(0))
    os.sched_setaffinity(0, {cpu})
    cv2.setNumThreads(1)
    height, width = args.size
    generate_scene(args.seed, 10 ** 6, height=height, width=width)   # build the noise bank once
    gc.collect()      # the first full collection after importing torch would land in the timing
    stats = SynthStats(CITYSCAPES)
    wall = cpu_time = 0.0
    pixels, pick = [], np.random.default_rng(0)
    for index in range(args.count):
        w0, c0 = time.perf_counter(), time.process_time()
        sample = generate_scene(args.seed, index, height=height, width=width, mirror=args.mirror)
        wall += time.perf_counter() - w0
        cpu_time += time.process_time() - c0
        stats.add(sample)
        sem = sample.target.semantic_map(CITYSCAPES).ravel()
        keep = pick.choice(np.flatnonzero(sem != 255), 1000)
        pixels.append((sample.image.reshape(-1, 3)[keep], sem[keep]))
    print(f"SynthStreet {height}x{width}, seed {args.seed}{', mirrored' if args.mirror else ''}, "
          f"pinned to core {cpu}; load average {os.getloadavg()[0]:.1f}")
    print("\n".join(stats.report()))
    wall_rate, cpu_rate = args.count / wall, args.count / cpu_time
    print(f"speed: {wall_rate:.1f} images/s (wall), {cpu_rate:.1f} images/s (CPU time); "
          f"target {TARGET_IMAGES_PER_S:.0f}: ratio {wall_rate / TARGET_IMAGES_PER_S:.2f} (wall), "
          f"{cpu_rate / TARGET_IMAGES_PER_S:.2f} (CPU)")
    if not args.no_baseline and args.count >= 10:
        print(colour_only_baseline(pixels, len(CITYSCAPES)))
    missing = stats.missing_classes()
    if missing:
        print(f"MISSING classes: {', '.join(missing)}")
        return 1
    print(f"all {len(CITYSCAPES)} classes occur")
    return 0


if __name__ == "__main__":
    sys.exit(main())
