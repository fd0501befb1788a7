"""The ONNX export cache heals: a damaged cached file is moved aside with one warning and
exported again; an unusable cache folder is one clear error naming it."""
from __future__ import annotations

import logging

import numpy as np
import pytest

from panoptic_ros.inference import backends
from panoptic_ros.inference.predictor import Predictor
from panoptic_ros.tiny_models import write_tiny_checkpoint

SIZE = (128, 192)


@pytest.fixture(scope="module")
def ciae(tmp_path_factory):
    return write_tiny_checkpoint(tmp_path_factory.mktemp("onnx_cache_weights"), "ciae", input_size=SIZE)


def _load(weights, cache):
    return Predictor.from_checkpoint(weights, device="cpu", backend="onnxruntime", onnx_cache_dir=cache)


@pytest.mark.parametrize("damage", ["truncated", "empty"])
def test_a_damaged_cached_export_is_moved_aside_and_exported_again(ciae, tmp_path, caplog, damage):
    rgb = np.random.default_rng(4).integers(0, 256, (90, 150, 3), dtype=np.uint8)
    expected = _load(ciae, tmp_path).predict(rgb).panoptic
    (cached,) = (tmp_path / "onnx").glob("*.onnx")
    good = cached.read_bytes()
    # cut off, or empty: an empty file parses as a (graphless) ONNX protobuf message
    cached.write_bytes({"truncated": good[: len(good) // 3], "empty": b""}[damage])
    damaged = cached.read_bytes()
    with caplog.at_level(logging.WARNING, logger="panoptic_ros.inference"):
        healed = _load(ciae, tmp_path)
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and str(cached) in warnings[0].getMessage()
    assert "exporting again" in warnings[0].getMessage()
    assert cached.with_name(cached.name + ".broken").read_bytes() == damaged  # kept aside, not deleted
    np.testing.assert_array_equal(healed.predict(rgb).panoptic, expected)
    assert len(cached.read_bytes()) == len(good)
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="panoptic_ros.inference"):
        _load(ciae, tmp_path)  # healed for good: no second warning
    assert not [r for r in caplog.records if r.levelno == logging.WARNING]


def test_a_cache_folder_that_cannot_be_created_is_one_clear_error(ciae, tmp_path, monkeypatch):
    blocker = tmp_path / "a_file"
    blocker.write_text("x")
    with pytest.raises(backends.BackendError, match=f"{blocker / 'onnx'}: cannot create the ONNX cache"):
        _load(ciae, blocker)
    monkeypatch.setenv("XDG_CACHE_HOME", str(blocker))
    with pytest.raises(backends.BackendError, match=f"{blocker / 'panoptic_ros' / 'onnx'}: cannot create"):
        Predictor.from_checkpoint(ciae, device="cpu", backend="onnxruntime")
