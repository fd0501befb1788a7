"""The run folder of ``panoptic-train``: never overwrite a run silently.

Training is the most expensive output the project makes, so a folder that already holds a
run (its model, config, metrics or checkpoints) is only trained into again with
``--resume`` (continue it) or ``--force`` (start afresh, the old run kept aside under a
new name, never deleted).
"""
from __future__ import annotations

import os
import time
from pathlib import Path

from panoptic_ros.config import ConfigError
from panoptic_ros.paths import check_output

# What a run folder holds once training has started (train.py, logs.py, state.py).
RUN_MARKERS = ("model.safetensors", "model.json", "config.yaml", "metrics.jsonl", "eval.json", "checkpoints")


def holds_run(out_dir: Path) -> bool:
    """True when ``out_dir`` holds any file a training run writes."""
    return any((out_dir / name).exists() for name in RUN_MARKERS)


def aside_name(out_dir: Path) -> Path:
    """A new sibling name for an old run: ``<name>.replaced-<UTC time>[-N]``."""
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    candidate, n = out_dir.with_name(f"{out_dir.name}.replaced-{stamp}"), 1
    while candidate.exists():
        n += 1
        candidate = out_dir.with_name(f"{out_dir.name}.replaced-{stamp}-{n}")
    return candidate


def claim_run_dir(out_dir: Path, *, resume: bool, force: bool) -> Path | None:
    """Make sure training into ``out_dir`` destroys no earlier run.

    Only the main process (``RANK`` unset or 0) checks and moves: under torchrun the other
    ranks follow it.

    Args:
        out_dir: the run folder.
        resume: ``--resume`` / ``--resume-from`` was given (the run is continued).
        force: ``--force``: move an existing run aside and start afresh.
    Returns:
        Where the old run was moved, or None when nothing was moved.
    Raises:
        ConfigError: ``out_dir`` cannot be a folder (a file, under a file, not writable),
            or holds a run and neither flag was given.
    """
    if os.environ.get("RANK", "0") != "0":
        return None
    check_output(out_dir, folder=True, what="run folder")
    if resume or not holds_run(out_dir):
        return None
    if not force:
        raise ConfigError(f"{out_dir}: already holds a training run; continue it with --resume, or give "
                          "--force to start afresh (the old run is kept aside)")
    aside = aside_name(out_dir)
    out_dir.rename(aside)
    return aside
