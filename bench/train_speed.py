"""Training images/s and the step's breakdown, per model, precision and memory format.

For the shipped demo recipes (PanoNet 0.40 M, CIAE 1.37 M), the PanoNet "half" recipe
(3.37 M) and the paper configurations (``PanoNetConfig()``, 13.4 M; ``CIAEConfig()``,
R50-FPN) it times one optimizer step at a time, synchronously (no loader workers), so
each part is measured on its own:

- data: ``batch`` dataset items (SynthStreet scene cache read + augmentation),
- targets: the collate (padding, tensors, target building),
- forward (under autocast in bf16), loss (outputs cast to float32, the kind's loss),
- backward, optimizer (gradient clipping + AdamW step + zero_grad).

Each configuration runs in fp32 and in bf16 autocast, with contiguous and channels_last
tensors; warm-up steps are excluded and every part is the median over ``--steps``. A
step's time is the sum of the part medians; images/s = batch / step. The pipeline is the
training one: ``SynthStreet`` scenes in their disk cache (drawn once before timing, in
``--cache-dir`` or a temporary folder), ``TransformedDataset`` with
``standard_train_transform``, ``PanopticCollate``, ``training_kind(kind).loss_fn``.
``--threads`` (default 1, what the recipes' ``runtime.threads`` set) applies to torch and
OpenCV alike: a training run's loader worker runs OpenCV on one thread.

    .venv/bin/python bench/train_speed.py [--steps 5] [--warmup 2] [--threads 1]
        [--models panonet-demo,ciae-paper] [--cache-dir DIR] [--json-out FILE] [--quick]

``--quick`` swaps every model for a tiny one and uses 64x128 scenes and crops (a smoke
run for the tests, no figures to quote).
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import cv2
import torch

from panoptic_ros.config import read_yaml
from panoptic_ros.kinds import build_model
from panoptic_ros.precision import cpu_flags, machine_name
from panoptic_ros.tiny_models import TINY_MODELS
from panoptic_ros.training.config import TrainConfig, train_config_from_dict
from panoptic_ros.training.data import synthstreet
from panoptic_ros.training.datasets.loader import PanopticCollate
from panoptic_ros.training.datasets.transforms import TransformedDataset, standard_train_transform
from panoptic_ros.training.engine import float_images, to_float32
from panoptic_ros.training.kinds import training_kind
from panoptic_ros.training.optim import build_optimizer, clip_gradients

CONFIGS = Path(__file__).resolve().parent.parent / "training" / "configs"
PARTS = ("data", "targets", "forward", "loss", "backward", "optimizer")
# name -> (recipe, model section replacing the recipe's (None: keep it), batch size (None: the recipe's))
MODELS = {
    "panonet-demo": ("panonet_synthstreet_balanced.yaml", None, None),
    "ciae-demo": ("ciae_synthstreet.yaml", None, None),
    "panonet-half": ("panonet_half.yaml", None, None),
    "panonet-paper": ("panonet_half.yaml", {"kind": "panonet"}, 2),   # PanoNetConfig(): 13.4 M
    "ciae-paper": ("ciae_synthstreet.yaml", {"kind": "ciae"}, 2),     # CIAEConfig(): R50-FPN
}
PAPER_MODELS = ("panonet-paper", "ciae-paper")
DATA_TARGET_SHARE = 0.15


def recipe(name: str, quick: bool) -> TrainConfig:
    """The training config that ``name`` benchmarks (``quick``: tiny model, 64x128)."""
    file, model, batch = MODELS[name]
    data = read_yaml(CONFIGS / file)
    if model is not None:
        data["model"] = {"label_space": "cityscapes", **model}
        data["loss"] = {}
        data["init"] = {"mode": "none"}
    if quick:
        data["model"] = {"label_space": "cityscapes", **TINY_MODELS[data["model"]["kind"]]}
        data["init"] = {"mode": "none"}
        data["data"] = {**data["data"], "scene_size": [64, 128], "crop_size": [64, 128]}
    data["data"] = {**data["data"], "batch_size": batch or data["data"]["batch_size"]}
    data["optimizer"] = {**data.get("optimizer", {}), "name": "adamw"}
    return train_config_from_dict(data)


def training_data(config: TrainConfig, cache_dir: Path, scenes: int) -> TransformedDataset:
    """The recipe's augmented SynthStreet training set over ``scenes`` cached scenes,
    each drawn (and written to the cache) before any timing."""
    d = config.data
    base = synthstreet(d.synth_train.seed, scenes, tuple(d.scene_size), cache_dir=cache_dir)
    for index in range(scenes):
        base[index]
    transform = standard_train_transform(crop=d.crop_size, min_scale=d.min_scale, max_scale=d.max_scale,
                                         jitter=d.color_jitter)
    return TransformedDataset(base, transform, seed=config.runtime.seed)


@dataclass
class Trainer:
    """One model in one precision and memory format, stepped part by part."""

    config: TrainConfig
    dataset: TransformedDataset
    amp_dtype: torch.dtype | None
    channels_last: bool

    def __post_init__(self) -> None:
        torch.manual_seed(0)
        self.model = build_model(self.config.model).train()
        if self.channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)
        self.optimizer = build_optimizer(self.model, self.config.optimizer)
        self.loss_fn = training_kind(self.config.model.kind).loss_fn(self.config.loss)
        self.collate = PanopticCollate(targets=self.config.model.kind, label_space=self.config.model.label_space)
        self.batch = self.config.data.batch_size

    def step(self, step: int) -> dict[str, float]:
        """One optimizer step on batch ``step``; returns each part's ms."""
        clock = [time.perf_counter()]

        def lap() -> None:
            clock.append(time.perf_counter())

        self.dataset.set_epoch(step)
        samples = [self.dataset[(step * self.batch + j) % len(self.dataset)] for j in range(self.batch)]
        lap()
        images, targets = self.collate(samples)
        images = float_images(images)
        lap()
        if self.channels_last:
            images = images.contiguous(memory_format=torch.channels_last)
        with torch.autocast("cpu", dtype=self.amp_dtype, enabled=self.amp_dtype is not None):
            outputs = self.model(images)
        lap()
        losses = self.loss_fn(to_float32(outputs) if self.amp_dtype is not None else outputs, targets, 0.5)
        total = sum(losses.values())
        lap()
        total.backward()
        lap()
        clip_gradients(self.model.parameters(), self.config.optimizer.grad_clip)
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        lap()
        return {part: 1000 * (b - a) for part, a, b in zip(PARTS, clock, clock[1:])}


def measure(trainer: Trainer, steps: int, warmup: int) -> dict[str, float]:
    """Median ms of every part over ``steps`` steps after ``warmup`` untimed ones."""
    for step in range(warmup):
        trainer.step(step)
    times = [trainer.step(warmup + step) for step in range(steps)]
    return {part: statistics.median(t[part] for t in times) for part in PARTS}


def run_model(name: str, args: argparse.Namespace, cache_dir: Path) -> list[dict]:
    """The four rows (fp32/bf16 x contiguous/channels_last) of model ``name``."""
    config = recipe(name, args.quick)
    dataset = training_data(config, cache_dir, args.scenes)
    rows = []
    for precision, dtype in (("fp32", None), ("bf16", torch.bfloat16)):
        for memory in ("contiguous", "channels_last"):
            trainer = Trainer(config, dataset, dtype, memory == "channels_last")
            parts = measure(trainer, args.steps, args.warmup)
            step_ms = sum(parts.values())
            rows.append({"model": name, "params": sum(p.numel() for p in trainer.model.parameters()),
                         "precision": precision, "memory": memory, "batch": trainer.batch,
                         "crop": list(config.data.crop_size), "images_per_s": 1000 * trainer.batch / step_ms,
                         "step_ms": step_ms, **{f"{p}_ms": parts[p] for p in PARTS},
                         "data_share": (parts["data"] + parts["targets"]) / step_ms})
            print(format_row(rows[-1]), flush=True)
    return rows


HEADER = (f"{'model':<14} {'params':>8} {'prec':>4} {'memory':>13} {'img/s':>6} "
          + " ".join(f"{p:>9}" for p in PARTS) + f" {'data+tgt':>8}")


def format_row(row: dict) -> str:
    parts = " ".join(f"{row[p + '_ms']:9.1f}" for p in PARTS)
    return (f"{row['model']:<14} {row['params'] / 1e6:7.2f}M {row['precision']:>4} {row['memory']:>13} "
            f"{row['images_per_s']:6.2f} {parts} {100 * row['data_share']:7.1f}%")


def cpu_kind(flags: frozenset[str]) -> tuple[str, float | None]:
    """(description, bf16/fp32 target) of this CPU: 2x with AMX, 1.4x with AVX512-BF16 alone."""
    if "amx_bf16" in flags:
        return "AMX-BF16", 2.0
    if "avx512_bf16" in flags:
        return "AVX512-BF16, no AMX", 1.4
    if "bf16" in flags:
        return "Arm bf16", None
    return "no native bf16 (bf16 is emulated)", None


def best(rows: list[dict], model: str, precision: str | None = None) -> dict:
    """The fastest row of ``model`` (in ``precision`` when given)."""
    return max((r for r in rows if r["model"] == model and precision in (None, r["precision"])),
               key=lambda r: r["images_per_s"])


def bf16_ratios(rows: list[dict], model: str) -> dict[str, float]:
    """bf16/fp32 images/s per memory format and best against best."""
    out = {}
    for memory in ("contiguous", "channels_last"):
        pair = {r["precision"]: r["images_per_s"] for r in rows if r["model"] == model and r["memory"] == memory}
        out[memory] = pair["bf16"] / pair["fp32"]
    out["best"] = best(rows, model, "bf16")["images_per_s"] / best(rows, model, "fp32")["images_per_s"]
    return out


def verdicts(rows: list[dict], flags: frozenset[str]) -> dict:
    """The issue's two targets, judged on ``rows``."""
    kind, needed = cpu_kind(flags)
    models = list(dict.fromkeys(r["model"] for r in rows))
    ratios = {m: bf16_ratios(rows, m) for m in models}
    paper = [m for m in models if m in PAPER_MODELS]
    bf16_met = None if needed is None or not paper else all(ratios[m]["best"] >= needed for m in paper)
    shares = {m: best(rows, m)["data_share"] for m in models}
    return {"cpu": machine_name(), "cpu_kind": kind, "bf16_needed": needed, "ratios": ratios,
            "bf16_met": bf16_met, "data_shares": shares,
            "data_met": all(s <= DATA_TARGET_SHARE for s in shares.values())}


def print_verdicts(v: dict) -> None:
    for model, r in v["ratios"].items():
        print(f"{model}: bf16/fp32 images/s {r['best']:.2f}x (contiguous {r['contiguous']:.2f}x, "
              f"channels_last {r['channels_last']:.2f}x)")
    label = {True: "MET", False: "MISSED", None: "NOT JUDGED"}
    paper = ", ".join(f"{m} {v['ratios'][m]['best']:.2f}x" for m in PAPER_MODELS if m in v["ratios"])
    why = paper or "no paper-size model measured"
    if v["bf16_needed"] is None:
        why += "; this CPU has no x86 bf16 target"
    print(f"target: bf16 >= 2x fp32 (AMX) / >= 1.4x (AVX512-BF16 only) for the paper-size models -> "
          f"{label[v['bf16_met']]} on {v['cpu']} ({v['cpu_kind']}): {why}")
    shares = ", ".join(f"{m} {100 * s:.1f} %" for m, s in v["data_shares"].items())
    print(f"target: data + targets <= 15 % of a step -> {label[v['data_met']]} on {v['cpu']} "
          f"({v['cpu_kind']}), each model's fastest row: {shares}")


def parse_args(argv) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=5, help="timed steps per row (median)")
    parser.add_argument("--warmup", type=int, default=2, help="untimed steps before them")
    parser.add_argument("--threads", type=int, default=1, help="torch and OpenCV threads")
    parser.add_argument("--models", default=",".join(MODELS), help=f"comma-separated subset of {', '.join(MODELS)}")
    parser.add_argument("--scenes", type=int, default=8, help="distinct cached SynthStreet scenes to cycle through")
    parser.add_argument("--cache-dir", type=Path, help="scene cache folder (default: a temporary one)")
    parser.add_argument("--json-out", type=Path, help="write rows and verdicts as JSON here")
    parser.add_argument("--quick", action="store_true", help="tiny models, 64x128 scenes (smoke test)")
    args = parser.parse_args(argv)
    args.models = [m.strip() for m in args.models.split(",") if m.strip()]
    unknown = [m for m in args.models if m not in MODELS]
    if unknown or not args.models or args.steps < 1 or args.warmup < 0 or args.threads < 1 or args.scenes < 1:
        parser.error(f"need known --models (unknown: {unknown}), --steps >= 1, --warmup >= 0, --threads >= 1, "
                     "--scenes >= 1")
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    cv2.setNumThreads(args.threads)
    flags = cpu_flags()
    print(f"train_speed: {machine_name()} ({cpu_kind(flags)[0]}), torch {torch.__version__}, {args.threads} "
          f"thread(s), median of {args.steps} steps after {args.warmup} warm-up, ms per step"
          + (" [--quick: tiny models]" if args.quick else ""))
    print(HEADER)
    with tempfile.TemporaryDirectory(prefix="train_speed_") as tmp:
        cache_dir = args.cache_dir or Path(tmp)
        rows = [row for name in args.models for row in run_model(name, args, cache_dir)]
    v = verdicts(rows, flags)
    print_verdicts(v)
    if args.json_out:
        args.json_out.write_text(json.dumps({"threads": args.threads, "steps": args.steps, "quick": args.quick,
                                             "rows": rows, **v}, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
