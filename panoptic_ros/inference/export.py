"""ONNX export for both models, and a parity check against ONNX Runtime.

The graph has one input ``images`` (B, 3, H, W) float32 RGB in [0, 255] (normalisation is
inside the model) and the outputs ``type(model).OUTPUT_NAMES`` in order, each with the
batch first; post-processing stays outside the graph. The export is traced by the legacy
TorchScript exporter (``dynamo=False``; onnxscript is not installed) at one fixed input
size, so H and W are static (export again for another ``input_size``) while the batch
axis is dynamic: one file serves every batch size a multi-camera node runs (1 to the
number of cameras), where one file per batch size would multiply the export time, the
cache and ONNX Runtime's sessions by the number of cameras. The trace runs at batch 2, so
a batch size the model code reads is recorded as a graph value rather than a constant 1.
"""
from __future__ import annotations

import warnings
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from torch import Tensor, nn

MIN_OPSET = 17
TRACE_BATCH = 2


class _TupleOutputs(nn.Module):
    """Returns the wrapped model's eval outputs as a tuple in ``OUTPUT_NAMES`` order
    (the tracer flattens dicts by insertion order; a tuple makes the order explicit)."""

    def __init__(self, model: nn.Module, names: Sequence[str]):
        super().__init__()
        self.model = model
        self.names = tuple(names)

    def forward(self, images: Tensor) -> tuple[Tensor, ...]:
        outputs = self.model(images)
        return tuple(outputs[name] for name in self.names)


def output_names(model: nn.Module) -> tuple[str, ...]:
    """The model's ``OUTPUT_NAMES`` (ValueError if it has none)."""
    names = getattr(type(model), "OUTPUT_NAMES", None)
    if not names:
        raise ValueError(f"{type(model).__name__} has no OUTPUT_NAMES; cannot name the ONNX outputs")
    return tuple(names)


def export_onnx(model: nn.Module, path: str | Path, *, input_size: tuple[int, int], opset: int = MIN_OPSET) -> Path:
    """Export ``model`` (eval mode, float32, on the CPU) to ``path`` and check the file.

    Args:
        model: a PanoNet or CIAE (anything with ``OUTPUT_NAMES`` and a dict-returning
            eval forward); it is put in eval mode and left there.
        path: destination ``.onnx`` file (parent folders are created).
        input_size: (H, W) the graph is traced at.
        opset: ONNX opset, >= 17.
    Returns:
        ``path``.
    Raises:
        ValueError: opset below 17, bad input size, or a model without ``OUTPUT_NAMES``.
    """
    import onnx

    if opset < MIN_OPSET:
        raise ValueError(f"opset: must be >= {MIN_OPSET}, got {opset}")
    height, width = (int(v) for v in input_size)
    if height < 1 or width < 1:
        raise ValueError(f"input_size: both sides must be >= 1, got {input_size}")
    names = output_names(model)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    model.eval()
    # eval() on the wrapper too: the exporter restores the wrapper's mode, recursively, afterwards
    wrapper = _TupleOutputs(model, names).to("cpu", torch.float32).eval()
    example = torch.rand(TRACE_BATCH, 3, height, width, generator=torch.Generator().manual_seed(0)) * 255
    dynamic = {name: {0: "batch"} for name in ("images", *names)}
    with torch.no_grad(), warnings.catch_warnings():
        # Shape-dependent Python branches are expected: the graph is traced at one size.
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        warnings.simplefilter("ignore", DeprecationWarning)  # the legacy exporter's own notice
        torch.onnx.export(wrapper, (example,), str(path), input_names=["images"], output_names=list(names),
                          opset_version=opset, do_constant_folding=True, dynamo=False, dynamic_axes=dynamic)
    onnx.checker.check_model(str(path))
    return path


def onnx_parity(model: nn.Module, onnx_path: str | Path, images: Tensor) -> dict[str, float]:
    """Per output, how far ONNX Runtime (CPU) is from torch.

    Args:
        model: the exported model (run in eval mode, float32, CPU).
        onnx_path: its ``.onnx`` file.
        images: (B, 3, H, W) float32 RGB in [0, 255] at the exported size (any B).
    Returns:
        output name -> max |torch - onnxruntime| for floating outputs; for integer
        outputs (labels) the fraction of elements that differ (an argmax may flip where
        two scores tie to rounding).
    """
    import onnxruntime as ort

    names = output_names(model)
    model.eval()
    images = images.to("cpu", torch.float32)
    with torch.no_grad():
        expected = model.to("cpu", torch.float32)(images)
    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    got = session.run(list(names), {"images": images.numpy()})
    diffs = {}
    for name, value in zip(names, got):
        ref = expected[name].numpy()
        if ref.shape != value.shape:
            raise ValueError(f"output {name!r}: torch shape {ref.shape}, ONNX Runtime shape {value.shape}")
        if np.issubdtype(ref.dtype, np.floating):
            diffs[name] = float(np.abs(ref.astype(np.float64) - value.astype(np.float64)).max(initial=0.0))
        else:
            diffs[name] = float((ref != value).mean()) if ref.size else 0.0
    return diffs
