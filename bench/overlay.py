"""Milliseconds per ``~/overlay`` message: what the node spends on the overlay of one frame.

Runs the shipped PanoNet weights on SynthStreet frames (seed 777, 512x1024 by default),
then times :func:`panoptic_ros.outputs.overlay_image` on each frame's result as the node
calls it (the result at the image's size and at the model's, ``low_res``), and its steps:
the colour lookup (:func:`panoptic_ros.viz.colorize_panoptic`) and the blend with outlines
(:func:`panoptic_ros.viz.panoptic_overlay`). Medians over ``--repeat`` rounds of every
frame, the steps taking turns on each frame. Figures, never assertions: run it before and after a change, on one machine.

Usage: .venv/bin/python bench/overlay.py [--frames 8] [--repeat 20] [--size 512x1024] [--threads 2]
"""
from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import cv2
import torch

from panoptic_ros import outputs
from panoptic_ros.cli_common import parse_size
from panoptic_ros.inference.predictor import Predictor
from panoptic_ros.precision import machine_name
from panoptic_ros.serialized.cdr import Header
from panoptic_ros.synthstreet.scene import generate_scene
from panoptic_ros.viz import colorize_panoptic, panoptic_overlay

ROOT = Path(__file__).resolve().parents[1]
SEED = 777


def frames(count: int, size: tuple[int, int], threads: int) -> tuple[list[tuple], object, tuple[int, int]]:
    """(rgb, result, low_res) of the shipped PanoNet on ``count`` SynthStreet frames, its label
    space and its input size."""
    predictor = Predictor.from_checkpoint(ROOT / "weights" / "panonet_synthstreet", device="cpu", backend="torch",
                                          num_threads=threads)
    out = []
    for index in range(count):
        rgb = generate_scene(SEED, index, height=size[0], width=size[1]).image
        result = predictor.predict(rgb)
        out.append((rgb, result, predictor.last_model_result))
    return out, predictor.label_space, predictor.input_size


def timed(steps: dict, data: list[tuple], repeat: int) -> dict[str, float]:
    """Step name -> median milliseconds of ``step(rgb, result, low_res)`` over ``repeat``
    rounds of ``data``; the steps take turns on each frame, so load changes on a shared
    machine hit all of them alike."""
    samples: dict[str, list[float]] = {name: [] for name in steps}
    for _ in range(repeat):
        for item in data:
            for name, step in steps.items():
                start = time.perf_counter()
                step(*item)
                samples[name].append((time.perf_counter() - start) * 1e3)
    return {name: statistics.median(values) for name, values in samples.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=8)
    parser.add_argument("--repeat", type=int, default=20)
    parser.add_argument("--size", type=parse_size, default=(512, 1024), help="image size HxW (default 512x1024)")
    parser.add_argument("--threads", type=int, default=2, help="torch and OpenCV threads")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    cv2.setNumThreads(args.threads)
    data, space, model_size = frames(args.frames, args.size, args.threads)
    header = Header()
    steps = {
        "overlay_image, low_res (the node's call)":
            lambda rgb, r, low: outputs.overlay_image(rgb, r, space, header, low_res=low),
        "overlay_image, full-size result only": lambda rgb, r, low: outputs.overlay_image(rgb, r, space, header),
        "  colour lookup (colorize_panoptic), full size": lambda rgb, r, low: colorize_panoptic(r, space),
        "  blend + outlines (panoptic_overlay), full size": lambda rgb, r, low: panoptic_overlay(rgb, r, space),
    }
    print(f"{machine_name()}; {args.threads} threads; SynthStreet seed {SEED}, image {args.size[0]}x{args.size[1]}, "
          f"model {model_size[0]}x{model_size[1]}; {args.frames} frames x {args.repeat} rounds, median ms")
    for name, ms in timed(steps, data, args.repeat).items():
        print(f"{name:50s} {ms:7.2f} ms")


if __name__ == "__main__":
    main()
