"""The ONNX export cache of the onnxruntime backend: one file per weights, model config,
input size and toolchain (:func:`onnx_cache_name`), exported once, atomically (a
temporary file, then a rename), and exported again if it is found damaged. The int8
version of an export (:func:`quantized_onnx`) lies next to it."""
from __future__ import annotations

import hashlib
import json
import logging
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

import panoptic_ros
from panoptic_ros.checkpoint import read_checkpoint_meta
from panoptic_ros.config import to_dict
from panoptic_ros.inference.backends import BackendError

if TYPE_CHECKING:   # the quantizer's module is imported only when quantizing
    from panoptic_ros.inference.quantize import Int8Settings

log = logging.getLogger(__name__)


def onnx_cache_dir(configured: str | Path | None) -> Path:
    """The cache folder: ``configured``, else ``$XDG_CACHE_HOME/panoptic_ros`` (default
    ``~/.cache/panoptic_ros``)."""
    if configured is not None:
        return Path(configured)
    root = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(root) / "panoptic_ros"


def onnx_cache_name(*, weights_name: str, weights_sha256: str, model_config: Any, input_size: tuple[int, int],
                    opset: int, torch_version: str, package_version: str) -> str:
    """File name of the cached ONNX export for these weights and this toolchain.

    Everything that changes the exported graph is in the key: the weights (sha256), the
    model config (what the weights are loaded into), the input size (the graph's shapes
    are static but for the batch), the batch axis (dynamic since the multi-camera node:
    older fixed-batch exports are not reused), the opset, and the torch and panoptic_ros versions (exporter and model
    code). The name keeps the readable parts: ``<stem>-<weights hash>-<H>x<W>-<key>.onnx``.
    """
    key = json.dumps({"weights": weights_sha256, "model": to_dict(model_config), "input_size": list(input_size),
                      "batch": "dynamic", "opset": opset, "torch": torch_version, "panoptic_ros": package_version}, sort_keys=True)
    digest = hashlib.sha256(key.encode()).hexdigest()[:12]
    return f"{Path(weights_name).stem}-{weights_sha256[:16]}-{input_size[0]}x{input_size[1]}-{digest}.onnx"


def _heal_cached(path: Path) -> bool:
    """True if the cached export at ``path`` is a valid ONNX model; otherwise (a file cut
    off or damaged outside this code, whose exports are atomic) it is moved aside, with one
    warning, so that the caller exports it again. The checker is needed: an empty or cut
    file can still parse as a (graphless) protobuf message."""
    import onnx

    try:
        onnx.checker.check_model(onnx.load(str(path), load_external_data=False))
        return True
    except Exception as exc:  # noqa: BLE001 - protobuf raises several types for damaged files
        aside = path.with_name(f"{path.name}.broken")
        try:
            os.replace(path, aside)
        except OSError as move_error:
            raise BackendError(f"{path}: cached ONNX export cannot be loaded ({type(exc).__name__}) nor moved "
                               f"aside ({move_error.strerror}); delete it") from None
        log.warning("%s: cached ONNX export cannot be loaded (%s: %s); moved to %s, exporting again",
                    path, type(exc).__name__, exc, aside)
        return False


def exported_onnx(model: torch.nn.Module, *, weights: str | Path, cache_dir: Path, input_size: tuple[int, int]) -> Path:
    """The cached ONNX export of these weights at ``input_size``, exporting it if absent
    (the cache key: :func:`onnx_cache_name`)."""
    from panoptic_ros.inference.export import MIN_OPSET, export_onnx

    meta = read_checkpoint_meta(weights)
    name = onnx_cache_name(weights_name=str(meta.get("weights", "model")),
                           weights_sha256=str(meta.get("weights_sha256", "unhashed")), model_config=model.config,
                           input_size=input_size, opset=MIN_OPSET, torch_version=torch.__version__,
                           package_version=panoptic_ros.__version__)
    path = cache_dir / "onnx" / name
    if path.is_file() and _heal_cached(path):
        return path
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise BackendError(f"{path.parent}: cannot create the ONNX cache ({exc.strerror or exc}); set "
                           "onnx.cache_dir (or XDG_CACHE_HOME) to a writable folder") from None
    tmp = path.with_name(f".{path.stem}.{os.getpid()}.tmp.onnx")
    log.info("exporting %s to %s", weights, path)
    try:
        export_onnx(model, tmp, input_size=input_size, opset=MIN_OPSET)
        os.replace(tmp, path)
    except Exception as exc:
        tmp.unlink(missing_ok=True)
        raise BackendError(f"{weights}: ONNX export to {path} failed ({exc})") from exc
    return path


def quantized_onnx(float_path: Path, *, input_size: tuple[int, int], settings: Int8Settings | None = None) -> Path:
    """The cached int8 QDQ version of the cached float export ``float_path``, quantized
    (calibrated on SynthStreet frames at ``input_size``) if absent or damaged.

    Args:
        settings: how to quantize (None: :class:`~panoptic_ros.inference.quantize.Int8Settings`'s
            defaults).
    Raises:
        BackendError: quantization failed (the message names the file).
    """
    from panoptic_ros.inference.quantize import Int8Settings, int8_cache_path, quantize_int8, synthstreet_images

    settings = settings or Int8Settings()
    path = int8_cache_path(float_path, settings)
    if path.is_file() and _heal_cached(path):
        return path
    log.info("quantizing %s to int8 (%d SynthStreet calibration frames): %s", float_path,
             settings.calibration_frames, path)
    try:
        images = synthstreet_images(settings.calibration_frames, input_size)
        return quantize_int8(float_path, path, images, settings)
    except Exception as exc:  # onnxruntime's quantizer raises many unrelated types
        raise BackendError(f"{float_path}: int8 quantization to {path} failed ({type(exc).__name__}: {exc})") from exc
