"""SIGKILL a CPU training run mid-epoch, resume it, and get the losses of an
uninterrupted run; checkpoints on disk are complete at every moment."""
import json
import os
import signal
import subprocess
import sys
import time

import pytest
import torch
import yaml

from panoptic_ros.checkpoint import load_checkpoint
from panoptic_ros.training.state import list_checkpoints, read_training_state

# A real CIAE (its memory embeddings are buffers updated by the loss: they must resume too).
TINY_CIAE = {
    "model": {"kind": "ciae", "label_space": "cityscapes", "input_size": [64, 128], "depth": 18,
              "base_channels": 8, "fpn_channels": 16, "head_convs": 1, "box_embed_channels": 8,
              "seg_channels": 16, "embed_dim": 8},
    "postprocess": {"stuff_min_area": 16, "area_reference": [64, 128]},
    "data": {"dataset": "synthstreet", "synth_train": {"seed": 3, "count": 16}, "synth_val": {"seed": 4, "count": 1},
             "scene_size": [64, 128], "crop_size": [64, 128], "min_scale": 0.75, "max_scale": 1.25,
             "batch_size": 2, "workers": 0},
    "optimizer": {"name": "sgd", "lr": 0.01, "momentum": 0.9, "grad_clip": 10.0},
    "schedule": {"total_steps": 12, "policy": "step", "milestones": [0.5], "warmup_steps": 2},
    "eval": {"count": 1, "images": 0},
    "runtime": {"seed": 7, "device": "cpu", "log_every": 1, "checkpoint_every": 3, "keep_checkpoints": 3,
                "tensorboard": False, "threads": 1},
}


def write_config(tmp_path, data=None):
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(data or TINY_CIAE))
    return path


def train_command(config, out, *extra):
    return [sys.executable, "-m", "panoptic_ros.training.train", "--config", str(config), "--out", str(out), *extra]


def losses(out):
    """step -> logged loss terms (the last record of a step wins)."""
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    return {r["step"]: {k: v for k, v in r.items() if k not in ("step", "kind", "time")}
            for r in records if r["kind"] == "train"}


def assert_complete(out):
    """Every visible checkpoint folder is whole: checksums match, model and state load."""
    for folder in list_checkpoints(out):
        read_training_state(folder)
        load_checkpoint(folder / "model")


# Runs panoptic-train, but once the run reaches KILL_STEP it SIGKILLs itself (no cleanup,
# no flushing), exactly there: killing from outside after watching the log would race
# with the next steps and checkpoints on a slow or loaded machine.
KILL_STEP = 7
KILLING_TRAIN = f"""
import os, signal, sys
from panoptic_ros.training import train

real_steps = train.train_steps


def steps_then_sigkill(module, batches, ctx, *, step, stop_step):
    done = real_steps(module, batches, ctx, step=step, stop_step=min(stop_step, {KILL_STEP}))
    if done == {KILL_STEP}:
        os.kill(os.getpid(), signal.SIGKILL)
    return done


train.train_steps = steps_then_sigkill
sys.exit(train.main(sys.argv[1:]))
"""


# Three short CPU runs; generous for a loaded 2-core machine (no timeouts inside the test).
@pytest.mark.timeout(900)
def test_sigkill_mid_epoch_then_resume_matches_uninterrupted_run(tmp_path):
    config = write_config(tmp_path)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    reference = tmp_path / "reference"
    subprocess.run(train_command(config, reference), check=True, env=env, capture_output=True)
    expected = losses(reference)
    assert sorted(expected) == list(range(1, 13))

    # 16 scenes / batch 2 = 8 steps per epoch; killed after step 7 (checkpoint at 6, mid-epoch).
    # (--resume on a run without checkpoints starts it: one command for every restart.)
    killed = tmp_path / "killed"
    command = [sys.executable, "-c", KILLING_TRAIN, *train_command(config, killed, "--resume")[3:]]
    log = tmp_path / "killed.log"   # a file, not a pipe: a full pipe would stall the run
    with log.open("w") as stderr:
        proc = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=stderr)
        try:
            while proc.poll() is None:  # checkpoints on disk are whole while they are being written
                assert_complete(killed)
                time.sleep(0.05)
        finally:
            proc.kill()
            proc.wait()
    assert proc.returncode == -signal.SIGKILL, log.read_text()[-2000:]
    assert losses(killed)[KILL_STEP]
    assert_complete(killed)
    newest = list_checkpoints(killed)[-1]
    assert newest.name == "step_00000006"
    state, _ = read_training_state(newest)
    assert {k: state["progress"][k] for k in ("step", "epoch", "batch_in_epoch")} == {
        "step": 6, "epoch": 0, "batch_in_epoch": 6}

    result = subprocess.run(train_command(config, killed, "--resume"), env=env, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    resumed = losses(killed)
    assert sorted(resumed) == list(range(1, 13))
    for step in range(7, 13):
        for term, value in expected[step].items():
            assert resumed[step][term] == pytest.approx(value, rel=0, abs=1e-6), (step, term)
    final_a = load_checkpoint(reference / "model").model.state_dict()
    final_b = load_checkpoint(killed / "model").model.state_dict()
    # provenance: the command that started the run, then one entry per session
    meta = load_checkpoint(killed / "model").metadata
    assert meta["command"].startswith("panoptic-train --config") and meta["sessions"] == [meta["command"]] * 2
    assert load_checkpoint(reference / "model").metadata["sessions"] == [
        load_checkpoint(reference / "model").metadata["command"]]
    for key, value in final_a.items():
        assert torch.allclose(value, final_b[key], rtol=0, atol=1e-6), key

    # Resuming with another recipe would silently train something else: refused.
    result = subprocess.run(train_command(config, killed, "optimizer.lr=0.5", "--resume"), env=env,
                            capture_output=True, text=True)
    assert result.returncode == 2
    assert result.stderr.startswith("panoptic-train: error:") and "'optimizer' section" in result.stderr
    assert "Traceback" not in result.stderr

