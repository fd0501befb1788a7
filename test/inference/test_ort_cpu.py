"""ONNX Runtime on the CPU: thread settings (spin-waiting can be turned off) and int8."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from panoptic_ros.inference import backends
from panoptic_ros.inference.backends import OrtThreading
from panoptic_ros.inference.predictor import Predictor, PredictorConfig
from panoptic_ros.inference.quantize import Int8Settings, frame_reader, int8_cache_path
from panoptic_ros.tiny_models import write_tiny_checkpoint

SIZE = (128, 192)   # CIAE exports at any size divisible by its stride


@pytest.fixture(scope="module")
def ciae(tmp_path_factory) -> Path:
    return write_tiny_checkpoint(tmp_path_factory.mktemp("ort_cpu"), "ciae", input_size=SIZE)


def _entries(threading: OrtThreading) -> dict[str, str]:
    options = threading.session_options()
    return {key: options.get_session_config_entry(key)
            for key in ("session.intra_op.allow_spinning", "session.inter_op.allow_spinning")}


def test_ort_threads_sleep_by_default_and_spin_when_asked():
    import onnxruntime as ort

    default = OrtThreading().session_options()
    assert _entries(OrtThreading()) == {"session.intra_op.allow_spinning": "0",
                                        "session.inter_op.allow_spinning": "0"}
    assert _entries(OrtThreading(spin_wait=True)) == {"session.intra_op.allow_spinning": "1",
                                                      "session.inter_op.allow_spinning": "1"}
    assert default.execution_mode == ort.ExecutionMode.ORT_SEQUENTIAL and default.inter_op_num_threads == 1
    parallel = OrtThreading(intra_op_threads=2, inter_op_threads=3, execution_mode="parallel").session_options()
    assert (parallel.intra_op_num_threads, parallel.inter_op_num_threads) == (2, 3)
    assert parallel.execution_mode == ort.ExecutionMode.ORT_PARALLEL


@pytest.mark.parametrize("bad", [{"intra_op_threads": -1}, {"inter_op_threads": -2}, {"execution_mode": "async"}])
def test_bad_ort_thread_settings_are_refused(bad):
    with pytest.raises(ValueError, match=next(iter(bad)).split("_")[0]):
        OrtThreading(**bad)


def test_spinning_or_not_the_predictor_gives_the_same_result(ciae, tmp_path):
    rgb = np.random.default_rng(0).integers(0, 256, (100, 150, 3), dtype=np.uint8)
    results = [Predictor.from_checkpoint(ciae, device="cpu", backend="onnxruntime", onnx_cache_dir=tmp_path,
                                         onnx_spin_wait=spin, num_threads=1).predict(rgb).panoptic
               for spin in (False, True)]
    np.testing.assert_array_equal(*results)


def test_int8_needs_the_onnxruntime_backend(ciae):
    with pytest.raises(ValueError, match="int8 needs backend onnxruntime"):
        PredictorConfig(weights=ciae, backend="torch", precision="int8")
    assert PredictorConfig(weights=ciae, backend="onnxruntime", precision="int8").precision == "int8"
    assert PredictorConfig(weights=ciae, precision="int8").backend == "auto"  # auto then picks onnxruntime


def test_the_calibration_reader_feeds_each_frame_once_as_nchw_float():
    frames = [np.full((4, 6, 3), k, np.uint8) for k in (1, 2)]
    reader = frame_reader("images", frames)
    feeds = [reader.get_next(), reader.get_next(), reader.get_next()]
    assert feeds[2] is None
    for k, feed in zip((1, 2), feeds):
        assert list(feed) == ["images"] and feed["images"].shape == (1, 3, 4, 6)
        assert feed["images"].dtype == np.float32 and (feed["images"] == k).all()


def test_int8_is_quantized_once_next_to_the_float_export_and_reused(ciae, tmp_path):
    predictor = Predictor.from_checkpoint(ciae, device="cpu", backend="onnxruntime", precision="int8",
                                          onnx_cache_dir=tmp_path)
    exported = sorted((tmp_path / "onnx").glob("*.onnx"))
    assert len(exported) == 2
    float_path = next(p for p in exported if "-int8-" not in p.name)
    int8_path = int8_cache_path(float_path, Int8Settings())
    assert int8_path in exported and predictor._backend.onnx_path == int8_path
    import onnx

    ops = {node.op_type for node in onnx.load(str(int8_path)).graph.node}
    assert {"QuantizeLinear", "DequantizeLinear"} <= ops
    mtime = int8_path.stat().st_mtime_ns
    Predictor.from_checkpoint(ciae, device="cpu", backend="onnxruntime", precision="int8", onnx_cache_dir=tmp_path)
    assert int8_path.stat().st_mtime_ns == mtime


def test_quantize_int8_settings_change_the_cache_name_and_are_checked(tmp_path):
    base = tmp_path / "model.onnx"
    names = {int8_cache_path(base, s).name for s in (Int8Settings(), Int8Settings(calibration_frames=4),
                                                     Int8Settings(method="entropy"), Int8Settings(per_channel=False))}
    assert len(names) == 4 and all(n.startswith("model-int8-c") for n in names)
    with pytest.raises(ValueError, match="method"):
        Int8Settings(method="mse")
    with pytest.raises(ValueError, match="calibration_frames"):
        Int8Settings(calibration_frames=0)


def test_a_failed_quantization_is_a_backend_error_naming_the_file(ciae, tmp_path):
    from panoptic_ros.inference.onnx_cache import quantized_onnx

    broken = tmp_path / "broken.onnx"
    broken.write_bytes(b"not a model")
    with pytest.raises(backends.BackendError, match="broken.onnx: int8 quantization"):
        quantized_onnx(broken, input_size=SIZE, settings=Int8Settings(calibration_frames=1))
