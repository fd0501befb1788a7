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


@pytest.mark.parametrize("kind", ["panonet", "ciae"])
def test_bf16_weights_are_cast_once_and_match_the_autocast_path(kind):
    # The backend runs a bf16 copy of the model without autocast (the caller's model stays
    # float32), and its outputs agree with the per-call autocast it replaced: semantic
    # labels on >= 99 % of the pixels, floating outputs within 0.05 of their range.
    import torch

    from panoptic_ros.checkpoint import load_checkpoint
    from panoptic_ros.inference.backends import TorchBackend
    from panoptic_ros.synthstreet.scene import generate_scene

    model = load_checkpoint(WEIGHTS / f"{kind}_synthstreet").model.eval()
    backend = TorchBackend(model, device=torch.device("cpu"), precision="bf16")
    seen = []
    backend._model.register_forward_pre_hook(
        lambda module, args: seen.append((args[0].dtype, torch.is_autocast_enabled("cpu"))))
    image = generate_scene(1000, 0, height=256, width=512).image
    got = backend(image)
    assert seen == [(torch.bfloat16, False)]
    assert {p.dtype for p in backend._model.parameters()} == {torch.bfloat16}
    assert {p.dtype for p in model.parameters()} == {torch.float32}
    with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16):
        before = model(torch.from_numpy(image).permute(2, 0, 1)[None].float())
    for name, value in before.items():
        assert got[name].shape == value.shape, name
        if not value.is_floating_point():
            assert float((got[name] == value).float().mean()) >= 0.99, name
        else:
            span = float(value.float().abs().max()) or 1.0
            assert float((got[name] - value.float()).abs().max()) <= 0.05 * span, name
