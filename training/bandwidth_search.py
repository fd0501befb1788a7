"""``panoptic-bandwidth-search``: tune PanoNet's mean-shift bandwidth per thing class.

    panoptic-bandwidth-search --checkpoint weights/panonet_synthstreet \\
        [--seed 0 --count 20 --size 512x1024] [--bandwidths 0.3,0.4,0.5,0.6,0.8] [--write]

The paper starts from delta_v and searches a small range per class on the training set
(Sec. III-D). Here: the network runs once per SynthStreet scene (stream ``--seed``,
default 0 = the training stream), its outputs are kept, and the post-processing runs
once per candidate bandwidth with every thing class at that bandwidth. Clustering is
class-wise, so a class's PQ depends only on its own bandwidth: one sweep gives every
class's PQ curve. The best bandwidth per class (highest per-class PQ, official rules;
ties go to the one nearest the checkpoint's current value) is printed, and with
``--write`` stored in the checkpoint's ``postprocess.bandwidths`` (the JSON half is
rewritten atomically; the weights are untouched). Classes that never occur (no TP, FP
or FN at any bandwidth) keep their current setting.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path
from typing import Mapping, Sequence

import torch

from panoptic_ros.checkpoint import atomic_write_bytes, checkpoint_paths, load_checkpoint, read_checkpoint_meta
from panoptic_ros.cli_common import int_at_least, parse_size
from panoptic_ros.config import ConfigError, from_dict, to_dict
from panoptic_ros.eval.pq import PanopticEvaluator
from panoptic_ros.inference.backends import TorchBackend, resolve_device
from panoptic_ros.inference.predictor import resize_image
from panoptic_ros.labels import LabelSpace, get_label_space
from panoptic_ros.postprocess.panonet import PanoNetPostprocessConfig, postprocess_panonet
from panoptic_ros.training.evaluate import USER_ERRORS

DEFAULT_BANDWIDTHS = (0.25, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 1.0)


def parse_bandwidths(text: str) -> tuple[float, ...]:
    """``0.3,0.4,...`` -> sorted distinct positive floats; argparse error otherwise."""
    try:
        values = sorted({float(v) for v in text.split(",") if v.strip()})
    except ValueError:
        raise argparse.ArgumentTypeError(f"bandwidths must be comma-separated numbers, got {text!r}") from None
    if not values or values[0] <= 0:
        raise argparse.ArgumentTypeError(f"bandwidths must be positive numbers, got {text!r}")
    return tuple(values)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="panoptic-bandwidth-search", description=__doc__.split("\n\n")[0])
    p.add_argument("--checkpoint", required=True, type=Path, help="PanoNet checkpoint (x, x.safetensors or x.json)")
    p.add_argument("--seed", type=int, default=0, help="SynthStreet stream seed (default 0, the training stream)")
    p.add_argument("--count", type=int_at_least(1), default=20, help="SynthStreet scenes (default 20)")
    p.add_argument("--size", type=parse_size, default=(512, 1024), help="scene size HxW (default 512x1024)")
    p.add_argument("--bandwidths", type=parse_bandwidths, default=DEFAULT_BANDWIDTHS,
                   help="candidate bandwidths, comma-separated (default 0.25,...,1.0)")
    p.add_argument("--write", action="store_true", help="store the best bandwidths in the checkpoint")
    p.add_argument("--device", default="auto", help="auto (CUDA when present), cpu, cuda or cuda:N (default auto)")
    return p.parse_args(argv)


def network_outputs(checkpoint: Path, *, seed: int, count: int, size: tuple[int, int], device: str):
    """Run the network once per scene.

    Returns:
        (label space, current post-processing config, list of (ground truth, outputs)).
    Raises:
        ConfigError: the checkpoint is not a Cityscapes PanoNet.
    """
    from panoptic_ros.training.data import synthstreet

    loaded = load_checkpoint(checkpoint)
    if loaded.model_config.kind != "panonet":
        raise ConfigError(f"{checkpoint}: holds a {loaded.model_config.kind} model; the bandwidth search is for PanoNet")
    label_space = get_label_space(loaded.model_config.label_space)
    if label_space.name != "cityscapes":
        raise ConfigError(f"{checkpoint}: SynthStreet uses the Cityscapes label space, the model predicts "
                          f"{label_space.name!r}")
    current = from_dict(PanoNetPostprocessConfig, loaded.postprocess, f"{checkpoint}: postprocess")
    backend = TorchBackend(loaded.model, device=resolve_device(device))
    dataset = synthstreet(seed, count, size)
    cached = []
    for i in range(len(dataset)):
        sample = dataset[i]
        outputs = backend(resize_image(sample.image, loaded.model_config.input_size))
        cached.append((sample.target, {k: v.cpu() for k, v in outputs.items()}))
    return label_space, current, cached


def sweep(cached, bandwidths: Sequence[float], current: PanoNetPostprocessConfig,
          label_space: LabelSpace) -> dict[float, dict[int, dict]]:
    """Per candidate bandwidth (all thing classes at it): the evaluator's ``per_class`` dict
    extended with the raw TP/FP/FN counts (``seen``: the class occurred at all)."""
    things = [label_space.categories[i].name for i in label_space.thing_train_indices]
    table = {}
    for bandwidth in bandwidths:
        config = dataclasses.replace(current, bandwidths={name: bandwidth for name in things})
        evaluator = PanopticEvaluator(label_space)
        for target, outputs in cached:
            result = postprocess_panonet(outputs, config=config, label_space=label_space)
            evaluator.add(target, result.resize(target.width, target.height))
        per_class = evaluator.summarize()["per_class"]
        seen = evaluator.tp + evaluator.fp + evaluator.fn > 0
        table[bandwidth] = {cid: dict(per_class[cid], seen=bool(s))
                            for cid, s in zip(evaluator.category_ids, seen.tolist())}
    return table


def best_bandwidths(table: Mapping[float, Mapping[int, Mapping]], current: PanoNetPostprocessConfig,
                    label_space: LabelSpace) -> dict[str, float]:
    """Best bandwidth per thing class name that occurred (ties: nearest the current one)."""
    best = {}
    for i in label_space.thing_train_indices:
        category = label_space.categories[i]
        if not any(row[category.id]["seen"] for row in table.values()):
            continue
        now = current.bandwidths.get(category.name, current.default_bandwidth)
        best[category.name] = max(table, key=lambda b: (table[b][category.id]["pq"], -abs(b - now)))
    return best


def write_bandwidths(checkpoint: Path, best: Mapping[str, float]) -> Path:
    """Merge ``best`` into the checkpoint's ``postprocess.bandwidths``; returns the JSON path."""
    _, meta_path = checkpoint_paths(checkpoint)
    meta = read_checkpoint_meta(meta_path)
    postprocess = dict(meta.get("postprocess", {}))
    postprocess["bandwidths"] = {**postprocess.get("bandwidths", {}), **best}
    config = from_dict(PanoNetPostprocessConfig, postprocess, f"{meta_path}: postprocess")
    meta["postprocess"] = to_dict(config)
    atomic_write_bytes(meta_path, (json.dumps(meta, indent=2, sort_keys=True) + "\n").encode())
    return meta_path


def format_table(table: Mapping[float, Mapping[int, Mapping]], best: Mapping[str, float],
                 label_space: LabelSpace) -> str:
    """Per-class PQ (%) for every bandwidth; the chosen one marked with ``*``."""
    classes = [label_space.categories[i] for i in label_space.thing_train_indices]
    lines = [f"{'bandwidth':>10s} " + " ".join(f"{c.name[:10]:>11s}" for c in classes)]
    for bandwidth, row in table.items():
        cells = []
        for c in classes:
            mark = "*" if best.get(c.name) == bandwidth else " "
            cells.append(f"{100 * row[c.id]['pq']:10.2f}{mark}" if row[c.id]["seen"] else f"{'-':>10s} ")
        lines.append(f"{bandwidth:10.3f} " + " ".join(cells))
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        label_space, current, cached = network_outputs(args.checkpoint, seed=args.seed, count=args.count,
                                                       size=args.size, device=args.device)
        with torch.no_grad():
            table = sweep(cached, args.bandwidths, current, label_space)
        best = best_bandwidths(table, current, label_space)
        print(format_table(table, best, label_space))
        print("best: " + (", ".join(f"{k}={v:g}" for k, v in best.items()) or "no thing class occurred"))
        if args.write:
            print(f"wrote postprocess.bandwidths to {write_bandwidths(args.checkpoint, best)}")
    except USER_ERRORS as exc:
        print(f"panoptic-bandwidth-search: error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
