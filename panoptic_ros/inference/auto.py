"""``backend: auto``: the backend measured fastest end to end (model + post-processing),
per device and model kind.

The choices are measurements, not guesses; each one names where it was measured:

- CPU: ONNX Runtime (float32 graph, idle threads sleeping) for both models.
  ``bench/ort_spinning.py --variants "ort, no spinning" torch`` on the shipped weights,
  SynthStreet 512x1024, 2 threads (docs/benchmarks.md, "backend: auto"): model +
  post-processing PanoNet 59.7 vs 95.9 ms, CIAE 214.6 vs 243.9 ms (AMD EPYC, 2 cores,
  idle, 2026-12-07), and ONNX Runtime ahead for both models again on the loaded machine.
- CUDA: torch. ``bench/gpu_suite.py`` has not yet run on a GPU, so no GPU backend was
  measured against another; torch stays the choice there until it has.

Precision is the config's: ``auto`` chooses among backends only. A precision that only one
backend runs decides it (``int8``: the ONNX Runtime graph; ``bf16``/``fp16`` on the CPU:
torch autocast, as ONNX Runtime's CPU provider runs the float32 graph), and so do settings
only one backend has (``channels_last``, ``compile``: torch; ``onnx_path``: ONNX Runtime).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:   # no torch import at run time: the CLIs take their choices from here
    import torch

BACKEND_SETTINGS = ("auto", "torch", "onnxruntime")  # what a config's or a CLI's backend may say
Backend = Literal["torch", "onnxruntime"]

# (device type, model kind) -> the backend measured fastest end to end (see the docstring).
MEASURED_FASTEST: dict[tuple[str, str], Backend] = {
    ("cpu", "panonet"): "onnxruntime",
    ("cpu", "ciae"): "onnxruntime",
    ("cuda", "panonet"): "torch",
    ("cuda", "ciae"): "torch",
}
UNMEASURED_REASON = "no measurement for this device and model: torch"
_REASONS = {
    "cpu": "measured fastest end to end on the CPU (bench/ort_spinning.py, docs/benchmarks.md)",
    "cuda": "torch on CUDA until bench/gpu_suite.py has compared the backends on a GPU",
}


@dataclass(frozen=True)
class BackendChoice:
    """Which backend runs a predictor, and why.

    Attributes:
        requested: the config's ``backend`` (``auto``, ``torch`` or ``onnxruntime``).
        backend: the backend chosen (``torch`` or ``onnxruntime``).
        reason: why, in a few words (shown in the node's log and diagnostics).
    """

    requested: str
    backend: Backend
    reason: str

    def describe(self) -> str:
        """``auto -> onnxruntime (reason)`` or just the backend when it was asked for."""
        if self.requested != "auto":
            return self.backend
        return f"auto -> {self.backend} ({self.reason})"

    def fallback(self, problem: str) -> "BackendChoice":
        """The torch choice that replaces this one when its backend cannot be set up."""
        return BackendChoice(self.requested, "torch", f"{self.backend} unusable here, fell back to torch: {problem}")


def choose_backend(requested: str, *, kind: str, device: torch.device, precision: str,
                   torch_only_options: bool = False, onnx_file: bool = False) -> BackendChoice:
    """The backend ``requested`` means for this model on ``device``.

    Args:
        requested: ``auto``, ``torch`` or ``onnxruntime``.
        kind: the model kind (``panonet``, ``ciae``).
        device: where it runs (already resolved).
        precision: the config's precision (kept as it is).
        torch_only_options: ``channels_last`` or ``compile`` is set.
        onnx_file: a ready ``.onnx`` file (``onnx_path``) is given.
    """
    if requested != "auto":
        return BackendChoice(requested, requested, "asked for")  # type: ignore[arg-type]
    if precision == "int8" or onnx_file:
        why = "precision int8 runs only on onnxruntime" if precision == "int8" else "onnx_path is set"
        return BackendChoice(requested, "onnxruntime", why)
    if torch_only_options:
        return BackendChoice(requested, "torch", "channels_last or compile is set (torch settings)")
    if device.type == "cpu" and precision in ("bf16", "fp16"):
        return BackendChoice(requested, "torch", f"precision {precision} on the CPU is torch autocast")
    backend = MEASURED_FASTEST.get((device.type, kind))
    if backend is None:
        return BackendChoice(requested, "torch", UNMEASURED_REASON)
    return BackendChoice(requested, backend, _REASONS[device.type])
