"""Torch vs ONNX Runtime, computed here with onnxruntime's own API: the reference the
export parity tests hold ``panoptic_ros.inference.export.onnx_parity`` (code under test) to."""
from __future__ import annotations

import numpy as np
import onnxruntime as ort
import torch


def torch_and_ort_outputs(model: torch.nn.Module, onnx_path, images: torch.Tensor) -> tuple[dict, dict]:
    """Both runtimes' outputs by name, as numpy, for (1, 3, H, W) float32 ``images``."""
    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    names = [o.name for o in session.get_outputs()]
    with torch.no_grad():
        expected = model.eval().float()(images.float())
    got = session.run(names, {session.get_inputs()[0].name: images.float().numpy()})
    return {n: expected[n].numpy() for n in names}, dict(zip(names, got))


def max_abs_differences(model: torch.nn.Module, onnx_path, images: torch.Tensor) -> dict[str, float]:
    """Per output: max |torch - ort| of float outputs, the fraction of differing integer labels."""
    ref, got = torch_and_ort_outputs(model, onnx_path, images)
    diffs = {}
    for name in ref:
        assert ref[name].shape == got[name].shape, name
        if np.issubdtype(ref[name].dtype, np.floating):
            diffs[name] = float(np.abs(ref[name].astype(np.float64) - got[name]).max(initial=0.0))
        else:
            diffs[name] = float(np.mean(ref[name] != got[name])) if ref[name].size else 0.0
    return diffs
