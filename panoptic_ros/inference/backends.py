"""Inference backends: run a model on one preprocessed image, return its raw outputs.

Both backends take an (H, W, 3) uint8 RGB image already at the model's input size and
return ``OUTPUT_NAMES -> torch.Tensor`` (float32 for floating outputs) with batch size 1,
which is what the post-processing functions take.

- :class:`TorchBackend`: CPU or CUDA, optional bf16/fp16 autocast, channels-last
  memory format and ``torch.compile``.
- :class:`OnnxRuntimeBackend`: an exported ``.onnx`` on the first usable provider of an
  ordered list (TensorRT, CUDA, CPU, ...) among ``onnxruntime.get_available_providers()``.
"""
from __future__ import annotations

import logging
import re
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from torch import nn

from panoptic_ros.precision import autocast_dtype, cpu_has_native_bf16

log = logging.getLogger(__name__)

_DEVICE_RE = re.compile(r"^(auto|cpu|cuda(:\d+)?)$")
PROVIDER_ALIASES = {
    "tensorrt": "TensorrtExecutionProvider",
    "cuda": "CUDAExecutionProvider",
    "cpu": "CPUExecutionProvider",
}
_GPU_PROVIDERS = ("TensorrtExecutionProvider", "CUDAExecutionProvider")
_PROVIDER_RE = re.compile(r"^[A-Z][A-Za-z0-9]*ExecutionProvider$")


class BackendError(RuntimeError):
    """A backend that cannot run here (no CUDA, no usable provider, bad model file)."""


def check_device(spec: str) -> str:
    """``spec`` if it is ``auto``, ``cpu``, ``cuda`` or ``cuda:N``; else ValueError."""
    if not isinstance(spec, str) or not _DEVICE_RE.match(spec):
        raise ValueError(f"device must be auto, cpu, cuda or cuda:N, got {spec!r}")
    return spec


def resolve_device(spec: str) -> torch.device:
    """The torch device for ``auto | cpu | cuda | cuda:N``; ``auto`` prefers CUDA.

    Raises:
        BackendError: CUDA asked for but absent, or the index does not exist.
    """
    check_device(spec)
    if spec == "auto":
        return torch.device("cuda:0" if torch.cuda.is_available() else "cpu")
    device = torch.device(spec)
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise BackendError(f"device {spec!r} asked for, but torch sees no CUDA device")
        index = device.index or 0
        if index >= torch.cuda.device_count():
            raise BackendError(f"device {spec!r} asked for, but only {torch.cuda.device_count()} CUDA device(s) exist")
        device = torch.device("cuda", index)
    return device


def canonical_provider(name: str) -> str:
    """Full ONNX Runtime provider name for an alias (``cuda``) or a full name."""
    return PROVIDER_ALIASES.get(name.lower(), name)


def check_provider(name: str) -> str:
    """``name`` if it is an alias or has the form of a full provider name
    (``<Name>ExecutionProvider``); else ValueError. Whether it is available is known only
    where it runs (configure); onnxruntime is not imported here: it prints warnings of its
    own at import (e.g. about an unwritable cache folder) that would garble a CLI's line."""
    if not _PROVIDER_RE.match(canonical_provider(name)):
        raise ValueError(f"onnx_providers: unknown ONNX Runtime provider {name!r}; use tensorrt, cuda, cpu or a "
                         "full name such as CPUExecutionProvider")
    return name


class TorchBackend:
    """A PyTorch model in eval mode on one device.

    Args:
        model: the network (eval-mode ``forward`` returns ``OUTPUT_NAMES -> Tensor``).
        device: where it runs.
        precision: ``fp32``, or ``bf16`` / ``fp16`` autocast on any device (outputs come
            back as float32).
        channels_last: NHWC memory format (faster convolutions on recent GPUs).
        compile: wrap the model with ``torch.compile`` (first call is slow).
    """

    name = "torch"

    def __init__(self, model: nn.Module, *, device: torch.device, precision: str = "fp32",
                 channels_last: bool = False, compile: bool = False):
        self.device = device
        self.precision = precision
        self._autocast_dtype = autocast_dtype(precision, device)
        if device.type == "cpu" and self._autocast_dtype is torch.bfloat16 and not cpu_has_native_bf16():
            log.warning("bf16 on a CPU without native bf16 (AVX512-BF16/AMX) is emulated and slower than fp32")
        self.channels_last = channels_last
        model = model.to(device).eval()
        if channels_last:
            model = model.to(memory_format=torch.channels_last)
        self._model = torch.compile(model) if compile else model
        self.provider = str(device)

    @torch.inference_mode()
    def __call__(self, image: np.ndarray) -> dict[str, torch.Tensor]:
        """(H, W, 3) uint8 RGB -> raw outputs with batch size 1."""
        # Moving uint8 to the device and converting there is 4x less transfer; the HWC
        # array permuted to NCHW is already laid out channels-last.
        x = torch.from_numpy(np.ascontiguousarray(image)).to(self.device, non_blocking=True)
        x = x.permute(2, 0, 1).unsqueeze(0).float()
        x = x.contiguous(memory_format=torch.channels_last if self.channels_last else torch.contiguous_format)
        with torch.autocast(self.device.type, dtype=self._autocast_dtype or torch.float32,
                            enabled=self._autocast_dtype is not None):
            outputs = self._model(x)
        return {k: v.float() if v.is_floating_point() else v for k, v in outputs.items()}

    def synchronize(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    def release_cache(self) -> None:
        """Return cached, unused GPU memory to the driver (weights stay loaded)."""
        if self.device.type == "cuda":
            torch.cuda.empty_cache()

    def close(self) -> None:
        self._model = None
        self.release_cache()


def select_providers(requested: Sequence[str], available: Sequence[str], *, device: torch.device,
                     fp16: bool = False, cache_dir: Path | None = None) -> list[tuple[str, dict[str, Any]]]:
    """The usable providers of ``requested`` in order, each with its options.

    GPU providers are skipped when ``device`` is the CPU; the CPU provider is always last
    resort if it was requested.

    Raises:
        BackendError: none of the requested providers is usable here.
    """
    chosen = []
    for name in (canonical_provider(p) for p in requested):
        if name not in available or any(name == c for c, _ in chosen):
            continue
        if name in _GPU_PROVIDERS and device.type != "cuda":
            continue
        options: dict[str, Any] = {}
        if name in _GPU_PROVIDERS:
            options["device_id"] = device.index or 0
        if name == "TensorrtExecutionProvider":
            options["trt_fp16_enable"] = fp16
            if cache_dir is not None:
                options.update(trt_engine_cache_enable=True, trt_engine_cache_path=str(cache_dir))
        chosen.append((name, options))
    if not chosen:
        raise BackendError(f"none of the ONNX Runtime providers {list(requested)} is usable on {device} "
                           f"(available here: {list(available)})")
    return chosen


class OnnxRuntimeBackend:
    """An ONNX model (input ``images`` (1, 3, H, W) float32 RGB 0..255) in ONNX Runtime.

    Args:
        onnx_path: the exported model.
        output_names: outputs to fetch, in order (the model's ``OUTPUT_NAMES``).
        providers: requested providers in order of preference (aliases allowed).
        device: the device GPU providers run on (CPU: GPU providers are skipped).
        fp16: TensorRT fp16 engines (other providers run the exported float32 graph).
        num_threads: intra-op threads for the CPU provider (0 = ONNX Runtime's default).
        cache_dir: where TensorRT keeps its engines.
    """

    name = "onnxruntime"

    def __init__(self, onnx_path: Path, *, output_names: Sequence[str], providers: Sequence[str],
                 device: torch.device, fp16: bool = False, num_threads: int = 0, cache_dir: Path | None = None):
        import onnxruntime as ort

        chosen = select_providers(providers, ort.get_available_providers(), device=device, fp16=fp16,
                                  cache_dir=cache_dir)
        options = ort.SessionOptions()
        options.intra_op_num_threads = num_threads
        options.log_severity_level = 3
        try:
            self._session = ort.InferenceSession(str(onnx_path), sess_options=options,
                                                 providers=[n for n, _ in chosen],
                                                 provider_options=[o for _, o in chosen])
        except Exception as exc:  # onnxruntime raises its own untyped errors
            raise BackendError(f"{onnx_path}: ONNX Runtime cannot load the model ({exc})") from None
        self.provider = self._session.get_providers()[0]
        if fp16 and self.provider != "TensorrtExecutionProvider":
            log.warning("fp16 needs the TensorRT provider; %s runs the float32 graph", self.provider)
        self.device = device
        self.onnx_path = Path(onnx_path)
        self._output_names = list(output_names)
        self._input_name = self._session.get_inputs()[0].name
        log.info("ONNX Runtime provider %s (asked for %s)", self.provider, [canonical_provider(p) for p in providers])

    def __call__(self, image: np.ndarray) -> dict[str, torch.Tensor]:
        """(H, W, 3) uint8 RGB -> raw outputs (CPU tensors) with batch size 1."""
        x = np.ascontiguousarray(image.transpose(2, 0, 1)[None], dtype=np.float32)
        values = self._session.run(self._output_names, {self._input_name: x})
        outputs = {}
        for name, value in zip(self._output_names, values):
            tensor = torch.from_numpy(np.asarray(value))
            outputs[name] = tensor.float() if tensor.is_floating_point() else tensor
        return outputs

    def synchronize(self) -> None:
        """ONNX Runtime's ``run`` returns host arrays: nothing is pending."""

    def release_cache(self) -> None:
        """ONNX Runtime keeps its arena until the session is closed."""

    def close(self) -> None:
        self._session = None
