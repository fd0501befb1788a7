"""Batched inference: B images through the network at once give the B single-image results.

Tolerance: the network's raw outputs of a batch and of single images agree to 1e-4
(absolute; float32 kernels may block a batch differently), and the panoptic maps are equal
but where such rounding flips an argmax or a mean-shift assignment: at most 0.1 % of the
pixels, with the same segments (ids and categories). Post-processing a batch is exact: it
runs each image's own slice of the outputs.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from panoptic_ros.inference.predictor import Predictor
from panoptic_ros.kinds import model_kind
from panoptic_ros.postprocess.batch import batch_size, image_outputs
from panoptic_ros.tiny_models import write_tiny_checkpoint

SIZES = {"ciae": (128, 192), "panonet": (192, 384)}  # sizes the ONNX export supports (test_predictor)
OUTPUT_ATOL = 1e-4
MAX_DIFFERING_PIXELS = 1e-3


@pytest.fixture(scope="module")
def weights(tmp_path_factory) -> dict[str, Path]:
    directory = tmp_path_factory.mktemp("batch_weights")
    return {kind: write_tiny_checkpoint(directory, kind, input_size=size) for kind, size in SIZES.items()}


def _frames() -> list[np.ndarray]:
    """Three cameras of different sizes (the predictor resizes each to the model's)."""
    rng = np.random.default_rng(7)
    return [rng.integers(0, 256, shape, dtype=np.uint8) for shape in ((90, 150, 3), (128, 192, 3), (200, 300, 3))]


def _assert_same_result(batched, single):
    assert batched.panoptic.shape == single.panoptic.shape
    assert {(s.id, s.category_id) for s in batched.segments} == {(s.id, s.category_id) for s in single.segments}
    differing = float((batched.panoptic != single.panoptic).mean())
    assert differing <= MAX_DIFFERING_PIXELS, differing


@pytest.mark.parametrize("backend", ["torch", "onnxruntime"])
@pytest.mark.parametrize("kind", sorted(SIZES))
def test_a_batch_gives_the_single_image_results(kind, backend, weights, tmp_path):
    predictor = Predictor.from_checkpoint(weights[kind], device="cpu", backend=backend, num_threads=1,
                                          onnx_cache_dir=str(tmp_path))
    frames = _frames()
    outs = [np.zeros(f.shape[:2], np.int32) for f in frames]
    batched = predictor.predict_batch(frames, panoptic_outs=outs)
    assert len(batched) == 3 and len(predictor.last_model_results) == 3
    for frame, result, out in zip(frames, batched, outs):
        single = predictor.predict(frame)
        _assert_same_result(result, single)
        assert result.panoptic.shape == frame.shape[:2]
        np.testing.assert_array_equal(out, result.panoptic)  # written in place, as the node publishes it
    predictor.close()


@pytest.mark.parametrize("kind", sorted(SIZES))
def test_network_outputs_of_a_batch_equal_those_of_single_images(kind, weights):
    predictor = Predictor.from_checkpoint(weights[kind], device="cpu", num_threads=1)
    images = np.stack([np.random.default_rng(i).integers(0, 256, (*SIZES[kind], 3), dtype=np.uint8)
                       for i in range(3)])
    batched = predictor._backend(images)
    assert batch_size(batched) == 3
    for i in range(3):
        single = predictor._backend(images[i])
        for name, value in single.items():
            torch.testing.assert_close(batched[name][i:i + 1], value, atol=OUTPUT_ATOL, rtol=0, msg=name)
    predictor.close()


@pytest.mark.parametrize("kind", sorted(SIZES))
def test_postprocessing_a_batch_is_postprocessing_each_image(kind, weights):
    predictor = Predictor.from_checkpoint(weights[kind], device="cpu", num_threads=1)
    images = np.stack([np.random.default_rng(10 + i).integers(0, 256, (*SIZES[kind], 3), dtype=np.uint8)
                       for i in range(3)])
    outputs = predictor._backend(images)
    record = model_kind(kind)
    config, labels = predictor.postprocess_config, predictor.label_space
    results = record.postprocess_batch(outputs, config=config, label_space=labels)
    for i, result in enumerate(results):
        single = record.postprocess(image_outputs(outputs, i), config=config, label_space=labels)
        np.testing.assert_array_equal(result.panoptic, single.panoptic)
        assert result.segments == single.segments
    predictor.close()


def test_outputs_of_different_batch_sizes_are_refused():
    with pytest.raises(ValueError, match="batch size"):
        batch_size({"a": torch.zeros(2, 3), "b": torch.zeros(3, 3)})


def test_a_fixed_batch_onnx_file_runs_a_batch_in_chunks(weights, tmp_path):
    import onnx

    reference = Predictor.from_checkpoint(weights["ciae"], device="cpu", backend="onnxruntime", num_threads=1,
                                          onnx_cache_dir=str(tmp_path))
    fixed = tmp_path / "fixed_batch_1.onnx"
    graph = onnx.load(str(reference._backend.onnx_path))
    for value in [*graph.graph.input, *graph.graph.output]:
        value.type.tensor_type.shape.dim[0].dim_value = 1   # as the exports before the dynamic batch axis
    onnx.save(graph, str(fixed))
    predictor = Predictor.from_checkpoint(weights["ciae"], device="cpu", backend="onnxruntime", num_threads=1,
                                          onnx_path=str(fixed))
    assert predictor._backend.fixed_batch == 1 and reference._backend.fixed_batch is None
    frames = _frames()
    for got, expected in zip(predictor.predict_batch(frames), reference.predict_batch(frames)):
        _assert_same_result(got, expected)
    predictor.close()
    reference.close()
