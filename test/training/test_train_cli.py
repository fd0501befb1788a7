"""The three CLIs: user errors are one line and a non-zero exit; a non-finite loss stops
training naming the term and step; malicious pickles are refused without running;
evaluation writes the evaluator's dict and COCO predictions that re-score identically."""
import json

import pytest
import torch
import yaml

from panoptic_ros.checkpoint import load_checkpoint, save_checkpoint
from panoptic_ros.eval.cli import evaluate_coco_panoptic
from panoptic_ros.models.ciae import CIAE, CIAEConfig
from panoptic_ros.training import evaluate as evaluate_cli
from panoptic_ros.training import export as export_cli
from panoptic_ros.training import train as train_cli
from panoptic_ros.training.config import load_train_config

from test_checkpoint_safety import one_thread, write_evil_files  # noqa: F401 (autouse fixture)
from ort_reference import max_abs_differences
from test_resume import TINY_CIAE


def write_config(tmp_path, **sections):
    data = {**TINY_CIAE, **sections}
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def run_cli(main, argv, capsys):
    code = main([str(a) for a in argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.fixture
def tiny_checkpoint(tmp_path):
    torch.manual_seed(0)
    config = CIAEConfig(**{k: v for k, v in TINY_CIAE["model"].items() if k != "input_size"}, input_size=(64, 128))
    # a low score threshold so that even random weights produce thing segments
    save_checkpoint(tmp_path / "tiny", CIAE(config), config,
                    postprocess={**TINY_CIAE["postprocess"], "score_threshold": 0.05})
    return tmp_path / "tiny"


@pytest.mark.parametrize("override, message", [
    ("optimizer.lrr=0.1", "optimizer.lrr: unknown key"),
    ("optimizer.lr=fast", "optimizer.lr: expected float"),
    ("model.kind=unet", "kind: unknown model 'unet'"),
    ("model.depth=19", "model.depth: 19 is not one of"),
    ("data.synth_val.seed=3", "synth_train.seed and synth_val.seed must differ"),
    ("loss.margin=5", "margin: must lie in [0, 2)"),
])
def test_config_errors_name_the_key(tmp_path, capsys, override, message):
    code, _, err = run_cli(train_cli.main, ["--config", write_config(tmp_path), override], capsys)
    assert code == 2
    assert err.startswith(f"panoptic-train: error: {tmp_path / 'tiny.yaml'}: ") and message in err
    assert err.count("\n") == 1


def test_missing_config_file_is_one_line(tmp_path, capsys):
    code, _, err = run_cli(train_cli.main, ["--config", tmp_path / "nope.yaml"], capsys)
    assert code == 2 and "nope.yaml: cannot read config" in err and err.count("\n") == 1


def test_committed_recipes_validate():
    from pathlib import Path

    recipes = sorted(Path(train_cli.__file__).parent.glob("configs/*.yaml"))
    assert len(recipes) >= 2
    for recipe in recipes:
        load_train_config(recipe)


def test_non_finite_loss_stops_with_the_term_and_step(tmp_path, capsys):
    # An absurd learning rate makes the weights overflow after the first step.
    argv = ["--config", write_config(tmp_path), "--out", tmp_path / "run", "optimizer.lr=1.0e+30",
            "optimizer.grad_clip=0", "schedule.warmup_steps=0"]
    code, _, err = run_cli(train_cli.main, argv, capsys)
    assert code == 1
    last = err.strip().splitlines()[-1]
    assert last.startswith("panoptic-train: error: loss term '") and " at step " in last
    assert ("is nan" in last) or ("is inf" in last)
    assert "training failed, no model written" in last
    assert not (tmp_path / "run" / "model.safetensors").exists()


def test_resume_is_fresh_the_runs_latest_checkpoint_or_a_given_one(tmp_path):
    from panoptic_ros.checkpoint import CheckpointError
    from panoptic_ros.training.state import Resume, ResumeMode

    fresh, latest = Resume.from_flags(latest=False, path=None), Resume.from_flags(latest=True, path=None)
    assert fresh == Resume() and not fresh.continues and fresh.checkpoint(tmp_path) is None
    assert latest.mode is ResumeMode.LATEST and latest.continues
    assert latest.checkpoint(tmp_path) is None          # a run without checkpoints starts
    given = Resume.from_flags(latest=True, path=tmp_path / "elsewhere")   # --resume-from wins
    assert given == Resume(ResumeMode.FROM_PATH, tmp_path / "elsewhere") and given.continues
    with pytest.raises(CheckpointError, match="not a training checkpoint folder"):
        given.checkpoint(tmp_path)
    with pytest.raises(ValueError, match="a path goes with"):
        Resume(ResumeMode.LATEST, tmp_path)
    with pytest.raises(ValueError, match="a path goes with"):
        Resume(ResumeMode.FROM_PATH)


def test_malicious_pickles_are_refused_everywhere(tmp_path, capsys):
    marker, files = write_evil_files(tmp_path)
    for evil in files:
        code, _, err = run_cli(evaluate_cli.main, ["--checkpoint", evil, "--dataset", "synthstreet", "--count", "1"],
                               capsys)
        assert code == 2 and err.startswith("panoptic-evaluate: error:")
        code, _, err = run_cli(export_cli.main, ["--checkpoint", evil, "--out", tmp_path / "x.onnx"], capsys)
        assert code == 2 and err.startswith("panoptic-export: error:")
        config = write_config(tmp_path)
        code, _, err = run_cli(train_cli.main, ["--config", config, "--out", tmp_path / "r", "--resume-from", evil],
                               capsys)
        assert code == 2 and "never unpickled" in err
        code, _, err = run_cli(train_cli.main, ["--config", config, "--out", tmp_path / "r",
                                                f"init.checkpoint={evil}"], capsys)
        assert code == 2 and ("refused" in err or "not a readable safetensors" in err)
    assert not marker.exists()


def test_evaluate_writes_scores_and_rescorable_predictions(tmp_path, capsys, tiny_checkpoint):
    out = tmp_path / "pq.json"
    preds = tmp_path / "preds"
    argv = ["--checkpoint", tiny_checkpoint, "--dataset", "synthstreet", "--seed", 21, "--count", 2,
            "--size", "64x128", "--json-out", out, "--predictions-dir", preds]
    code, stdout, err = run_cli(evaluate_cli.main, argv, capsys)
    assert code == 0, err
    summary = json.loads(out.read_text())
    assert summary["images"] == 2 and set(summary) >= {"All", "Things", "Stuff", "per_class", "miou", "semantic"}
    assert "PQ" in stdout and "mIoU" in stdout
    rescored = evaluate_coco_panoptic(preds / "gt.json", preds / "gt", preds / "predictions.json",
                                      preds / "predictions").summarize()
    for group in ("All", "Things", "Stuff"):
        assert rescored[group] == pytest.approx(summary[group])
    # deterministic: a second run gives the same numbers
    assert run_cli(evaluate_cli.main, argv[:-4] + ["--json-out", tmp_path / "again.json"], capsys)[0] == 0
    assert json.loads((tmp_path / "again.json").read_text())["All"] == summary["All"]


def test_evaluate_user_errors(tmp_path, capsys, tiny_checkpoint):
    code, _, err = run_cli(evaluate_cli.main, ["--checkpoint", tmp_path / "none", "--dataset", "synthstreet"], capsys)
    assert code == 2 and "not found" in err and err.count("\n") == 1
    code, _, err = run_cli(evaluate_cli.main, ["--checkpoint", tiny_checkpoint, "--dataset", "coco"], capsys)
    assert code == 2 and "--root: required" in err
    weights = tiny_checkpoint.with_name("tiny.safetensors")
    weights.write_bytes(weights.read_bytes()[:1000])
    code, _, err = run_cli(evaluate_cli.main, ["--checkpoint", tiny_checkpoint, "--dataset", "synthstreet"], capsys)
    assert code == 2 and "tiny.safetensors: sha256 differs" in err and err.count("\n") == 1


def test_export_writes_an_onnx_model_with_parity(tmp_path, capsys, tiny_checkpoint):
    code, stdout, err = run_cli(export_cli.main, ["--checkpoint", tiny_checkpoint, "--out", tmp_path / "m.onnx"],
                                capsys)
    assert code == 0, err
    assert (tmp_path / "m.onnx").is_file()
    printed = {line.split(":")[0].strip(): float(line.rsplit("=", 1)[1]) for line in stdout.splitlines()[1:]}
    # the printed figures are what onnxruntime's own API gives on the command's image
    # (seed 0), to the 3 significant digits printed; the export itself agrees to 1e-4
    images = torch.rand(1, 3, 64, 128, generator=torch.Generator().manual_seed(0)) * 255
    diffs = max_abs_differences(load_checkpoint(tiny_checkpoint).model, tmp_path / "m.onnx", images)
    assert set(printed) == set(diffs) == set(CIAE.OUTPUT_NAMES)
    for name, diff in diffs.items():
        assert printed[name] == pytest.approx(diff, rel=5e-3, abs=1e-12), name
    assert max(diffs.values()) <= 1e-4, diffs


def test_unknown_post_processing_key_is_named(tiny_checkpoint, capsys):
    argv = ["--checkpoint", tiny_checkpoint, "--dataset", "synthstreet", "--count", 1, "--size", "64x128",
            "--set", "bandwidth=0.6"]
    code, _, err = run_cli(evaluate_cli.main, argv, capsys)
    assert code == 2 and err.count("\n") == 1
    assert err.startswith("panoptic-evaluate: error: postprocess.bandwidth: unknown key (known: ")


def test_export_bad_input_is_one_line_and_exit_2(tmp_path, capsys, tiny_checkpoint):
    code, _, err = run_cli(export_cli.main, ["--checkpoint", tiny_checkpoint, "--out", tmp_path / "m.onnx",
                                             "--opset", 12], capsys)
    assert (code, err) == (2, "panoptic-export: error: opset: must be >= 17, got 12\n")
    (tmp_path / "file").write_text("")
    code, _, err = run_cli(export_cli.main, ["--checkpoint", tiny_checkpoint, "--out", tmp_path / "file" / "m.onnx"],
                           capsys)
    assert code == 2 and err.startswith(f"panoptic-export: error: cannot write {tmp_path / 'file' / 'm.onnx'}: ")
    assert err.count("\n") == 1


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message where CUDA is missing")
def test_train_device_flag_sets_runtime_device(tmp_path, capsys):
    argv = ["--config", write_config(tmp_path), "--out", tmp_path / "run", "--device", "cuda"]
    code, _, err = run_cli(train_cli.main, argv, capsys)
    assert (code, err) == (2, "panoptic-train: error: runtime.device: 'cuda' asked for, but CUDA is not "
                              "available on this machine\n")
    assert not (tmp_path / "run").exists()


def test_help_examples_use_real_post_processing_keys(capsys):
    import dataclasses
    import re

    from panoptic_ros.config import from_dict
    from panoptic_ros.postprocess.ciae import CIAEPostprocessConfig
    from panoptic_ros.postprocess.panonet import PanoNetPostprocessConfig

    with pytest.raises(SystemExit):
        evaluate_cli.parse_args(["--help"])
    help_text = capsys.readouterr().out
    items = [a or b for a, b in re.findall(r'--set\s+"([^"]+)"|--set\s+([a-z_]+=\S+)', help_text)]
    settings = evaluate_cli.parse_settings(items)
    assert {"default_bandwidth", "min_area", "bandwidths", "score_threshold"} <= set(settings)
    for cls in (PanoNetPostprocessConfig, CIAEPostprocessConfig):
        fields = {f.name for f in dataclasses.fields(cls)}
        from_dict(cls, {k: v for k, v in settings.items() if k in fields}, "postprocess")  # values accepted
        settings = {k: v for k, v in settings.items() if k not in fields}
    assert settings == {}   # every example key is a field of one of the two configs
