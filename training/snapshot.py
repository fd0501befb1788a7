"""``panoptic-snapshot``: a run's newest model as a model-only float16 checkpoint, the piece
of a training chain that the next piece starts from.

    panoptic-snapshot --run runs/panonet_half_semantic --out weights/chain/panonet_half_semantic

Training longer than one sitting goes in pieces: a piece may be stopped at any time and
its run folder (with the optimizer state) may be gone later, so each piece starts from
something small that is committed: this snapshot, named by the next recipe's
``init.checkpoint``. The snapshot's metadata carries the ``chain``: one record per piece
(recipe command and sessions, steps done of the planned total, training seconds, where
it started from), its own last, read back from the checkpoint it was initialised from.
``panoptic-release`` copies that chain into the shipped manifest.

Exit codes: 0 written; 2 bad input (no run, no checkpoint), in one line naming it.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Sequence

from panoptic_ros.checkpoint import CheckpointError, load_checkpoint, read_checkpoint_meta, save_checkpoint
from panoptic_ros.eval.cli import EXIT_BAD_INPUT
from panoptic_ros.training.state import list_checkpoints, read_training_state


def newest_model(run: Path) -> tuple[Path, bool]:
    """(the run's newest model checkpoint, whether the run finished): the final
    ``model`` when training completed, else the newest ``checkpoints/step_N/model``.

    Raises:
        CheckpointError: the run has neither.
    """
    if (run / "model.json").is_file():
        return run / "model", True
    folders = list_checkpoints(run)
    if not folders:
        raise CheckpointError(f"{run}: no model.json and no checkpoints/step_N; is this a training run folder?")
    return folders[-1] / "model", False


def chain_of(checkpoint: Path | None) -> list[dict]:
    """The chain recorded in ``checkpoint``'s metadata ([] when there is none)."""
    if checkpoint is None:
        return []
    try:
        return list(read_checkpoint_meta(checkpoint).get("metadata", {}).get("chain", []))
    except (CheckpointError, FileNotFoundError):
        return []  # an init from a file of another kind (torchvision, ...) has no chain


def _run_state(run: Path) -> tuple[dict, dict, bool, float | None]:
    """(model metadata, training config, finished, training seconds) of ``run``'s newest
    model; an interrupted run keeps its config and clock in the checkpoint's state."""
    model, finished = newest_model(run)
    meta = read_checkpoint_meta(model).get("metadata", {})
    if finished:
        return meta, meta.get("config") or {}, True, meta.get("train_seconds")
    body, _ = read_training_state(model.parent)
    return meta, body.get("config") or {}, False, round(body["progress"]["elapsed_s"])


def piece_record(run: Path) -> dict:
    """This run as one piece of a chain (see the module docstring)."""
    meta, config, finished, seconds = _run_state(run)
    init = config.get("init") or {}
    return {"run": run.name, "command": meta.get("command"), "sessions": meta.get("sessions", []),
            "step": meta.get("step"), "total_steps": (config.get("schedule") or {}).get("total_steps"),
            "finished": finished, "train_seconds": seconds,
            "init": {"mode": init.get("mode"), "checkpoint": init.get("checkpoint")},
            "amp": (config.get("runtime") or {}).get("amp")}


def run_chain(run: Path) -> list[dict]:
    """Every piece that led to ``run``'s newest model, oldest first, ``run`` last."""
    piece = piece_record(run)
    init = piece["init"]["checkpoint"]
    return [*chain_of(Path(init) if init else None), piece]


def snapshot(run: Path, out: Path) -> dict:
    """Write ``run``'s newest model to ``out`` as float16 with its chain; returns the
    piece record."""
    model, _ = newest_model(Path(run))
    loaded = load_checkpoint(model)
    chain = run_chain(Path(run))
    meta = {k: v for k, v in loaded.metadata.items() if k not in ("val", "miou")}
    save_checkpoint(out, loaded.model, loaded.model_config, postprocess=loaded.postprocess,
                    metadata={**meta, "chain": chain}, half=True)
    return chain[-1]


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="panoptic-snapshot", description=__doc__.split("\n\n")[0])
    p.add_argument("--run", required=True, type=Path, help="training run folder (runs/NAME)")
    p.add_argument("--out", required=True, type=Path, help="output stem, e.g. weights/chain/NAME")
    args = p.parse_args(argv)
    try:
        piece = snapshot(args.run, args.out)
    except (CheckpointError, FileNotFoundError, OSError) as exc:
        print(f"panoptic-snapshot: error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    state = "finished" if piece["finished"] else "interrupted"
    print(f"{args.out}: step {piece['step']} of {piece['total_steps']} ({state}), "
          f"{piece['train_seconds']} s of training in this piece")
    return 0


if __name__ == "__main__":
    sys.exit(main())
