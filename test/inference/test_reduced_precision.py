"""int8 (ONNX Runtime) and bf16 (torch) inference agree with float32 on SynthStreet.

The shipped weights on 5 validation scenes (seed 1000) at their input size, 512x1024:
the category of at least 97 % of the pixels is the same as with float32 on the same
backend. Slow: exporting and calibrating the int8 graph takes a while on 2 cores.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from panoptic_ros.inference.predictor import Predictor
from panoptic_ros.inference.quantize import synthstreet_images

WEIGHTS = Path(__file__).resolve().parents[2] / "weights"
FRAMES, SEED = 5, 1000


def _categories(predictor: Predictor, images: list[np.ndarray]) -> np.ndarray:
    """(N, H, W) category ids of the predictions."""
    return np.stack([predictor.predict(image).panoptic // 1000 for image in images])


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["panonet", "ciae"])
@pytest.mark.parametrize("backend, precision", [("onnxruntime", "int8"), ("torch", "bf16")])
def test_reduced_precision_agrees_with_fp32_on_97_percent_of_pixels(kind, backend, precision, tmp_path):
    weights = WEIGHTS / f"{kind}_synthstreet"
    common = {"device": "cpu", "backend": backend, "onnx_cache_dir": tmp_path}
    reference = Predictor.from_checkpoint(weights, precision="fp32", **common)
    images = synthstreet_images(FRAMES, reference.input_size, seed=SEED)
    expected = _categories(reference, images)
    got = _categories(Predictor.from_checkpoint(weights, precision=precision, **common), images)
    agreement = float((got == expected).mean())
    assert agreement >= 0.97, f"{kind} {precision}: {agreement:.4f} of the pixels agree with fp32"
