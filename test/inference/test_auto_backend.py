"""``backend: auto``: the choice per device and model, its log line, and the fall-back to
torch when ONNX Runtime cannot be set up."""
from __future__ import annotations

import logging
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from panoptic_ros.inference.auto import MEASURED_FASTEST, choose_backend
from panoptic_ros.inference.backends import BackendError
from panoptic_ros.inference.predictor import Predictor, PredictorConfig
from panoptic_ros.tiny_models import write_tiny_checkpoint

CPU, CUDA = torch.device("cpu"), torch.device("cuda", 0)
PREDICTOR_LOG = "panoptic_ros.inference.predictor"


@pytest.fixture(scope="module")
def ciae(tmp_path_factory) -> Path:
    return write_tiny_checkpoint(tmp_path_factory.mktemp("auto_weights"), "ciae")


def _frame(seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (100, 160, 3), dtype=np.uint8)


@pytest.mark.parametrize("kind", ["panonet", "ciae"])
def test_auto_takes_the_measured_backend_per_device(kind):
    assert choose_backend("auto", kind=kind, device=CPU, precision="fp32").backend == "onnxruntime"
    assert choose_backend("auto", kind=kind, device=CUDA, precision="fp32").backend == "torch"
    assert {MEASURED_FASTEST[("cpu", kind)], MEASURED_FASTEST[("cuda", kind)]} == {"onnxruntime", "torch"}


@pytest.mark.parametrize("settings, backend", [
    ({"precision": "int8"}, "onnxruntime"),
    ({"precision": "bf16"}, "torch"),
    ({"precision": "fp16"}, "torch"),
    ({"precision": "fp32", "torch_only_options": True}, "torch"),
    ({"precision": "fp32", "onnx_file": True}, "onnxruntime"),
])
def test_auto_keeps_the_precision_and_settings_that_only_one_backend_has(settings, backend):
    assert choose_backend("auto", kind="panonet", device=CPU, **settings).backend == backend


@pytest.mark.parametrize("name", ["torch", "onnxruntime"])
def test_a_backend_asked_for_is_kept(name):
    choice = choose_backend(name, kind="ciae", device=CUDA, precision="fp32")
    assert (choice.requested, choice.backend, choice.describe()) == (name, name, name)


def test_auto_is_the_default_and_refuses_nothing_torch_refuses():
    assert PredictorConfig(weights=Path("w")).backend == "auto"
    assert PredictorConfig(weights=Path("w"), precision="int8").backend == "auto"
    with pytest.raises(ValueError, match="int8 needs backend onnxruntime"):
        PredictorConfig(weights=Path("w"), backend="torch", precision="int8")


def test_auto_resolves_on_the_cpu_and_logs_its_choice_once(ciae, tmp_path, caplog):
    with caplog.at_level(logging.INFO, logger=PREDICTOR_LOG):
        predictor = Predictor.from_checkpoint(ciae, device="cpu", onnx_cache_dir=tmp_path)
    assert predictor.backend_name == "onnxruntime" and predictor.precision == "fp32"
    assert (predictor.backend_choice.requested, predictor.backend_choice.backend) == ("auto", "onnxruntime")
    choices = [r for r in caplog.records if r.name == PREDICTOR_LOG and "auto -> onnxruntime" in r.getMessage()]
    assert len(choices) == 1 and "measured fastest" in choices[0].getMessage()
    assert list((tmp_path / "onnx").glob("*.onnx")), "the export was cached on first use"
    explicit = Predictor.from_checkpoint(ciae, device="cpu", backend="onnxruntime", onnx_cache_dir=tmp_path)
    np.testing.assert_array_equal(predictor.predict(_frame()).panoptic, explicit.predict(_frame()).panoptic)


def _unusable_cache(tmp_path: Path) -> Path:
    """A cache 'folder' that is a file: the export cannot be written there."""
    path = tmp_path / "not_a_folder"
    path.write_text("")
    return path


def test_a_failed_export_falls_back_to_torch_with_one_warning(ciae, tmp_path, caplog):
    with caplog.at_level(logging.INFO):
        predictor = Predictor.from_checkpoint(ciae, device="cpu", onnx_cache_dir=_unusable_cache(tmp_path))
    warnings = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warnings) == 1 and "fell back to torch" in warnings[0].getMessage()
    assert "cannot create the ONNX cache" in warnings[0].getMessage()
    assert predictor.backend_name == "torch" and predictor.backend_choice.requested == "auto"
    assert "fell back to torch" in predictor.backend_choice.describe()
    torch_result = Predictor.from_checkpoint(ciae, device="cpu", backend="torch").predict(_frame())
    np.testing.assert_array_equal(predictor.predict(_frame()).panoptic, torch_result.panoptic)


def test_missing_onnxruntime_falls_back_to_torch_with_one_warning(ciae, tmp_path, caplog, monkeypatch):
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # `import onnxruntime` raises ImportError
    with caplog.at_level(logging.WARNING):
        predictor = Predictor.from_checkpoint(ciae, device="cpu", onnx_cache_dir=tmp_path)
    assert predictor.backend_name == "torch"
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING] == [
        f"backend auto: {predictor.backend_choice.reason}"]
    assert "import of onnxruntime" in predictor.backend_choice.reason


def test_explicit_onnxruntime_and_auto_int8_still_fail_loudly(ciae, tmp_path):
    unusable = _unusable_cache(tmp_path)
    with pytest.raises(BackendError, match="cannot create the ONNX cache"):
        Predictor.from_checkpoint(ciae, device="cpu", backend="onnxruntime", onnx_cache_dir=unusable)
    with pytest.raises(BackendError, match="cannot create the ONNX cache"):  # int8 exists only as ONNX
        Predictor.from_checkpoint(ciae, device="cpu", precision="int8", onnx_cache_dir=unusable)
