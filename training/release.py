"""Ship a trained run as demo weights: float16 checkpoint plus a manifest with its scores.

    panoptic-release --run runs/panonet_synthstreet \\
        --stem weights/panonet_synthstreet --val-seed 1000 --val-count 100

writes ``<stem>.safetensors`` + ``<stem>.json`` (float16 tensors; the checkpoint JSON
keeps the model config, post-processing settings and training metadata) and
``<stem>.manifest.json``: the training config and command, steps, seed, training
wall-clock, the weights' sha256, and the PQ / SQ / RQ (All, Things, Stuff) and mIoU that
``panoptic-evaluate`` prints for the *shipped* float16 file on the SynthStreet validation
split named in the manifest (its ``evaluate_command`` reproduces them; ``validation.device``
says where they were computed).

Exit codes: 0 written; 2 bad input (run folder, checkpoint, ``--set`` key or value, a
validation seed equal to the training one), reported in one line naming it.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Sequence

from panoptic_ros.checkpoint import CheckpointError, atomic_write_bytes, load_checkpoint, save_checkpoint
from panoptic_ros.cli_common import parse_size
from panoptic_ros.config import ConfigError, from_dict
from panoptic_ros.eval.cli import EXIT_BAD_INPUT
from panoptic_ros.inference.backends import resolve_device
from panoptic_ros.kinds import model_kind
from panoptic_ros.paths import check_output
from panoptic_ros.training import evaluate as evaluate_cli
from panoptic_ros.training.snapshot import run_chain

MANIFEST_FORMAT = "panoptic_ros.weights_manifest/1"


def release(run: Path, stem: Path, *, val_seed: int, val_count: int, size: tuple[int, int],
            postprocess: dict | None = None, device: str = "auto") -> dict:
    """Convert ``run``'s final model to float16 at ``stem``, score it, write the manifest.

    ``postprocess`` overrides settings stored with the weights (values tuned on a split
    other than the validation one, e.g. with ``panoptic-evaluate --set``). ``device``
    (``auto``, ``cpu``, ``cuda[:N]``) runs the scoring.
    """
    try:
        device = str(resolve_device(device))
    except ValueError as exc:  # malformed, or CUDA asked for where there is none
        raise ConfigError(f"--device: {exc}") from None
    check_output(Path(stem).parent, folder=True, what="--stem folder")
    loaded = load_checkpoint(Path(run) / "model")
    meta = loaded.metadata
    train_seed = meta.get("config", {}).get("data", {}).get("synth_train", {}).get("seed")
    if train_seed == val_seed:
        raise CheckpointError(f"--val-seed {val_seed} is the training seed of {run}; pick a disjoint one")
    settings = {**loaded.postprocess, **(postprocess or {})}
    from_dict(model_kind(loaded.model_config.kind).postprocess_config, settings, "postprocess")  # fails before writing
    weights, _ = save_checkpoint(stem, loaded.model, loaded.model_config, postprocess=settings,
                                 metadata={k: v for k, v in meta.items() if k not in ("val", "miou")}, half=True)
    argv = ["--checkpoint", str(stem), "--dataset", "synthstreet", "--seed", str(val_seed),
            "--count", str(val_count), "--size", f"{size[0]}x{size[1]}"]
    summary = evaluate_cli.run(evaluate_cli.parse_args([*argv, "--device", device]))
    shipped = json.loads(Path(f"{stem}.json").read_text())
    manifest = {
        "format": MANIFEST_FORMAT,
        "weights": weights.name,
        "sha256": shipped["weights_sha256"],
        "bytes": weights.stat().st_size,
        "dtype": "float16",
        "model": loaded.model_config.kind,
        "config": meta.get("config"),
        "command": meta.get("command"),
        "steps": meta.get("step"),
        "seed": meta.get("seed"),
        "train_seconds": meta.get("train_seconds"),
        "chain": run_chain(Path(run)),
        "postprocess_overrides": postprocess or {},
        "validation": {
            "dataset": "synthstreet", "seed": val_seed, "count": val_count, "size": list(size),
            **{group: {m: summary[group][m] for m in ("pq", "sq", "rq", "n")} for group in ("All", "Things", "Stuff")},
            "miou": summary["miou"], "device": device,
        },
        "evaluate_command": "panoptic-evaluate " + " ".join(argv),
    }
    atomic_write_bytes(Path(f"{stem}.manifest.json"), (json.dumps(manifest, indent=1) + "\n").encode())
    return manifest


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="panoptic-release", description=__doc__.split("\n\n")[0])
    p.add_argument("--run", required=True, type=Path, help="run folder holding model.safetensors/json")
    p.add_argument("--stem", required=True, type=Path, help="output stem, e.g. weights/panonet_synthstreet")
    p.add_argument("--val-seed", type=int, default=1000, help="SynthStreet validation seed (not the training one)")
    p.add_argument("--val-count", type=int, default=100, help="validation scenes")
    p.add_argument("--size", type=parse_size, default=(512, 1024), help="scene size HxW")
    p.add_argument("--set", dest="postprocess", action="append", default=[], metavar="KEY=VALUE",
                   help="post-processing setting stored with the weights (repeatable)")
    p.add_argument("--device", default="auto", help="scores on: auto, cpu, cuda or cuda:N (default auto: CUDA "
                   "when available)")
    args = p.parse_args(argv)
    try:
        overrides = evaluate_cli.parse_settings(args.postprocess)
        manifest = release(args.run, args.stem, val_seed=args.val_seed, val_count=args.val_count, size=args.size,
                           postprocess=overrides, device=args.device)
    except evaluate_cli.USER_ERRORS as exc:
        print(f"panoptic-release: error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    v = manifest["validation"]
    print(f"{manifest['weights']} ({manifest['bytes'] / 1e6:.2f} MB): PQ {100 * v['All']['pq']:.1f} "
          f"SQ {100 * v['All']['sq']:.1f} RQ {100 * v['All']['rq']:.1f} on SynthStreet seed {v['seed']} "
          f"x{v['count']} at {v['size'][0]}x{v['size'][1]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
