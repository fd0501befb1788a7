"""One inference API for both models: ``Predictor.predict(rgb) -> PanopticResult``, and
``Predictor.predict_batch([rgb, ...]) -> [PanopticResult, ...]`` for several cameras.

``rgb (H, W, 3) uint8`` -> resize to the model input size (area when shrinking, bilinear
when enlarging, as in training) -> backend (torch or ONNX Runtime) -> the model's
post-processing at model resolution -> :meth:`PanopticResult.resize` back to (H, W).
A batch stacks its images after the resize (they may differ in size before it) and runs
the network once on (B, 3, h, w); the post-processing then runs per image.

A predictor is built from a checkpoint (``panoptic_ros.checkpoint``): the model config
and post-processing settings stored with the weights, overridden by
:class:`PredictorConfig`. Post-processing settings can change between frames
(:meth:`Predictor.update_postprocess`); everything else needs a new predictor.
"""
from __future__ import annotations

import logging
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Sequence

import cv2
import numpy as np
import torch

from panoptic_ros.checkpoint import CheckpointError, load_checkpoint
from panoptic_ros.config import ConfigError, Range, check_ranges, from_dict, setting, to_dict
from panoptic_ros.inference.auto import BACKEND_SETTINGS, BackendChoice, choose_backend
from panoptic_ros.inference.backends import (BackendError, OnnxRuntimeBackend, OrtThreading, TorchBackend,
                                             check_device, check_provider, resolve_device)
from panoptic_ros.inference.onnx_cache import exported_onnx, onnx_cache_dir, quantized_onnx
from panoptic_ros.kinds import MODEL_KINDS, model_kind
from panoptic_ros.labels import LabelSpace, get_label_space
from panoptic_ros.postprocess.batch import image_outputs
from panoptic_ros.types import PanopticResult

log = logging.getLogger(__name__)

DEFAULT_PROVIDERS = ("tensorrt", "cuda", "cpu")


@dataclass(frozen=True)
class PredictorConfig:
    """How to build a :class:`Predictor` (each field describes itself)."""

    weights: Path = setting(description="checkpoint (.safetensors, .json or their stem)")
    model: Literal[MODEL_KINDS] | None = setting(None, description="model architecture the checkpoint must hold; "
                                                                   "unset = whatever it holds")
    backend: Literal[BACKEND_SETTINGS] = setting(
        "auto", description="inference backend; auto = the one measured fastest end to end for this device and "
                            "model (CPU: onnxruntime, CUDA: torch; falls back to torch with a warning when the "
                            "ONNX export or onnxruntime is unusable)")
    device: str = setting("auto", description="auto (CUDA when present, else CPU), cpu, cuda or cuda:N")
    precision: Literal["fp32", "bf16", "fp16", "int8"] = setting(
        "fp32", description="inference precision: torch autocast, weights cast once, any device (bf16 pays on CPUs with "
                            "AVX512-BF16 or AMX); onnxruntime: fp16 = TensorRT fp16 engines, int8 = a "
                            "static QDQ int8 graph calibrated on SynthStreet frames, cached next to the "
                            "float export (onnxruntime only)")
    fp16: bool = setting(False, description="deprecated: true means precision fp16 (warns)")
    input_size: tuple[int, int] | None = setting(None, range=Range(32), description="[H, W] the image is resized "
                                                 "to for the model; unset = the checkpoint's size")
    channels_last: bool = setting(False, description="torch: NHWC memory format")
    compile: bool = setting(False, description="torch: torch.compile the model (slow first frame)")
    num_threads: int = setting(0, range=Range(0, 256), description="CPU inference threads (0 = library default)")
    onnx_path: Path | None = setting(None, description="onnxruntime: a ready .onnx file; unset or empty = "
                                                       "export into the cache")
    onnx_cache_dir: Path | None = setting(None, description="onnxruntime: export cache; unset or empty = "
                                                            "$XDG_CACHE_HOME/panoptic_ros (~/.cache)")
    onnx_providers: tuple[str, ...] = setting(
        DEFAULT_PROVIDERS, description="onnxruntime providers by preference (tensorrt, cuda, cpu or full names); "
                                       "the first available one is used")
    onnx_spin_wait: bool = setting(False, description="onnxruntime: idle CPU threads spin-wait (ONNX Runtime's "
                                                      "own default); false: they sleep and leave the cores to the "
                                                      "post-processing, which bench/ort_spinning.py measured to "
                                                      "pay on 2 cores")
    postprocess: dict[str, Any] = setting(default_factory=dict,
                                          description="post-processing settings over the checkpoint's")
    warmup: bool = setting(True, description="run one black frame when built: the first inference's one-off "
                                             "costs (allocations, kernel selection, torch.compile) are paid at "
                                             "load, and settings only the post-processing can judge are "
                                             "checked there")

    def __post_init__(self) -> None:
        check_device(self.device)
        if self.fp16:
            warnings.warn("PredictorConfig.fp16 is deprecated; use precision='fp16'", DeprecationWarning,
                          stacklevel=3)
            if self.precision not in ("fp32", "fp16"):
                raise ValueError(f"fp16: true contradicts precision {self.precision!r}; set precision alone")
            object.__setattr__(self, "precision", "fp16")
            object.__setattr__(self, "fp16", False)
        if self.precision == "int8" and self.backend == "torch":
            raise ValueError(f"precision: int8 needs backend onnxruntime (a quantized ONNX graph); backend "
                             f"{self.backend!r} runs fp32, bf16 or fp16")
        if self.input_size is not None and (len(self.input_size) != 2 or min(self.input_size) < 32):
            raise ValueError(f"input_size: expected (H, W) of at least 32 pixels each, got {self.input_size}")
        check_ranges(self)
        if not self.onnx_providers:
            raise ValueError("onnx_providers: name at least one provider (e.g. cpu)")
        for name in self.onnx_providers:
            check_provider(name)


@dataclass(frozen=True)
class Timings:
    """Milliseconds spent in the stages of the last :meth:`Predictor.predict` call."""

    preprocess_ms: float = 0.0
    model_ms: float = 0.0
    postprocess_ms: float = 0.0

    @property
    def total_ms(self) -> float:
        return self.preprocess_ms + self.model_ms + self.postprocess_ms


class Predictor:
    """Runs one model on single RGB images; build with :meth:`from_config`.

    Attributes:
        kind: ``panonet`` or ``ciae``.
        label_space: categories of the results.
        input_size: (H, W) the model runs at.
        backend_name, device, provider: what runs it (``provider``: the ONNX Runtime
            provider, or the torch device).
        backend_choice: the backend asked for, the one running and why
            (:class:`~panoptic_ros.inference.auto.BackendChoice`; ``backend: auto`` resolved).
        precision: the config's precision.
        last_timings: :class:`Timings` of the last call (for a batch: the whole batch's).
        last_model_result: the last result at the model's input size, before it was
            resized to the image (``predict`` returns ``last_model_result.resize(W, H)``);
            label images can be computed on it and upsampled, which is cheaper. After a
            batch, that of its first image.
        last_model_results: the same for every image of the last call, in order.
    """

    def __init__(self, *, backend: TorchBackend | OnnxRuntimeBackend, model_config: Any,
                 postprocess_config: Any, input_size: tuple[int, int], choice: BackendChoice | None = None,
                 precision: str = "fp32"):
        self._backend = backend
        self.backend_choice = choice or BackendChoice(backend.name, backend.name, "asked for")
        self.precision = precision
        self.model_config = model_config
        self.kind: str = model_config.kind
        self.label_space: LabelSpace = get_label_space(model_config.label_space)
        self.input_size = tuple(input_size)
        record = model_kind(self.kind)
        self._postprocess_cls, self._postprocess_fn = record.postprocess_config, record.postprocess
        self._postprocess_batch = record.postprocess_batch
        self._postprocess = postprocess_config
        self._last_outputs: dict[str, torch.Tensor] | None = None
        self.last_model_result: PanopticResult | None = None
        self.last_model_results: list[PanopticResult] = []
        self.last_timings = Timings()

    @classmethod
    def from_checkpoint(cls, path: str | Path, **overrides: Any) -> "Predictor":
        """A predictor for checkpoint ``path``; ``overrides`` are :class:`PredictorConfig` fields."""
        return cls.from_config(from_dict(PredictorConfig, {"weights": path, **overrides}))

    @classmethod
    def from_config(cls, config: PredictorConfig) -> "Predictor":
        """Load the checkpoint and set up the backend.

        Raises:
            CheckpointError: missing, corrupt or foreign weights; wrong model kind.
            ConfigError: invalid post-processing overrides (the message names the key).
            BackendError: the device or providers are not usable here.
        """
        device = resolve_device(config.device)
        if config.num_threads:
            torch.set_num_threads(config.num_threads)
        checkpoint = load_checkpoint(config.weights, device="cpu")
        kind = checkpoint.model_config.kind
        if config.model is not None and config.model != kind:
            raise CheckpointError(f"{checkpoint.weights_path}: holds a {kind} model, but model {config.model!r} "
                                  f"was asked for")
        postprocess = from_dict(model_kind(kind).postprocess_config, {**checkpoint.postprocess, **config.postprocess}, "postprocess")
        input_size = tuple(config.input_size or checkpoint.model_config.input_size)
        choice = choose_backend(config.backend, kind=kind, device=device, precision=config.precision,
                                torch_only_options=config.channels_last or bool(config.compile),
                                onnx_file=config.onnx_path is not None)
        backend, choice = _build_backend(checkpoint.model, config, choice, device, input_size)
        log.info("%s predictor: backend %s on %s, %s, input [%d, %d] (H, W)", kind, choice.describe(),
                 backend.provider, config.precision, input_size[0], input_size[1])
        predictor = cls(backend=backend, model_config=checkpoint.model_config, postprocess_config=postprocess,
                        input_size=input_size, choice=choice, precision=config.precision)
        if config.warmup:
            try:
                predictor.warm_up()
            except (BackendError, ConfigError):
                predictor.close()
                raise
        return predictor

    def warm_up(self) -> None:
        """One black frame through the backend and the post-processing.

        Pays the first inference's one-off costs and checks the post-processing settings;
        afterwards :meth:`check_postprocess` can try new settings on its raw outputs.

        Raises:
            BackendError: the backend failed on the frame (e.g. an ONNX file of another
                input size); names the backend.
            ConfigError: the post-processing refused a setting (``postprocess: ...``).
        """
        image = np.zeros((*self.input_size, 3), np.uint8)
        try:
            outputs = self._run_backend(image)
        except Exception as exc:  # torch and onnxruntime raise many unrelated types
            raise BackendError(f"{self.backend_name} backend ({self.provider}) failed on a "
                               f"{self.input_size[0]}x{self.input_size[1]} warm-up frame: "
                               f"{type(exc).__name__}: {exc}") from exc
        try:
            self._postprocess_fn(outputs, config=self._postprocess, label_space=self.label_space)
        except ValueError as exc:
            raise ConfigError(f"postprocess: {exc}") from None

    @property
    def backend_name(self) -> str:
        return self._backend.name

    @property
    def device(self) -> torch.device:
        return self._backend.device

    @property
    def provider(self) -> str:
        return self._backend.provider

    @property
    def postprocess_config(self) -> Any:
        return self._postprocess

    def check_postprocess(self, **changes: Any) -> Any:
        """The post-processing config ``changes`` would give, without applying it.

        Besides the config's own checks, the new settings are tried on the last frame's
        raw outputs (when there is one), which catches what only the post-processing can
        judge (e.g. a bandwidth for a class the label space does not have).

        Raises:
            ConfigError: unknown setting, wrong type or unusable value (names the key).
        """
        config = from_dict(type(self._postprocess), {**to_dict(self._postprocess), **changes}, "postprocess")
        outputs = self._last_outputs
        if outputs is not None:
            try:
                self._postprocess_fn(outputs, config=config, label_space=self.label_space)
            except ValueError as exc:
                raise ConfigError(f"postprocess: {exc}") from None
        return config

    def update_postprocess(self, **changes: Any) -> Any:
        """Change post-processing settings from the next frame on; returns the new config.

        Raises:
            ConfigError: unknown setting, wrong type or out-of-range value (names the key).
        """
        return self.set_postprocess(self.check_postprocess(**changes))

    def set_postprocess(self, config: Any) -> Any:
        """Use ``config`` (from :meth:`check_postprocess`) from the next frame on; returns it.

        Raises:
            ConfigError: ``config`` is not this model's post-processing config.
        """
        if type(config) is not self._postprocess_cls:
            raise ConfigError(f"postprocess: expected a {self._postprocess_cls.__name__}, got {type(config).__name__}")
        self._postprocess = config  # one reference swap: a frame in flight keeps the old one
        return config

    def predict(self, rgb: np.ndarray, *, panoptic_out: np.ndarray | None = None,
                output_size: tuple[int, int] | None = None) -> PanopticResult:
        """Panoptic segmentation of one image.

        Args:
            rgb: (H, W, 3) uint8 RGB, any size.
            panoptic_out: (H', W') int32 array the result's id map is written into (the node
                passes the pixels of its ``~/panoptic`` message: no copy to publish it).
            output_size: (H', W') of the result when not (H, W): the camera's size of a
                frame decoded at reduced scale.
        Returns:
            the result at (H', W'); timings of the call in :attr:`last_timings`.
        """
        return self.predict_batch([rgb], panoptic_outs=[panoptic_out], output_sizes=[output_size])[0]

    def predict_batch(self, images: Sequence[np.ndarray], *,
                      panoptic_outs: Sequence[np.ndarray | None] | None = None,
                      output_sizes: Sequence[tuple[int, int] | None] | None = None) -> list[PanopticResult]:
        """Panoptic segmentation of B images with one network run (B runs of
        :meth:`predict` give the same results, up to float rounding of the batched network).

        Args:
            images: B (H_i, W_i, 3) uint8 RGB images, each any size.
            panoptic_outs: per image, as ``panoptic_out`` of :meth:`predict` (or None).
            output_sizes: per image, as ``output_size`` of :meth:`predict` (or None).
        Returns:
            B results in order; timings of the whole batch in :attr:`last_timings`.
        """
        for rgb in images:
            _check_image(rgb)
        count = len(images)
        panoptic_outs = panoptic_outs or [None] * count
        output_sizes = output_sizes or [None] * count
        postprocess = self._postprocess
        t0 = time.perf_counter()
        resized = [resize_image(rgb, self.input_size) for rgb in images]
        batch = resized[0] if count == 1 else np.stack(resized)   # (h, w, 3): no copy for one image; (B, h, w, 3)
        t1 = time.perf_counter()
        outputs = self._run_backend(batch)
        t2 = time.perf_counter()
        self.last_model_results = self._postprocess_batch(outputs, config=postprocess, label_space=self.label_space)
        self.last_model_result = self.last_model_results[0]
        results = []
        for rgb, model_result, out, size in zip(images, self.last_model_results, panoptic_outs, output_sizes):
            height, width = size or rgb.shape[:2]
            results.append(model_result.resize(width, height, out=out))
        t3 = time.perf_counter()
        self.last_timings = Timings((t1 - t0) * 1e3, (t2 - t1) * 1e3, (t3 - t2) * 1e3)
        return results

    def _run_backend(self, images: np.ndarray) -> dict[str, torch.Tensor]:
        """Raw outputs (batch B) for images (B, h, w, 3) or one (h, w, 3) at the input size;
        a backend of fixed batch size runs them in chunks of that size. The outputs of the
        first image are kept for :meth:`check_postprocess`."""
        step = self._backend.fixed_batch
        if images.ndim == 4 and step is not None and images.shape[0] != step:
            chunks = [self._backend(images[i:i + step]) for i in range(0, images.shape[0], step)]
            outputs = {name: torch.cat([c[name] for c in chunks]) for name in chunks[0]}
        else:
            outputs = self._backend(images)
        self._backend.synchronize()
        self._last_outputs = image_outputs(outputs, 0)
        return outputs

    def release_cache(self) -> None:
        """Give cached GPU memory back (the model stays loaded)."""
        self._last_outputs = None
        self._backend.release_cache()

    def close(self) -> None:
        """Free the model and its GPU memory; the predictor is unusable afterwards."""
        self._last_outputs = self.last_model_result = None
        self.last_model_results = []
        self._backend.close()


def _build_backend(model: torch.nn.Module, config: PredictorConfig, choice: BackendChoice, device: torch.device,
                   input_size: tuple[int, int]) -> tuple[TorchBackend | OnnxRuntimeBackend, BackendChoice]:
    """The backend ``choice`` names, and the choice that holds in the end: ``backend: auto``
    falls back to torch, with one warning, when ONNX Runtime cannot be set up (the export
    failed, onnxruntime or onnx is not installed, the session refused the graph). A
    backend asked for by name is never replaced.

    Raises:
        BackendError: the backend asked for cannot be set up here.
    """
    if choice.backend == "onnxruntime":
        try:
            return _onnx_backend(model, config, device, input_size), choice
        except (BackendError, ImportError) as exc:
            if config.backend != "auto" or config.precision == "int8":  # int8 exists only as an ONNX graph
                raise
            choice = choice.fallback(f"{type(exc).__name__}: {exc}")
            log.warning("backend auto: %s", choice.reason)
    return TorchBackend(model, device=device, precision=config.precision, channels_last=config.channels_last,
                        compile=config.compile), choice


def _onnx_backend(model: torch.nn.Module, config: PredictorConfig, device: torch.device,
                  input_size: tuple[int, int]) -> OnnxRuntimeBackend:
    """ONNX Runtime on ``config.onnx_path`` or on the cached export of ``model``."""
    cache_dir = onnx_cache_dir(config.onnx_cache_dir)
    onnx_path = config.onnx_path or _cached_onnx(model, config, cache_dir, input_size)
    return OnnxRuntimeBackend(onnx_path, output_names=type(model).OUTPUT_NAMES, providers=config.onnx_providers,
                              device=device, fp16=config.precision == "fp16",
                              threading=OrtThreading(intra_op_threads=config.num_threads,
                                                     spin_wait=config.onnx_spin_wait),
                              # one TensorRT engine cache per precision: fp16 and fp32
                              # engines of one model must not replace each other
                              cache_dir=cache_dir / "tensorrt" / config.precision)


def _cached_onnx(model: torch.nn.Module, config: PredictorConfig, cache_dir: Path,
                 input_size: tuple[int, int]) -> Path:
    """The cached export of ``model`` for ``config.precision``: the float graph, or for
    ``int8`` its quantized version (made from the float one on first use)."""
    float_path = exported_onnx(model, weights=config.weights, cache_dir=cache_dir, input_size=input_size)
    return quantized_onnx(float_path, input_size=input_size) if config.precision == "int8" else float_path


def _check_image(rgb: np.ndarray) -> None:
    """ValueError unless ``rgb`` is an (H, W, 3) uint8 array."""
    if not isinstance(rgb, np.ndarray) or rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
        raise ValueError(f"expected an (H, W, 3) uint8 RGB image, got {getattr(rgb, 'dtype', type(rgb))} "
                         f"{getattr(rgb, 'shape', '')}")


def resize_image(rgb: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """(H, W, 3) uint8 -> (size[0], size[1], 3): pixel-area when shrinking, bilinear otherwise."""
    height, width = size
    if rgb.shape[:2] == (height, width):
        return rgb
    shrink = height * width < rgb.shape[0] * rgb.shape[1]
    return cv2.resize(np.ascontiguousarray(rgb), (width, height),
                      interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LINEAR)
