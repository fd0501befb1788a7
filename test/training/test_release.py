"""panoptic-release: float16 weights plus a manifest whose scores its evaluate_command
reproduces; bad input is one line and exit code 2, and writes nothing."""
import json
import subprocess
import sys

import pytest
import torch

from panoptic_ros.checkpoint import save_checkpoint, sha256_file
from panoptic_ros.models.ciae import CIAE, CIAEConfig
from panoptic_ros.training import evaluate as evaluate_cli
from panoptic_ros.training import release as release_cli

from test_checkpoint_safety import one_thread  # noqa: F401 (autouse fixture)
from test_resume import TINY_CIAE

TRAIN_SEED = TINY_CIAE["data"]["synth_train"]["seed"]


@pytest.fixture
def tiny_run(tmp_path):
    """A run folder as panoptic-train leaves it (model + metadata), tiny CIAE."""
    torch.manual_seed(0)
    config = CIAEConfig(**{k: v for k, v in TINY_CIAE["model"].items() if k != "input_size"}, input_size=(64, 128))
    save_checkpoint(tmp_path / "run" / "model", CIAE(config), config,
                    postprocess={**TINY_CIAE["postprocess"], "score_threshold": 0.05},
                    metadata={"step": 12, "seed": 7, "command": "panoptic-train --config tiny.yaml",
                              "train_seconds": 3, "config": TINY_CIAE})
    return tmp_path / "run"


def release(argv, capsys):
    code = release_cli.main([str(a) for a in argv])
    return code, capsys.readouterr()


def test_module_help_names_the_console_script():
    out = subprocess.run([sys.executable, "-m", "panoptic_ros.training.release", "--help"], capture_output=True,
                         text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("usage: panoptic-release ") and "--device DEVICE" in out.stdout


def test_release_writes_half_weights_and_a_reproducible_manifest(tmp_path, tiny_run, capsys):
    stem = tmp_path / "weights" / "tiny"
    code, out = release(["--run", tiny_run, "--stem", stem, "--val-seed", 5, "--val-count", 1, "--size", "64x128",
                         "--device", "cpu", "--set", "max_instances=5"], capsys)
    assert code == 0, out.err
    manifest = json.loads(stem.with_suffix(".manifest.json").read_text())
    assert manifest["sha256"] == sha256_file(stem.with_suffix(".safetensors")) and manifest["dtype"] == "float16"
    assert manifest["postprocess_overrides"] == {"max_instances": 5}
    assert json.loads(stem.with_suffix(".json").read_text())["postprocess"]["max_instances"] == 5
    val = manifest["validation"]
    assert (val["seed"], val["count"], val["size"], val["device"]) == (5, 1, [64, 128], "cpu")
    command = manifest["evaluate_command"].split()
    assert command[0] == "panoptic-evaluate"
    again = evaluate_cli.run(evaluate_cli.parse_args([*command[1:], "--device", "cpu"]))
    for group in ("All", "Things", "Stuff"):
        assert {m: again[group][m] for m in ("pq", "sq", "rq", "n")} == val[group]
    assert again["miou"] == val["miou"]


@pytest.mark.parametrize("extra, message", [
    (["--set", "bandwidth=0.6"], "postprocess.bandwidth: unknown key"),
    (["--val-seed", TRAIN_SEED], f"--val-seed {TRAIN_SEED} is the training seed of "),
    (["--device", "gpu"], "--device: device must be auto, cpu, cuda or cuda:N, got 'gpu'"),
])
def test_bad_input_is_one_line_exit_2_and_writes_nothing(tmp_path, tiny_run, capsys, extra, message):
    stem = tmp_path / "weights" / "tiny"
    code, out = release(["--run", tiny_run, "--stem", stem, "--val-count", 1, "--size", "64x128", *extra], capsys)
    assert code == 2 and out.err.startswith("panoptic-release: error: ") and out.err.count("\n") == 1
    assert message in out.err
    assert not stem.parent.exists()


def test_missing_run_is_named(tmp_path, capsys):
    code, out = release(["--run", tmp_path / "nope", "--stem", tmp_path / "w"], capsys)
    assert code == 2 and f"{tmp_path / 'nope' / 'model'}" in out.err and out.err.count("\n") == 1
