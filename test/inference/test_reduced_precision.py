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
def test_bf16_weights_are_cast_once_and_give_the_autocast_outputs_exactly(kind):
    # The backend's copy holds bf16 convolution weights, so autocast copies no weight in a
    # forward (for the float32 model it copies every one a forward uses), and the outputs are
    # those of autocast on the float32 model, bit for bit. The caller's model is untouched.
    import torch
    from torch.utils._python_dispatch import TorchDispatchMode

    from panoptic_ros.checkpoint import load_checkpoint
    from panoptic_ros.inference.backends import TorchBackend
    from panoptic_ros.synthstreet.scene import generate_scene

    class WeightCopies(TorchDispatchMode):
        """Counts casts whose source is one of ``weights``."""

        def __init__(self, weights):
            super().__init__()
            self.pointers, self.count = {w.data_ptr() for w in weights}, 0

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            if func.overloadpacket.__name__ in ("to", "_to_copy") and args[0].data_ptr() in self.pointers:
                self.count += 1
            return func(*args, **(kwargs or {}))

    model = load_checkpoint(WEIGHTS / f"{kind}_synthstreet").model.eval()
    backend = TorchBackend(model, device=torch.device("cpu"), precision="bf16")
    convolutions = [m for m in backend._model.modules() if isinstance(m, torch.nn.Conv2d)]
    assert convolutions and {m.weight.dtype for m in convolutions} == {torch.bfloat16}
    assert {p.dtype for p in model.parameters()} == {torch.float32}
    image = generate_scene(1000, 0, height=256, width=512).image
    x = torch.from_numpy(image).permute(2, 0, 1)[None].float()
    with WeightCopies(backend._model.parameters()) as cast_once:
        got = backend.run_tensor(x)
    with WeightCopies(model.parameters()) as per_call, torch.inference_mode(), \
            torch.autocast("cpu", dtype=torch.bfloat16):
        before = model(x)
    assert cast_once.count == 0 and per_call.count >= len(convolutions) // 2
    for name, value in before.items():
        assert torch.equal(got[name], value.float() if value.is_floating_point() else value), name
