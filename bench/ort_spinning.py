"""CPU backends end to end (model + post-processing), ONNX Runtime spinning or not.

Which CPU backend is fastest end to end, and does ONNX Runtime's spin-waiting slow the
post-processing that follows the model?

Runs the shipped PanoNet and CIAE weights on SynthStreet frames (seed 777, 512x1024, CPU)
through :class:`Predictor` with the torch backend (fp32 and bf16 autocast) and with ONNX
Runtime (fp32 with its idle threads spinning, ONNX Runtime's own default
``onnx_spin_wait: true``, or sleeping, this package's default; and the int8 QDQ graph),
and prints the median model and post-processing milliseconds of ``Predictor.last_timings``
per variant, with ratios against the first variant, and the CPU time all the process's
threads spent per frame: threads that spin-wait burn CPU while the post-processing runs.
The model + post-processing column is what ``backend: auto`` is chosen by
(:mod:`panoptic_ros.inference.auto`).

Variants run in interleaved blocks of ``--block`` frames (the first frame of a block is not
counted: the variant before it may still hold the cores), so load changes on a shared
machine hit every variant alike; the figures are medians.

Usage: .venv/bin/python bench/ort_spinning.py [--frames 24] [--threads 2] [--models panonet ciae]
       [--variants torch "ort, no spinning" ...]
"""
from __future__ import annotations

import argparse
import statistics
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from panoptic_ros.inference.predictor import Predictor
from panoptic_ros.precision import machine_name

ROOT = Path(__file__).resolve().parents[1]
WEIGHTS = {"panonet": ROOT / "weights" / "panonet_synthstreet", "ciae": ROOT / "weights" / "ciae_synthstreet"}
SEED, HEIGHT, WIDTH = 777, 512, 1024
# variant -> Predictor overrides
VARIANTS = {
    "ort, spinning": {"backend": "onnxruntime", "onnx_spin_wait": True},
    "ort, no spinning": {"backend": "onnxruntime", "onnx_spin_wait": False},
    "ort int8": {"backend": "onnxruntime", "precision": "int8", "onnx_spin_wait": False},
    "torch": {"backend": "torch"},
    "torch bf16": {"backend": "torch", "precision": "bf16"},
}
DEFAULT_VARIANTS = ("ort, spinning", "ort, no spinning", "torch")


@dataclass
class Samples:
    """Milliseconds per counted frame of one variant."""

    model: list[float] = field(default_factory=list)
    post: list[float] = field(default_factory=list)
    total: list[float] = field(default_factory=list)
    cpu: list[float] = field(default_factory=list)

    def add(self, predictor: Predictor, cpu_ms: float) -> None:
        t = predictor.last_timings
        self.model.append(t.model_ms)
        self.post.append(t.postprocess_ms)
        self.total.append(t.total_ms)
        self.cpu.append(cpu_ms)

    def medians(self) -> tuple[float, float, float, float]:
        return tuple(statistics.median(v) for v in (self.model, self.post, self.total, self.cpu))


def scenes(count: int) -> list[np.ndarray]:
    """``count`` SynthStreet RGB frames (H, W, 3) uint8."""
    from panoptic_ros.synthstreet.scene import generate_scene

    return [generate_scene(SEED, i, height=HEIGHT, width=WIDTH).image for i in range(count)]


def measure(kind: str, frames: list[np.ndarray], *, variants: list[str], counted: int, threads: int, block: int,
            cache_dir: Path | None) -> dict:
    """Variant -> :class:`Samples` of about ``counted`` frames for one model, variants
    interleaved block by block (frames taken in turn from ``frames``)."""
    predictors = {name: Predictor.from_checkpoint(WEIGHTS[kind], device="cpu", num_threads=threads,
                                                  onnx_cache_dir=cache_dir, **VARIANTS[name])
                  for name in variants}
    samples = {name: Samples() for name in variants}
    for start in range(0, counted, block - 1):
        for name, predictor in predictors.items():
            for i in range(block):
                cpu = time.process_time()
                predictor.predict(frames[(start + i) % len(frames)])
                if i:
                    samples[name].add(predictor, (time.process_time() - cpu) * 1e3)
    for predictor in predictors.values():
        predictor.close()
    return samples


def report(kind: str, samples: dict) -> None:
    first = next(iter(samples))
    base_model, base_post, base_total, base_cpu = samples[first].medians()
    print(f"\n{kind}: median ms per frame ({len(samples[first].model)} frames per variant); cpu = CPU ms of "
          f"all the process's threads per frame")
    print(f"{'variant':18s} {'model':>7s} {'post':>7s} {'model+post':>10s} {'cpu':>7s}   ratios to {first!r}")
    for name, s in samples.items():
        model, post, total, cpu = s.medians()
        print(f"{name:18s} {model:7.1f} {post:7.1f} {total:10.1f} {cpu:7.1f}   model x{model / base_model:.2f}  "
              f"post x{post / base_post:.2f}  total x{total / base_total:.2f}  cpu x{cpu / base_cpu:.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=24, help="frames counted per variant (about)")
    parser.add_argument("--block", type=int, default=4, help="frames per block, the first one not counted")
    parser.add_argument("--threads", type=int, default=2, help="torch and ONNX Runtime intra-op threads")
    parser.add_argument("--models", nargs="+", default=list(WEIGHTS), choices=list(WEIGHTS))
    parser.add_argument("--variants", nargs="+", default=list(DEFAULT_VARIANTS), choices=list(VARIANTS),
                        help="what to compare (the first is the ratios' base)")
    parser.add_argument("--cache-dir", type=Path, help="ONNX export cache (default: the predictor's)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    frames = scenes(8)
    print(f"{machine_name()}; torch {torch.get_num_threads()} threads, ONNX Runtime intra-op {args.threads}; "
          f"SynthStreet seed {SEED}, {HEIGHT}x{WIDTH}; blocks of {args.block} frames interleaved")
    for kind in args.models:
        report(kind, measure(kind, frames, variants=args.variants, counted=args.frames, threads=args.threads,
                             block=args.block,
                             cache_dir=args.cache_dir))


if __name__ == "__main__":
    main()
