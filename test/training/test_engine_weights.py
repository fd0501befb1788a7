"""The shipped demo weights: manifests match their files, the files are small float16
checkpoints that load and predict at 512x1024, validation seeds differ from training ones."""
import json
from pathlib import Path

import numpy as np
import pytest

from panoptic_ros.checkpoint import load_checkpoint, read_checkpoint_meta, sha256_file

WEIGHTS = Path(__file__).resolve().parents[2] / "weights"
STEMS = ("panonet_synthstreet", "panonet_synthstreet_nocoords", "ciae_synthstreet")


@pytest.mark.parametrize("stem", STEMS)
def test_manifest_describes_its_file(stem):
    manifest = json.loads((WEIGHTS / f"{stem}.manifest.json").read_text())
    weights = WEIGHTS / manifest["weights"]
    meta = read_checkpoint_meta(WEIGHTS / stem)
    assert manifest["weights"] == f"{stem}.safetensors"
    assert manifest["sha256"] == sha256_file(weights) == meta["weights_sha256"]
    assert manifest["bytes"] == weights.stat().st_size and meta["dtype"] == "float16"
    assert manifest["steps"] == manifest["config"]["schedule"]["total_steps"] > 0
    assert manifest["command"].startswith("panoptic-train --config training/configs/")
    val = manifest["validation"]
    assert val["seed"] != manifest["config"]["data"]["synth_train"]["seed"]
    assert val["size"] == [512, 1024] and val["count"] >= 50
    assert manifest["evaluate_command"] == (f"panoptic-evaluate --checkpoint weights/{stem} --dataset synthstreet "
                                            f"--seed {val['seed']} --count {val['count']} --size 512x1024")
    for group in ("All", "Things", "Stuff"):
        assert 0 <= val[group]["pq"] <= val[group]["sq"] <= 1 and 0 <= val[group]["rq"] <= 1


def test_weights_are_small():
    total = sum((WEIGHTS / f"{stem}.safetensors").stat().st_size for stem in STEMS)
    assert total < 20e6


def test_the_ablation_differs_only_in_coordinates():
    with_coords = json.loads((WEIGHTS / "panonet_synthstreet.manifest.json").read_text())["config"]["model"]
    without = json.loads((WEIGHTS / "panonet_synthstreet_nocoords.manifest.json").read_text())["config"]["model"]
    assert with_coords["use_coords"] is True and without["use_coords"] is False
    assert {k: v for k, v in with_coords.items() if k != "use_coords"} == \
        {k: v for k, v in without.items() if k != "use_coords"}


@pytest.mark.parametrize("stem", STEMS)
def test_weights_load_and_predict_at_512x1024(stem):
    from panoptic_ros.inference.predictor import Predictor
    from panoptic_ros.synthstreet.scene import generate_scene

    loaded = load_checkpoint(WEIGHTS / stem)
    assert tuple(loaded.model_config.input_size) == (512, 1024)
    sample = generate_scene(4242, 0)
    result = Predictor.from_checkpoint(WEIGHTS / stem, device="cpu").predict(sample.image)
    assert result.panoptic.shape == (512, 1024)
    # a trained model labels most of a street scene
    assert np.mean(result.panoptic > 0) > 0.5
