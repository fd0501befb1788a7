"""Run logging on rank 0: a tqdm progress bar, TensorBoard scalars and images, and a
``metrics.jsonl`` file (one JSON object per logged step, with its wall-clock ``time``) that
tests and scripts read.

Other ranks get a logger whose methods do nothing, so callers never branch on the rank.
"""
from __future__ import annotations

import json
import math
import sys
import time
from pathlib import Path
from typing import Any, Mapping

import numpy as np


class RunLogger:
    """Progress and metrics of one run.

    Args:
        out_dir: run folder (``metrics.jsonl`` and ``tb/`` go there).
        enabled: False on non-zero ranks (everything becomes a no-op).
        total_steps: length of training, for the progress bar.
        initial_step: step the run (re)starts from.
        tensorboard: write TensorBoard event files.
        progress_bar: None = only when stderr is a terminal.
    """

    def __init__(self, out_dir: Path, *, enabled: bool = True, total_steps: int = 0, initial_step: int = 0,
                 tensorboard: bool = True, progress_bar: bool | None = None):
        self.enabled = enabled
        self.out_dir = Path(out_dir)
        self._bar = self._writer = None
        if not enabled:
            return
        self.out_dir.mkdir(parents=True, exist_ok=True)
        self._truncate_metrics(initial_step)
        if progress_bar is None:
            progress_bar = sys.stderr.isatty()
        if progress_bar:
            from tqdm import tqdm

            self._bar = tqdm(total=total_steps, initial=initial_step, unit="step", dynamic_ncols=True)
        if tensorboard:
            from torch.utils.tensorboard import SummaryWriter

            self._writer = SummaryWriter(str(self.out_dir / "tb"), purge_step=initial_step or None)

    @property
    def metrics_path(self) -> Path:
        return self.out_dir / "metrics.jsonl"

    def _truncate_metrics(self, step: int) -> None:
        """Drop records after ``step`` (left by an interrupted run that is now resumed)."""
        if not self.metrics_path.exists():
            return
        kept = [line for line in self.metrics_path.read_text().splitlines()
                if line.strip() and json.loads(line).get("step", 0) <= step]
        self.metrics_path.write_text("".join(line + "\n" for line in kept))

    def scalars(self, step: int, values: Mapping[str, float], prefix: str = "train") -> None:
        """Record scalars (each loss term, lr, PQ, ...) under ``prefix/``."""
        if not self.enabled:
            return
        record = {"step": step, "kind": prefix, "time": round(time.time(), 3),
                  **{k: _jsonable(v) for k, v in values.items()}}
        with open(self.metrics_path, "a") as f:
            f.write(json.dumps(record) + "\n")
        if self._writer is not None:
            for name, value in values.items():
                if isinstance(value, (int, float)) and math.isfinite(value):
                    self._writer.add_scalar(f"{prefix}/{name}", value, step)

    def image(self, step: int, tag: str, image: np.ndarray) -> None:
        """Record an (H, W, 3) uint8 RGB image."""
        if self.enabled and self._writer is not None:
            self._writer.add_image(tag, image, step, dataformats="HWC")

    def advance(self, steps: int, postfix: Mapping[str, float] | None = None) -> None:
        if self._bar is not None:
            self._bar.update(steps)
            if postfix:
                self._bar.set_postfix({k: f"{v:.4g}" for k, v in postfix.items()}, refresh=False)

    def message(self, text: str) -> None:
        """A line for the console (through the bar, so it is not garbled)."""
        if not self.enabled:
            return
        if self._bar is not None:
            self._bar.write(text)
        else:
            print(text, file=sys.stderr, flush=True)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
        if self._writer is not None:
            self._writer.close()


def _jsonable(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    return value
