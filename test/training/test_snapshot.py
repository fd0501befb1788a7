"""panoptic-snapshot: a run's newest model as float16, the chain of pieces recorded, a next
piece that starts from the snapshot alone, and a release manifest that lists every piece."""
import json
import shutil

import torch

from panoptic_ros.checkpoint import load_checkpoint
from panoptic_ros.training import snapshot as snapshot_cli
from panoptic_ros.training import train as train_cli

from test_checkpoint_safety import one_thread  # noqa: F401 (autouse fixture)
from test_resume import TINY_CIAE, write_config


def _train(tmp_path, name, **changes):
    data = {**TINY_CIAE, "schedule": {**TINY_CIAE["schedule"], "total_steps": 6},
            "eval": {"count": 1, "images": 0}, **changes}
    folder = tmp_path / name
    folder.mkdir()
    assert train_cli.main(["--config", str(write_config(folder, data)), "--out", str(tmp_path / "runs" / name)]) == 0
    return tmp_path / "runs" / name


def test_a_chain_of_two_pieces_is_recorded_and_the_second_starts_from_the_snapshot(tmp_path, capsys):
    first = _train(tmp_path, "first")
    # An interrupted piece: only its step-3 checkpoint is left.
    (first / "model.json").unlink()
    (first / "model.safetensors").unlink()
    shutil.rmtree(first / "checkpoints" / "step_00000006")
    stem = tmp_path / "weights" / "first"
    assert snapshot_cli.main(["--run", str(first), "--out", str(stem)]) == 0
    assert "step 3 of 6 (interrupted)" in capsys.readouterr().out
    shipped = json.loads((tmp_path / "weights" / "first.json").read_text())
    assert shipped["dtype"] == "float16"
    (piece,) = shipped["metadata"]["chain"]
    assert piece["run"] == "first" and piece["step"] == 3 and piece["total_steps"] == 6
    assert piece["finished"] is False and piece["train_seconds"] >= 0 and piece["init"]["checkpoint"] is None

    # The run folder may be gone: the next piece starts from the snapshot alone.
    snap = load_checkpoint(stem).model.state_dict()
    shutil.rmtree(first)
    second = _train(tmp_path, "second", init={"mode": "none", "checkpoint": str(stem)})
    assert snapshot_cli.main(["--run", str(second), "--out", str(tmp_path / "weights" / "second")]) == 0
    chain = json.loads((tmp_path / "weights" / "second.json").read_text())["metadata"]["chain"]
    assert [p["run"] for p in chain] == ["first", "second"]
    assert chain[1]["finished"] is True and chain[1]["step"] == 6 and chain[1]["init"]["checkpoint"] == str(stem)
    loaded = f"{len(snap)}/{len(snap)} tensors from {stem}"
    assert loaded in capsys.readouterr().err


def test_snapshot_of_a_folder_that_is_no_run_is_one_line_and_exit_2(tmp_path, capsys):
    assert snapshot_cli.main(["--run", str(tmp_path), "--out", str(tmp_path / "x")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("panoptic-snapshot: error: ") and str(tmp_path) in err and err.count("\n") == 1


def test_the_snapshot_holds_the_newest_weights_in_float16(tmp_path):
    run = _train(tmp_path, "run")
    assert snapshot_cli.main(["--run", str(run), "--out", str(tmp_path / "snap")]) == 0
    trained = load_checkpoint(run / "model").model.state_dict()
    snap = load_checkpoint(tmp_path / "snap").model.state_dict()
    for name, tensor in trained.items():
        expected = tensor.half().float() if tensor.is_floating_point() else tensor
        assert torch.equal(snap[name], expected), name
