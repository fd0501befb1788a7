"""Inference backends: run a model on one preprocessed image, return its raw outputs.

Both backends take an (H, W, 3) uint8 RGB image, or a batch (B, H, W, 3) of them, already
at the model's input size and return ``OUTPUT_NAMES -> torch.Tensor`` (float32 for
floating outputs) with batch size 1 or B, which is what the post-processing functions
take (:mod:`panoptic_ros.postprocess.batch`).

- :class:`TorchBackend`: CPU or CUDA, optional bf16/fp16 autocast (with the weights cast
  once), channels-last memory format and ``torch.compile``.
- :class:`OnnxRuntimeBackend`: an exported ``.onnx`` on the first usable provider of an
  ordered list (TensorRT, CUDA, CPU, ...) among ``onnxruntime.get_available_providers()``.
"""
from __future__ import annotations

import copy
import logging
import re
from dataclasses import dataclass
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


_ORT_TYPES = {"tensor(float)": torch.float32, "tensor(float16)": torch.float16, "tensor(double)": torch.float64,
              "tensor(int64)": torch.int64, "tensor(int32)": torch.int32, "tensor(uint8)": torch.uint8,
              "tensor(int8)": torch.int8, "tensor(bool)": torch.bool}
_NUMPY_DTYPES = {torch.float32: np.float32, torch.float16: np.float16, torch.float64: np.float64,
                 torch.int64: np.int64, torch.int32: np.int32, torch.uint8: np.uint8, torch.int8: np.int8,
                 torch.bool: np.bool_}


def _ort_device(device: torch.device) -> tuple[str, int]:
    """ONNX Runtime's (device type, id) for a torch device."""
    return ("cuda", device.index or 0) if device.type == "cuda" else ("cpu", 0)


def upload_image(image: np.ndarray, device: torch.device, staging: dict[str, torch.Tensor]) -> torch.Tensor:
    """(H, W, 3) or (B, H, W, 3) uint8 -> a uint8 tensor of that shape on ``device``.

    On CUDA the frame is copied into a pinned host buffer (kept in ``staging`` and reused
    while the frame size stays) and uploaded asynchronously from there: from pageable
    memory ``non_blocking`` would copy synchronously. The buffer is reused only after the
    previous upload finished (its event is waited for).
    """
    host = torch.from_numpy(np.ascontiguousarray(image))
    if device.type != "cuda":
        return host
    pinned, done = staging.get("buffer"), staging.get("event")
    if pinned is None or pinned.shape != host.shape:
        pinned = staging["buffer"] = torch.empty(host.shape, dtype=torch.uint8, pin_memory=True)
    elif done is not None:
        done.synchronize()
    pinned.copy_(host)
    uploaded = pinned.to(device, non_blocking=True)
    staging["event"] = torch.cuda.Event()
    staging["event"].record()
    return uploaded


def images_nchw(uploaded: torch.Tensor) -> torch.Tensor:
    """(H, W, 3) or (B, H, W, 3) uint8 -> (1 or B, 3, H, W) float32 (a channels-last view
    converted to float: the permuted HWC layout is already NHWC in memory)."""
    batch = uploaded if uploaded.ndim == 4 else uploaded.unsqueeze(0)
    return batch.permute(0, 3, 1, 2).float()


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
        precision: ``fp32``, or ``bf16`` / ``fp16`` autocast on any device, on a copy of
            the model whose convolution and linear weights are cast once
            (:func:`cast_weights`); floating outputs come back as float32. The caller's
            ``model`` is left as it was.
        channels_last: NHWC memory format (faster convolutions on recent GPUs).
        compile: ``torch.compile`` the model (True: the default inductor backend, or a
            backend name such as ``"eager"``); the first call is slow.

    On CUDA, frames are uploaded as uint8 through a reused pinned buffer and converted
    there, and cuDNN picks its fastest kernels for the (fixed) input size.
    """

    name = "torch"

    def __init__(self, model: nn.Module, *, device: torch.device, precision: str = "fp32",
                 channels_last: bool = False, compile: bool | str = False):
        self.device = device
        self.precision = precision
        self.dtype = autocast_dtype(precision, device) or torch.float32
        if device.type == "cpu" and self.dtype is torch.bfloat16 and not cpu_has_native_bf16():
            log.warning("bf16 on a CPU without native bf16 (AVX512-BF16/AMX) is emulated and slower than fp32")
        if device.type == "cuda":
            torch.backends.cudnn.benchmark = True   # one input size per predictor: tune once
        self.channels_last = channels_last
        if self.dtype is not torch.float32:
            model = cast_weights(model, self.dtype)
        model = model.to(device).eval()
        if channels_last:
            model = model.to(memory_format=torch.channels_last)
        if compile:
            model = torch.compile(model, **({} if compile is True else {"backend": compile}))
        self._model = model
        self._staging: dict[str, torch.Tensor] = {}
        self.provider = str(device)
        self.fixed_batch: int | None = None  # any batch size

    @torch.inference_mode()
    def __call__(self, image: np.ndarray) -> dict[str, torch.Tensor]:
        """(H, W, 3) or (B, H, W, 3) uint8 RGB -> raw outputs with batch size 1 or B."""
        # Moving uint8 to the device and converting there is 4x less transfer.
        return self.run_tensor(images_nchw(upload_image(image, self.device, self._staging)))

    @torch.inference_mode()
    def run_tensor(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """(B, 3, H, W) float32 RGB 0..255 on ``device`` -> raw outputs (float32 floats)."""
        x = x.contiguous(memory_format=torch.channels_last if self.channels_last else torch.contiguous_format)
        with torch.autocast(self.device.type, dtype=self.dtype, enabled=self.dtype is not torch.float32):
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


def cast_weights(model: nn.Module, dtype: torch.dtype) -> nn.Module:
    """A copy of ``model`` whose convolution and linear weights and biases are in ``dtype``.

    Autocast casts them to its dtype on every call (in inference mode it caches nothing);
    a tensor that already has that dtype it passes as it is. So under autocast the copy
    computes exactly what ``model`` does, without the per-call copies of the weights.
    Normalisation layers and buffers keep their dtype, as autocast keeps them.
    """
    model = copy.deepcopy(model)
    for module in model.modules():
        if isinstance(module, (nn.modules.conv._ConvNd, nn.Linear)):
            module.to(dtype)
    return model


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
    if device.type == "cuda" and chosen[0][0] not in _GPU_PROVIDERS:
        # Running on the CPU provider would quietly ignore the device asked for.
        raise BackendError(
            f"device {device} asked for, but this onnxruntime has no GPU provider among {list(requested)} "
            f"(available here: {list(available)}); install the GPU build: "
            f"pip uninstall -y onnxruntime && pip install onnxruntime-gpu, or use device=cpu")
    return chosen


@dataclass(frozen=True)
class OrtThreading:
    """How ONNX Runtime's CPU threads behave between and during runs.

    ONNX Runtime's intra-op workers spin-wait (busy loop) for the next piece of work after
    each parallel section; on a small CPU that may take the cores from the post-processing
    that follows the model. ``spin_wait=False`` lets idle workers sleep instead.
    ``bench/ort_spinning.py`` measures both. On an idle 2-core AMD EPYC (2026-12-07,
    shipped weights, 512x1024) model + post-processing took 0.68x (PanoNet, 87.5 -> 59.7
    ms) and 0.89x (CIAE, 242.0 -> 214.6 ms) as long without spinning, with the
    post-processing back at torch's speed, so the default is not to spin. (On the same
    machine loaded by other jobs the result was mixed: CIAE 0.81-0.83x, PanoNet 1.39-1.47x.)

    Attributes:
        intra_op_threads: threads inside one operator (0 = ONNX Runtime's default, one per
            physical core).
        inter_op_threads: threads running independent operators at once (used only by
            ``parallel`` execution; 0 = ONNX Runtime's default).
        spin_wait: let idle intra-op and inter-op workers spin instead of sleeping.
        execution_mode: ``sequential`` (one operator at a time) or ``parallel``.
    """

    intra_op_threads: int = 0
    inter_op_threads: int = 1
    spin_wait: bool = False
    execution_mode: str = "sequential"

    def __post_init__(self) -> None:
        if self.intra_op_threads < 0 or self.inter_op_threads < 0:
            raise ValueError(f"ONNX Runtime thread counts must be >= 0, got intra-op {self.intra_op_threads}, "
                             f"inter-op {self.inter_op_threads}")
        if self.execution_mode not in ("sequential", "parallel"):
            raise ValueError(f"execution_mode: expected sequential or parallel, got {self.execution_mode!r}")

    def session_options(self) -> Any:
        """These settings as an ``onnxruntime.SessionOptions`` (warnings-only logging)."""
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = self.intra_op_threads
        options.inter_op_num_threads = self.inter_op_threads
        options.execution_mode = (ort.ExecutionMode.ORT_PARALLEL if self.execution_mode == "parallel"
                                   else ort.ExecutionMode.ORT_SEQUENTIAL)
        spinning = "1" if self.spin_wait else "0"
        options.add_session_config_entry("session.intra_op.allow_spinning", spinning)
        options.add_session_config_entry("session.inter_op.allow_spinning", spinning)
        options.log_severity_level = 3
        return options


class OnnxRuntimeBackend:
    """An ONNX model (input ``images`` (B, 3, H, W) float32 RGB 0..255) in ONNX Runtime.

    Exports since the multi-camera node have a dynamic batch axis; a file whose batch is
    fixed (an older export, or one given as ``onnx_path``) runs batches of that size only:
    :attr:`fixed_batch` tells the caller (the predictor splits larger batches).

    Args:
        onnx_path: the exported model (float32, or int8 QDQ from
            :mod:`panoptic_ros.inference.quantize`).
        output_names: outputs to fetch, in order (the model's ``OUTPUT_NAMES``).
        providers: requested providers in order of preference (aliases allowed).
        device: the device GPU providers run on (CPU: GPU providers are skipped).
        fp16: TensorRT fp16 engines (other providers run the exported float32 graph).
        threading: CPU thread settings (default: ONNX Runtime's own).
        cache_dir: where TensorRT keeps its engines.
    """

    name = "onnxruntime"

    def __init__(self, onnx_path: Path, *, output_names: Sequence[str], providers: Sequence[str],
                 device: torch.device, fp16: bool = False, threading: OrtThreading = OrtThreading(),
                 cache_dir: Path | None = None):
        import onnxruntime as ort

        chosen = select_providers(providers, ort.get_available_providers(), device=device, fp16=fp16,
                                  cache_dir=cache_dir)
        options = threading.session_options()
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
        first = self._session.get_inputs()[0].shape[0]
        self.fixed_batch: int | None = first if isinstance(first, int) else None
        self._specs: dict[tuple[int, ...], dict[str, tuple[tuple[int, ...], torch.dtype]]] = {}
        self._staging: dict[str, torch.Tensor] = {}
        log.info("ONNX Runtime provider %s (asked for %s)", self.provider, [canonical_provider(p) for p in providers])

    def __call__(self, image: np.ndarray) -> dict[str, torch.Tensor]:
        """(H, W, 3) or (B, H, W, 3) uint8 RGB -> raw outputs with batch size 1 or B, as
        tensors on ``device``."""
        return self.run_tensor(images_nchw(self._upload(image)).contiguous())

    def run_tensor(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """Run on an input tensor already on ``device``; outputs stay there.

        ONNX Runtime reads ``x`` and writes the outputs in place through IO binding (no
        numpy round trip; on CUDA nothing leaves the GPU), the same path on the CPU.

        Args:
            x: (B, 3, H, W) float32 contiguous, on ``device``.
        Returns:
            the model's outputs (floating ones as float32) on ``device``.
        """
        binding = self._session.io_binding()
        kind, index = _ort_device(x.device)
        binding.bind_input(self._input_name, kind, index, np.float32, list(x.shape), x.data_ptr())
        outputs = {name: torch.empty(shape, dtype=dtype, device=x.device)
                   for name, (shape, dtype) in self._output_specs(tuple(x.shape)).items()}
        for name, tensor in outputs.items():
            binding.bind_output(name, kind, index, _NUMPY_DTYPES[tensor.dtype], list(tensor.shape), tensor.data_ptr())
        if x.is_cuda:   # torch wrote x on its stream; ONNX Runtime reads it on its own
            torch.cuda.current_stream(x.device).synchronize()
        binding.synchronize_inputs()
        self._session.run_with_iobinding(binding)
        binding.synchronize_outputs()
        return {k: v.float() if v.is_floating_point() else v for k, v in outputs.items()}

    def _output_specs(self, input_shape: tuple[int, ...]) -> dict[str, tuple[tuple[int, ...], torch.dtype]]:
        """Output shapes and dtypes for an input shape (a symbolic batch axis is the input's
        batch; learnt from one plain run when the graph leaves other dimensions symbolic;
        cached)."""
        if input_shape not in self._specs:
            declared = {o.name: o for o in self._session.get_outputs()}
            shapes = {n: (input_shape[0], *declared[n].shape[1:]) if declared[n].shape else ()
                      for n in self._output_names}
            if not all(isinstance(d, int) for shape in shapes.values() for d in shape):
                values = self._session.run(self._output_names,
                                           {self._input_name: np.zeros(input_shape, np.float32)})
                shapes = {n: tuple(v.shape) for n, v in zip(self._output_names, values)}
            self._specs[input_shape] = {n: (shapes[n], _ORT_TYPES[declared[n].type]) for n in self._output_names}
        return self._specs[input_shape]

    def _upload(self, image: np.ndarray) -> torch.Tensor:
        """(H, W, 3) or (B, H, W, 3) uint8 -> the same on ``device`` (through a pinned
        buffer on CUDA)."""
        return upload_image(image, self.device, self._staging)

    def synchronize(self) -> None:
        """IO binding waits for the outputs before ``run_tensor`` returns: nothing is pending."""

    def release_cache(self) -> None:
        """ONNX Runtime keeps its arena until the session is closed."""

    def close(self) -> None:
        self._session = None
