"""Discriminative loss: host reads and CPU time, fixed-shape slots against the unique-based
version it replaced (issue 20: no host read in a training step).

On the PanoNet targets of ``--batch`` SynthStreet training crops (``--crop``, stream 1) at
the three guidance strides, with random ``--dims``-dimensional embeddings, it prints per
version the host reads (``panoptic_ros.sync_count``) and the median CPU time of forward +
backward of the three strides' terms over ``--repeat`` runs, and the largest difference
of the terms. The old version is read from git (``--base``, default ``main``).

    .venv/bin/python bench/discriminative_loss.py [--batch 4] [--crop 256x512] [--dims 8] [--repeat 20]
"""
from __future__ import annotations

import argparse
import importlib.util
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from panoptic_ros.models.icnet import GUIDANCE_STRIDES
from panoptic_ros.precision import machine_name
from panoptic_ros.sync_count import count_torch
from panoptic_ros.synthstreet.scene import generate_scene
from panoptic_ros.training.datasets.loader import PanopticCollate
from panoptic_ros.training.losses.discriminative import discriminative_loss

ROOT = Path(__file__).resolve().parents[1]


def base_version(ref: str):
    """``discriminative_loss`` as of git ``ref``."""
    source = subprocess.run(["git", "-C", str(ROOT), "show", f"{ref}:training/losses/discriminative.py"],
                            check=True, capture_output=True, text=True).stdout
    path = Path(tempfile.mkdtemp()) / "discriminative_base.py"
    path.write_text(source)
    spec = importlib.util.spec_from_file_location("discriminative_base", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.discriminative_loss


def run(loss, embeddings: dict, targets: dict, **kwargs) -> dict[str, torch.Tensor]:
    """Forward and backward of the summed terms of every stride; the terms per stride."""
    terms = {}
    for stride in GUIDANCE_STRIDES:
        for name, value in loss(embeddings[stride], targets[f"instance_{stride}"], **kwargs).items():
            terms[f"{name}_{stride}"] = value
    sum(terms.values()).backward()
    return {k: v.detach() for k, v in terms.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--crop", default="256x512", help="HxW")
    parser.add_argument("--dims", type=int, default=8)
    parser.add_argument("--repeat", type=int, default=20)
    parser.add_argument("--base", default="main", help="git ref of the version to compare with")
    args = parser.parse_args()
    torch.set_num_threads(1)
    height, width = map(int, args.crop.split("x"))
    batch = PanopticCollate(targets="panonet", label_space="cityscapes")(
        [generate_scene(1, i, height=height, width=width) for i in range(args.batch)])
    targets = batch.targets
    torch.manual_seed(0)
    embeddings = {s: torch.randn(args.batch, args.dims, *targets[f"instance_{s}"].shape[1:], requires_grad=True)
                  for s in GUIDANCE_STRIDES}
    versions = {"slots (this tree)": (discriminative_loss, {"slots": targets["instance_slots"]}),
                f"unique ({args.base})": (base_version(args.base), {})}
    print(f"{machine_name()}, 1 thread; batch {args.batch} x {height}x{width}, embedding {args.dims}, "
          f"{targets['instance_slots'] - 1} instance numbers")
    results = {}
    for name, (loss, kwargs) in versions.items():
        with count_torch() as counts:
            results[name] = run(loss, embeddings, targets, **kwargs)
        times = []
        for _ in range(args.repeat):
            start = time.perf_counter()
            run(loss, embeddings, targets, **kwargs)
            times.append(time.perf_counter() - start)
        print(f"  {name:<22} host reads {counts.host_reads:3d}  forward + backward {statistics.median(times) * 1e3:7.1f} ms")
    a, b = results.values()
    print(f"largest difference of the terms: {max(float((a[k] - b[k]).abs()) for k in a):.2e}")


if __name__ == "__main__":
    sys.exit(main())
