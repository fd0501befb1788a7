"""panoptic-train never destroys a run: a folder that holds one is refused without --resume
or --force, and --force keeps the old run aside."""
import json
import subprocess
import sys
from pathlib import Path

import pytest

from test_resume import write_config

TRAIN = Path(sys.executable).parent / "panoptic-train"
SHORT = ["schedule.total_steps=2", "runtime.checkpoint_every=2", "schedule.warmup_steps=0"]


def _train(config, out, *extra) -> subprocess.CompletedProcess:
    command = [str(TRAIN), "--config", str(config), "--out", str(out), *SHORT, *extra]
    return subprocess.run(command, capture_output=True, text=True, timeout=600,
                          env={"OMP_NUM_THREADS": "1", "PATH": str(TRAIN.parent)})


def _one_line(proc: subprocess.CompletedProcess, *needles: str) -> None:
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr and len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    for needle in needles:
        assert needle in proc.stderr, proc.stderr


@pytest.mark.timeout(900)
def test_a_finished_run_is_refused_then_kept_aside_by_force(tmp_path):
    config, out = write_config(tmp_path), tmp_path / "run"
    first = _train(config, out)
    assert first.returncode == 0, first.stderr
    files = {p.relative_to(out): p.read_bytes() for p in out.rglob("*") if p.is_file()}
    assert Path("model.safetensors") in files and Path("metrics.jsonl") in files

    _one_line(_train(config, out, "runtime.seed=8"), str(out), "already holds a training run", "--force")
    assert {p.relative_to(out): p.read_bytes() for p in out.rglob("*") if p.is_file()} == files  # untouched

    forced = _train(config, out, "runtime.seed=8", "--force")
    assert forced.returncode == 0, forced.stderr
    aside = [p for p in tmp_path.iterdir() if p.name.startswith("run.replaced-")]
    assert len(aside) == 1 and str(aside[0]) in forced.stderr
    assert {p.relative_to(aside[0]): p.read_bytes() for p in aside[0].rglob("*") if p.is_file()} == files
    assert (out / "model.safetensors").read_bytes() != files[Path("model.safetensors")]  # a new run


def test_out_under_a_file_or_a_file_itself_is_one_line(tmp_path):
    config = write_config(tmp_path)
    blocker = tmp_path / "blocker"
    blocker.write_text("not a folder")
    _one_line(_train(config, blocker / "run"), str(blocker / "run"), f"{blocker} is a file")
    _one_line(_train(config, blocker), str(blocker), "run folder is a file, not a folder")


def test_an_empty_or_foreign_folder_is_trained_into(tmp_path):
    out = tmp_path / "empty"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    proc = _train(write_config(tmp_path), out)
    assert proc.returncode == 0, proc.stderr
    assert (out / "model.safetensors").is_file() and (out / "notes.txt").read_text() == "mine"


@pytest.mark.timeout(900)
def test_resume_skips_a_damaged_newest_checkpoint_for_the_newest_intact_one(tmp_path):
    config, out = write_config(tmp_path), tmp_path / "run"
    four = ["schedule.total_steps=4", "runtime.checkpoint_every=2", "schedule.warmup_steps=0"]
    command = [str(TRAIN), "--config", str(config), "--out", str(out), *four]
    env = {"OMP_NUM_THREADS": "1", "PATH": str(TRAIN.parent)}
    assert subprocess.run(command, capture_output=True, timeout=600, env=env).returncode == 0
    first = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    newest = out / "checkpoints" / "step_00000004" / "state.safetensors"
    newest.write_bytes(newest.read_bytes()[:100])  # cut off

    resumed = subprocess.run([*command, "--resume"], capture_output=True, text=True, timeout=600, env=env)
    assert resumed.returncode == 0, resumed.stderr
    assert "warning: skipping a damaged checkpoint" in resumed.stderr and str(newest) in resumed.stderr
    again = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    train_losses = lambda records: {r["step"]: r["loss"] for r in records if r["kind"] == "train"}  # noqa: E731
    # steps 3 and 4 were trained again from step 2, with the same losses as the first time
    assert train_losses(again) == pytest.approx(train_losses(first), abs=1e-6)
    assert "resumed at step 2" in resumed.stderr
