"""The Predictor: one API over both models and both backends."""
from __future__ import annotations

import dataclasses
import logging
from pathlib import Path

import numpy as np
import pytest
import torch

import panoptic_ros
from panoptic_ros.checkpoint import CheckpointError, load_checkpoint, read_checkpoint_meta
from panoptic_ros.config import ConfigError
from panoptic_ros.inference import backends
from panoptic_ros.inference.onnx_cache import onnx_cache_name
from panoptic_ros.inference.predictor import Predictor, PredictorConfig, resize_image
from panoptic_ros.kinds import model_kind
from panoptic_ros.labels import CITYSCAPES
from panoptic_ros.tiny_models import write_tiny_checkpoint

# PanoNet's pyramid pooling exports to ONNX only where 1/32 of the input divides by its bins.
SIZES = {"ciae": (128, 192), "panonet": (192, 384)}
KINDS = sorted(SIZES)


@pytest.fixture(scope="module")
def weights(tmp_path_factory) -> dict[str, Path]:
    directory = tmp_path_factory.mktemp("predictor_weights")
    return {kind: write_tiny_checkpoint(directory, kind, input_size=size) for kind, size in SIZES.items()}


def _frame(height=90, width=150, seed=0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)


def _area_weights(n_in: int, n_out: int) -> np.ndarray:
    """(n_out, n_in): output pixel i averages the source interval [i s, (i + 1) s), s = n_in / n_out,
    each source pixel weighted by its overlap."""
    s = n_in / n_out
    lo, hi = np.arange(n_out)[:, None] * s, (np.arange(n_out)[:, None] + 1) * s
    j = np.arange(n_in)[None, :]
    return np.clip(np.minimum(hi, j + 1) - np.maximum(lo, j), 0, None) / s


def _bilinear_weights(n_in: int, n_out: int) -> np.ndarray:
    """(n_out, n_in): half-pixel centres, src = (i + 0.5) n_in / n_out - 0.5, clamped at the edges."""
    src = np.clip((np.arange(n_out) + 0.5) * n_in / n_out - 0.5, 0, n_in - 1)
    j0 = np.floor(src).astype(int)
    j1 = np.minimum(j0 + 1, n_in - 1)
    w = np.zeros((n_out, n_in))
    np.add.at(w, (np.arange(n_out), j0), 1 - (src - j0))
    np.add.at(w, (np.arange(n_out), j1), src - j0)
    return w


def reference_resize(rgb: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Area averaging when the image shrinks, bilinear otherwise, as separable weights (float)."""
    shrink = size[0] * size[1] < rgb.shape[0] * rgb.shape[1]
    weights = _area_weights if shrink else _bilinear_weights
    wy, wx = weights(rgb.shape[0], size[0]), weights(rgb.shape[1], size[1])
    return np.einsum("yh,hwc,xw->yxc", wy, rgb.astype(np.float64), wx)


def _source_under_centres(n_in: int, n_out: int) -> tuple[np.ndarray, np.ndarray]:
    """Per output pixel i, the source pixel under its centre, (i + 0.5) n_in / n_out in exact
    integer arithmetic: (lower, upper) candidates, different only where the centre lies
    exactly on the border of two source pixels (either is right; OpenCV picks the lower)."""
    numerator, denominator = (2 * np.arange(n_out) + 1) * n_in, 2 * n_out
    upper = numerator // denominator
    lower = np.maximum(-(-numerator // denominator) - 1, 0)
    return lower, upper


def assert_nearest_resize(resized: np.ndarray, source: np.ndarray) -> None:
    """``resized`` is the centre-aligned nearest-neighbour resize of ``source``."""
    (y0, y1), (x0, x1) = (_source_under_centres(n, m) for n, m in zip(source.shape, resized.shape))
    candidates = [source[ys[:, None], xs[None, :]] for ys in (y0, y1) for xs in (x0, x1)]
    assert np.logical_or.reduce([resized == c for c in candidates]).all()
    assert (resized == candidates[-1]).mean() > 0.9    # ties are the exception


@pytest.mark.parametrize("size", [(90, 150), (60, 100), (45, 75), (37, 61), (180, 300), (120, 211)])
def test_resize_image_is_area_when_shrinking_and_bilinear_otherwise(size):
    rgb = _frame()   # (90, 150) noise: any other interpolation is tens of levels off
    resized = resize_image(rgb, size)
    assert resized.shape == size + (3,) and resized.dtype == np.uint8
    # OpenCV's fixed-point weights round to within one level of the exact value
    np.testing.assert_allclose(resized, reference_resize(rgb, size), atol=1.0)


@pytest.mark.parametrize("kind", KINDS)
def test_predict_is_resize_model_postprocess_resize(weights, kind, monkeypatch):
    predictor = Predictor.from_checkpoint(weights[kind], device="cpu", backend="torch")  # compared with torch
    size = SIZES[kind]
    assert (predictor.kind, predictor.label_space, predictor.input_size) == (kind, CITYSCAPES, size)
    assert (predictor.backend_name, predictor.device) == ("torch", torch.device("cpu"))
    seen = []
    run_backend = predictor._run_backend
    monkeypatch.setattr(predictor, "_run_backend", lambda image: seen.append(image) or run_backend(image))
    rgb = _frame()
    result = predictor.predict(rgb)
    assert result.panoptic.shape == (90, 150)
    result.validate()
    timings = predictor.last_timings
    assert timings.preprocess_ms > 0 and timings.model_ms > 0 and timings.postprocess_ms > 0
    assert timings.total_ms == pytest.approx(timings.preprocess_ms + timings.model_ms + timings.postprocess_ms)

    # 1. the network saw the frame resized to its input size (bilinear: 90 x 150 grows)
    (image,) = seen
    assert image.shape == size + (3,)
    np.testing.assert_allclose(image, reference_resize(rgb, size), atol=1.0)
    # 2. its outputs were post-processed at the input size
    checkpoint = load_checkpoint(weights[kind])
    config_cls, postprocess = model_kind(kind).postprocess_config, model_kind(kind).postprocess
    with torch.inference_mode():
        outputs = checkpoint.model(torch.from_numpy(image).permute(2, 0, 1)[None].float())
    model_result = postprocess(outputs, config=config_cls(**checkpoint.postprocess), label_space=CITYSCAPES)
    np.testing.assert_array_equal(predictor.last_model_result.panoptic, model_result.panoptic)
    # 3. and the id map was brought back to the frame's size, centre-aligned
    assert_nearest_resize(result.panoptic, model_result.panoptic)
    assert {s.id: s.score for s in result.segments} == \
        {s.id: s.score for s in model_result.segments if (result.panoptic == s.id).any()}

    out = np.zeros((90, 150), np.int32)  # e.g. the pixels of the node's ~/panoptic message
    into = predictor.predict(rgb, panoptic_out=out)
    assert into.panoptic is out and into.segments == result.segments
    np.testing.assert_array_equal(out, result.panoptic)


def test_channels_last_gives_the_same_result(weights):
    rgb = _frame(seed=2)
    plain = Predictor.from_checkpoint(weights["ciae"], device="cpu", warmup=False).predict(rgb)
    nhwc = Predictor.from_checkpoint(weights["ciae"], device="cpu", channels_last=True).predict(rgb)
    # NHWC convolutions round differently (~1e-6): a pixel whose best two queries tie to
    # that precision, or that sits on a predicted box edge, may flip; nothing else may.
    assert (nhwc.panoptic != plain.panoptic).mean() <= 1e-3
    assert [s.id for s in nhwc.segments] == [s.id for s in plain.segments]


@pytest.mark.parametrize("kind", KINDS)
def test_input_size_override_and_any_image_size(weights, kind):
    predictor = Predictor.from_checkpoint(weights[kind], device="cpu", input_size=(64, 96))
    assert predictor.input_size == (64, 96)
    for shape in ((30, 40), (200, 120), (64, 96)):
        assert predictor.predict(_frame(*shape)).panoptic.shape == shape


def test_post_processing_changes_apply_to_the_next_frame(weights):
    predictor = Predictor.from_checkpoint(weights["ciae"], device="cpu")
    rgb = _frame()
    assert any(s.is_thing for s in predictor.predict(rgb).segments)
    updated = predictor.update_postprocess(score_threshold=1.0)
    assert updated.score_threshold == 1.0 and predictor.postprocess_config is updated
    assert not any(s.is_thing for s in predictor.predict(rgb).segments)
    with pytest.raises(ConfigError, match="score_threshold"):
        predictor.update_postprocess(score_threshold=2.0)
    with pytest.raises(ConfigError, match="postprocess.bogus: unknown key"):
        predictor.update_postprocess(bogus=1)
    with pytest.raises(ConfigError, match="postprocess.max_instances: expected int"):
        predictor.check_postprocess(max_instances="many")
    assert predictor.postprocess_config.score_threshold == 1.0


def test_new_settings_are_tried_on_the_last_frame_before_they_apply(weights):
    with pytest.raises(ConfigError, match="postprocess: bandwidths: .*dragon"):  # caught by the warm-up frame
        Predictor.from_checkpoint(weights["panonet"], device="cpu", postprocess={"bandwidths": {"dragon": 0.5}})
    predictor = Predictor.from_checkpoint(weights["panonet"], device="cpu")
    with pytest.raises(ConfigError, match="dragon"):
        predictor.update_postprocess(bandwidths={"dragon": 0.5})
    assert predictor.postprocess_config.bandwidths == {}
    assert predictor.update_postprocess(bandwidths={"car": 0.8}).bandwidths == {"car": 0.8}


def test_config_overrides_post_processing_at_load(weights):
    predictor = Predictor.from_config(PredictorConfig(weights=weights["ciae"], device="cpu",
                                                      postprocess={"max_instances": 1}))
    assert predictor.postprocess_config.max_instances == 1
    assert predictor.postprocess_config.score_threshold == 0.05  # the checkpoint's
    assert sum(s.is_thing and not s.iscrowd for s in predictor.predict(_frame()).segments) <= 1
    with pytest.raises(ConfigError, match="postprocess: .*nms_threshold"):
        Predictor.from_checkpoint(weights["ciae"], device="cpu", postprocess={"nms_threshold": -1.0})


def test_bad_weights_and_settings_fail_clearly(weights, tmp_path):
    with pytest.raises(CheckpointError, match="metadata file not found"):
        Predictor.from_checkpoint(tmp_path / "nothing", device="cpu")
    with pytest.raises(CheckpointError, match="holds a ciae model, but model 'panonet'"):
        Predictor.from_checkpoint(weights["ciae"], model="panonet", device="cpu")
    with pytest.raises(ConfigError, match="device must be auto, cpu, cuda or cuda:N"):
        Predictor.from_checkpoint(weights["ciae"], device="gpu0")
    with pytest.raises(ConfigError, match="input_size"):
        Predictor.from_checkpoint(weights["ciae"], input_size=(16, 16))
    with pytest.raises(ConfigError, match="backend"):
        Predictor.from_checkpoint(weights["ciae"], backend="tensorflow")
    with pytest.raises(ConfigError, match="unknown key"):
        Predictor.from_checkpoint(weights["ciae"], gpu=True)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the behaviour without CUDA")
def test_cuda_without_a_gpu_is_a_clear_error_and_auto_picks_the_cpu(weights):
    with pytest.raises(backends.BackendError, match="no CUDA device"):
        Predictor.from_checkpoint(weights["ciae"], device="cuda")
    assert Predictor.from_checkpoint(weights["ciae"]).device == torch.device("cpu")


def test_predict_rejects_what_is_not_an_rgb_image(weights):
    predictor = Predictor.from_checkpoint(weights["ciae"], device="cpu")
    for bad in (np.zeros((8, 8), np.uint8), np.zeros((8, 8, 4), np.uint8), np.zeros((8, 8, 3), np.float32)):
        with pytest.raises(ValueError, match=r"expected an \(H, W, 3\) uint8 RGB image"):
            predictor.predict(bad)


def test_providers_are_chosen_in_order_among_the_available_ones():
    cpu, gpu = torch.device("cpu"), torch.device("cuda", 1)
    available = ["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"]
    assert [n for n, _ in backends.select_providers(["tensorrt", "cuda", "cpu"], available, device=cpu)] == \
        ["CPUExecutionProvider"]
    chosen = backends.select_providers(["cuda", "TensorrtExecutionProvider", "cpu"], available, device=gpu,
                                       fp16=True)
    assert [n for n, _ in chosen] == ["CUDAExecutionProvider", "TensorrtExecutionProvider", "CPUExecutionProvider"]
    assert chosen[0][1] == {"device_id": 1} and chosen[1][1]["trt_fp16_enable"] is True
    with pytest.raises(backends.BackendError, match="none of the ONNX Runtime providers"):
        backends.select_providers(["cuda"], ["CPUExecutionProvider"], device=gpu)


def test_cuda_with_a_cpu_only_onnxruntime_is_an_error_that_says_how_to_install_the_gpu_build():
    # A CPU-only onnxruntime (this machine's) with device=cuda: no quiet CPU fallback.
    import onnxruntime

    with pytest.raises(backends.BackendError) as caught:
        backends.select_providers(["tensorrt", "cuda", "cpu"], onnxruntime.get_available_providers(),
                                  device=torch.device("cuda", 0))
    message = str(caught.value)
    assert "cuda:0" in message and "no GPU provider" in message and "pip install onnxruntime-gpu" in message
    assert "CPUExecutionProvider" in message


def test_onnxruntime_io_binding_reads_and_writes_torch_tensors_in_place(weights, tmp_path):
    # The binding path against a plain numpy run of the same session, on the CPU.
    predictor = Predictor.from_checkpoint(weights["panonet"], device="cpu", backend="onnxruntime",
                                          onnx_cache_dir=tmp_path)
    backend = predictor._backend
    height, width = SIZES["panonet"]
    x = torch.from_numpy(_frame(height, width, seed=5)).permute(2, 0, 1)[None].float().contiguous()
    bound = backend.run_tensor(x)
    plain = backend._session.run(backend._output_names, {backend._input_name: x.numpy()})
    assert list(bound) == backend._output_names
    for (name, tensor), value in zip(bound.items(), plain):
        assert tensor.device.type == "cpu" and tuple(tensor.shape) == value.shape
        np.testing.assert_array_equal(tensor.numpy(), value.astype(tensor.numpy().dtype))


@pytest.mark.parametrize("kind", KINDS)
def test_onnxruntime_gives_the_same_result_as_torch(weights, kind, tmp_path, caplog):
    rgb = _frame(seed=3)
    expected = Predictor.from_checkpoint(weights[kind], device="cpu").predict(rgb)
    with caplog.at_level(logging.INFO, logger="panoptic_ros.inference"):
        onnx = Predictor.from_checkpoint(weights[kind], device="cpu", backend="onnxruntime",
                                         onnx_cache_dir=tmp_path)
    assert onnx.backend_name == "onnxruntime" and onnx.provider == "CPUExecutionProvider"
    assert "ONNX Runtime provider CPUExecutionProvider" in caplog.text
    result = onnx.predict(rgb)
    # The networks agree to ~1e-5 (test_export_*), so a label may flip only where two
    # classes or queries tie to float rounding: the same tolerance as test_export_ciae
    # (at most 0.1 % of the pixels), the same segments, scores to 1e-4.
    assert (result.panoptic != expected.panoptic).mean() <= 1e-3
    assert [s.id for s in result.segments] == [s.id for s in expected.segments]
    pixels = result.panoptic.size
    for got, want in zip(result.segments, expected.segments):
        assert abs(got.area - want.area) <= 1e-3 * pixels, (got, want)
    np.testing.assert_allclose([s.score for s in result.segments], [s.score for s in expected.segments], atol=1e-4)
    exported = list((tmp_path / "onnx").glob("*.onnx"))
    height, width = SIZES[kind]
    assert len(exported) == 1 and f"{height}x{width}" in exported[0].name
    mtime = exported[0].stat().st_mtime_ns
    again = Predictor.from_checkpoint(weights[kind], device="cpu", backend="onnxruntime", onnx_cache_dir=tmp_path)
    assert exported[0].stat().st_mtime_ns == mtime  # the cached export is reused
    given = Predictor.from_checkpoint(weights[kind], device="cpu", backend="onnxruntime", onnx_path=exported[0])
    np.testing.assert_array_equal(given.predict(rgb).panoptic, again.predict(rgb).panoptic)


def test_a_broken_onnx_file_is_a_clear_error(weights, tmp_path):
    bad = tmp_path / "broken.onnx"
    bad.write_bytes(b"not a model")
    with pytest.raises(backends.BackendError, match="broken.onnx: ONNX Runtime cannot load the model"):
        Predictor.from_checkpoint(weights["ciae"], device="cpu", backend="onnxruntime", onnx_path=bad)


def test_a_backend_failing_on_the_warm_up_frame_is_named_as_the_backend(weights, tmp_path):
    # an export at 128x192 (static shapes) run at 64x96: ONNX Runtime refuses the input
    Predictor.from_checkpoint(weights["ciae"], device="cpu", backend="onnxruntime", onnx_cache_dir=tmp_path)
    exported = next((tmp_path / "onnx").glob("*.onnx"))
    with pytest.raises(backends.BackendError, match=r"onnxruntime backend \(CPUExecutionProvider\) failed on a "
                                                    r"64x96 warm-up frame: .*Got invalid dimensions") as caught:
        Predictor.from_checkpoint(weights["ciae"], device="cpu", backend="onnxruntime", onnx_path=exported,
                                  input_size=(64, 96))
    assert "postprocess" not in str(caught.value)


def test_the_onnx_cache_key_covers_weights_config_size_opset_and_versions(weights, tmp_path):
    checkpoint = load_checkpoint(weights["ciae"])
    base = dict(weights_name="ciae_tiny.safetensors", weights_sha256="ab" * 32, model_config=checkpoint.model_config,
                input_size=(128, 192), opset=17, torch_version="2.13.0", package_version="0.1.0")
    name = onnx_cache_name(**base)
    assert name.startswith(f"ciae_tiny-{'ab' * 8}-128x192-") and name.endswith(".onnx")
    other_config = dataclasses.replace(checkpoint.model_config, embed_dim=checkpoint.model_config.embed_dim + 1)
    changes = {"weights_sha256": "cd" * 32, "model_config": other_config, "input_size": (128, 256), "opset": 18,
               "torch_version": "2.11.0+cu130", "package_version": "0.2.0"}
    names = {key: onnx_cache_name(**{**base, key: value}) for key, value in changes.items()}
    assert len({name, *names.values()}) == len(changes) + 1, names  # each change gives another file
    # the predictor's export is stored under the key of this torch and this package
    Predictor.from_checkpoint(weights["ciae"], device="cpu", backend="onnxruntime", onnx_cache_dir=tmp_path)
    meta = read_checkpoint_meta(weights["ciae"])
    expected = onnx_cache_name(weights_name=meta["weights"], weights_sha256=meta["weights_sha256"],
                               model_config=checkpoint.model_config, input_size=SIZES["ciae"], opset=17,
                               torch_version=torch.__version__, package_version=panoptic_ros.__version__)
    assert [p.name for p in (tmp_path / "onnx").glob("*.onnx")] == [expected]


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("kind", KINDS)
def test_cuda_fp16_channels_last_runs_and_agrees_with_the_cpu(weights, kind):
    rgb = _frame(seed=4)
    cpu = Predictor.from_checkpoint(weights[kind], device="cpu").predict(rgb)
    cuda = Predictor.from_checkpoint(weights[kind], device="cuda", channels_last=True)
    assert cuda.device.type == "cuda"
    assert (cuda.predict(rgb).panoptic == cpu.panoptic).mean() > 0.99
    half = Predictor.from_checkpoint(weights[kind], device="auto", precision="fp16", channels_last=True)
    result = half.predict(rgb)
    result.validate()
    assert result.panoptic.shape == rgb.shape[:2]
    half.release_cache()
    half.close()
