"""SynthStreet statistics and generation speed on one core.

Draws ``--count`` scenes (default 200) at ``--size`` (default 512x1024) pinned to one CPU
core and prints: instances per image (min/mean/max), the share of instances with an
identical twin and of instances cut into several pieces, crowd and VOID shares, per-class
pixel share and share of images containing the class, and the generation speed in
images/s (target >= 20 on one core). The speed is given from wall time and from the
process's CPU time; the second is what the generator costs when the machine is shared.
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

from panoptic_ros.labels import CITYSCAPES
from panoptic_ros.training.datasets.synth_stats import SynthStats
from panoptic_ros.training.datasets.synthstreet import generate_scene
from panoptic_ros.training.synth_cli import parse_size

TARGET_IMAGES_PER_S = 20.0


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--count", type=int, default=200)
    p.add_argument("--size", type=parse_size, default=(512, 1024))
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--mirror", action="store_true")
    p.add_argument("--cpu", type=int, default=None, help="core to pin to (default: the first allowed)")
    args = p.parse_args()
    cpu = args.cpu if args.cpu is not None else min(os.sched_getaffinity(0))
    os.sched_setaffinity(0, {cpu})
    cv2.setNumThreads(1)
    height, width = args.size
    generate_scene(args.seed, 10 ** 6, height=height, width=width)   # build the noise bank once
    gc.collect()      # the first full collection after importing torch would land in the timing
    stats = SynthStats(CITYSCAPES)
    wall = cpu_time = 0.0
    for index in range(args.count):
        w0, c0 = time.perf_counter(), time.process_time()
        sample = generate_scene(args.seed, index, height=height, width=width, mirror=args.mirror)
        wall += time.perf_counter() - w0
        cpu_time += time.process_time() - c0
        stats.add(sample)
    print(f"SynthStreet {height}x{width}, seed {args.seed}{', mirrored' if args.mirror else ''}, "
          f"pinned to core {cpu}; load average {os.getloadavg()[0]:.1f}")
    print("\n".join(stats.report()))
    wall_rate, cpu_rate = args.count / wall, args.count / cpu_time
    print(f"speed: {wall_rate:.1f} images/s (wall), {cpu_rate:.1f} images/s (CPU time); "
          f"target {TARGET_IMAGES_PER_S:.0f}: ratio {wall_rate / TARGET_IMAGES_PER_S:.2f} (wall), "
          f"{cpu_rate / TARGET_IMAGES_PER_S:.2f} (CPU)")
    missing = stats.missing_classes()
    if missing:
        print(f"MISSING classes: {', '.join(missing)}")
        return 1
    print(f"all {len(CITYSCAPES)} classes occur")
    return 0


if __name__ == "__main__":
    sys.exit(main())
