"""panoptic-bandwidth-search: selection rule, checkpoint update, CLI errors."""
import json

import numpy as np

import pytest
import torch

from panoptic_ros.checkpoint import load_checkpoint, read_checkpoint_meta, save_checkpoint
from panoptic_ros.labels import CITYSCAPES
from panoptic_ros.models.panonet import PanoNet, PanoNetConfig
from panoptic_ros.postprocess.panonet import PanoNetPostprocessConfig
from panoptic_ros.training import bandwidth_search
from panoptic_ros.training.bandwidth_search import best_bandwidths, main, parse_bandwidths, sweep
from panoptic_ros.types import PanopticResult

CAR, PERSON, BUS = 26, 24, 28


def row(**pq):
    """One bandwidth's per-class table: classes given as name=pq were seen."""
    ids = {"car": CAR, "person": PERSON}
    table = {c.id: {"pq": 0.0, "seen": False} for c in CITYSCAPES.categories}
    for name, value in pq.items():
        table[ids[name]] = {"pq": value, "seen": True}
    return table


def test_best_bandwidth_per_class_with_ties_nearest_the_current_value():
    table = {0.3: row(car=0.5, person=0.2), 0.5: row(car=0.7, person=0.4), 0.8: row(car=0.6, person=0.4)}
    current = PanoNetPostprocessConfig(bandwidths={"person": 0.9})
    # person: 0.5 and 0.8 tie at 0.4; 0.8 is nearer its current 0.9. Unseen classes are left out.
    assert best_bandwidths(table, current, CITYSCAPES) == {"car": 0.5, "person": 0.8}


def test_parse_bandwidths():
    assert parse_bandwidths("0.5, 0.3,0.5") == (0.3, 0.5)
    for bad in ("", "0.3,x", "0,0.5"):
        with pytest.raises(Exception, match="bandwidths"):
            parse_bandwidths(bad)


@pytest.fixture()
def tiny_checkpoint(tmp_path):
    torch.manual_seed(0)
    config = PanoNetConfig(width=0.125, blocks=(1, 1, 1, 1), input_size=(64, 128))
    save_checkpoint(tmp_path / "pn", PanoNet(config), config,
                    postprocess={"min_area": 10, "bandwidths": {"bus": 0.9}}, metadata={"step": 7})
    return tmp_path / "pn"


def test_cli_sweeps_and_writes_bandwidths(tiny_checkpoint, capsys, monkeypatch):
    # Give the sweep a known answer: every seen class is best at 0.4.
    real_sweep = bandwidth_search.sweep

    def sweep(cached, bandwidths, current, label_space):
        table = real_sweep(cached, bandwidths, current, label_space)
        for b, per_class in table.items():
            for cid in (CAR, PERSON):
                per_class[cid] = {"pq": 1.0 if b == 0.4 else 0.5, "seen": True}
        return table

    monkeypatch.setattr(bandwidth_search, "sweep", sweep)
    before = read_checkpoint_meta(tiny_checkpoint)
    assert main(["--checkpoint", str(tiny_checkpoint), "--count", "2", "--size", "64x128",
                 "--bandwidths", "0.4,0.6", "--write"]) == 0
    out = capsys.readouterr().out
    assert "car=0.4" in out and "person=0.4" in out and "wrote postprocess.bandwidths" in out
    after = read_checkpoint_meta(tiny_checkpoint)
    assert after["postprocess"]["bandwidths"]["car"] == 0.4 and after["postprocess"]["bandwidths"]["bus"] in (0.4, 0.6, 0.9)
    assert after["postprocess"]["min_area"] == 10
    assert after["weights_sha256"] == before["weights_sha256"] and after["metadata"] == {"step": 7}
    assert load_checkpoint(tiny_checkpoint).postprocess["bandwidths"]["person"] == 0.4


def test_cli_runs_the_real_sweep(tiny_checkpoint, capsys):
    assert main(["--checkpoint", str(tiny_checkpoint), "--count", "1", "--size", "64x128",
                 "--bandwidths", "0.5"]) == 0
    assert "bandwidth" in capsys.readouterr().out
    assert json.loads(tiny_checkpoint.with_suffix(".json").read_text())["postprocess"]["bandwidths"] == {"bus": 0.9}


def test_cli_reports_user_errors_without_traceback(tmp_path, capsys):
    assert main(["--checkpoint", str(tmp_path / "missing"), "--count", "1", "--size", "64x128"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("panoptic-bandwidth-search: error:") and "missing" in err and "Traceback" not in err


def two_cars_one_unit_apart():
    """(ground truth, PanoNet outputs) of a 32 x 64 road with two 16 x 16 cars whose cell
    embeddings are the points (0, 0) and (1, 0): one instance each below bandwidth 1, one
    merged blob at bandwidth 1 and above."""
    car, road = CITYSCAPES.train_index(CAR), CITYSCAPES.train_index(7)
    panoptic = np.full((32, 64), 7000, np.int32)
    panoptic[8:24, 8:24] = 26001
    panoptic[8:24, 40:56] = 26002
    target = PanopticResult.from_panoptic_map(panoptic, CITYSCAPES)
    semantic = torch.where(torch.from_numpy(panoptic) > 7000, car, road)[None]
    cells = semantic[0, ::4, ::4]                                               # (8, 16)
    logits = torch.nn.functional.one_hot(cells, CITYSCAPES.num_classes).permute(2, 0, 1)[None].float() * 10
    embedding = torch.zeros(1, 2, 8, 16)
    embedding[0, 0, :, 8:] = 1.0                                                # right car at (1, 0)
    return target, {"semantic": semantic, "semantic_logits": logits, "embedding": embedding}


def test_sweep_evaluates_each_candidate_bandwidth():
    # Hand-worked: at 0.4 and 0.6 the cars are separate instances (PQ 1); at 1.5 they are one
    # segment whose IoU with either car is exactly 0.5, not a match (PQ 0: 1 FP, 2 FN).
    cached = [two_cars_one_unit_apart()]
    current = PanoNetPostprocessConfig(default_bandwidth=0.5, min_area=16)
    table = sweep(cached, (0.4, 0.6, 1.5), current, CITYSCAPES)
    assert [table[b][CAR]["pq"] for b in (0.4, 0.6, 1.5)] == [1.0, 1.0, 0.0]
    assert all(table[b][CAR]["seen"] and not table[b][PERSON]["seen"] for b in table)
    assert table[1.5][7]["pq"] == 1.0                           # road does not depend on it
    # ...and a current setting that merges them does not leak into the candidates
    merged = PanoNetPostprocessConfig(default_bandwidth=1.5, bandwidths={"car": 1.5}, min_area=16)
    assert sweep(cached, (0.4,), merged, CITYSCAPES)[0.4][CAR]["pq"] == 1.0
    assert best_bandwidths(table, merged, CITYSCAPES)["car"] == 0.6   # the tie goes nearer to 1.5
