"""Static int8 quantization of an exported ONNX graph, for ONNX Runtime on the CPU.

ONNX Runtime's ``quantize_static`` inserts QuantizeLinear/DequantizeLinear pairs (QDQ)
around the graph's convolutions and matrix products; the CPU provider fuses each pair with
its operator into an integer kernel (VNNI ``vpdpbusd`` on AVX512-VNNI CPUs, AMX where
present). Activation ranges are calibrated by running the float graph on SynthStreet
frames from the *training* stream (seed 0; validation uses seed 1000) from histograms
(percentiles), weights get one scale per output channel.

The library does the quantization; this module chooses its settings (:class:`Int8Settings`),
feeds it frames (:class:`FrameReader`) and keeps the result next to the float export
(:func:`int8_cache_path`).
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

log = logging.getLogger(__name__)

CALIBRATION_SEED = 0   # SynthStreet's training stream: calibration never sees validation scenes
CALIBRATION_METHODS = ("minmax", "entropy", "percentile")


@dataclass(frozen=True)
class Int8Settings:
    """How the float graph is quantized.

    Attributes:
        calibration_frames: SynthStreet frames the activation ranges are measured on.
        method: activation range estimate: ``minmax`` (full range), ``entropy`` (KL
            divergence) or ``percentile`` (0.001th to 99.999th percentile, the default:
            on CIAE it kept the most pixels as float32 labels them).
        per_channel: one weight scale per output channel (else one per tensor).
        exclude_ends: keep the first convolution and the graph's last operators in float
            (the input image and the outputs are the most sensitive to rounding).
    """

    calibration_frames: int = 16
    method: str = "percentile"
    per_channel: bool = True
    exclude_ends: bool = False

    def __post_init__(self) -> None:
        if self.calibration_frames < 1:
            raise ValueError(f"calibration_frames: must be >= 1, got {self.calibration_frames}")
        if self.method not in CALIBRATION_METHODS:
            raise ValueError(f"method: expected one of {', '.join(CALIBRATION_METHODS)}, got {self.method!r}")

    def key(self) -> str:
        """A short hash of the settings, for cache file names."""
        return hashlib.sha256(json.dumps(asdict(self), sort_keys=True).encode()).hexdigest()[:8]


def synthstreet_images(count: int, size: tuple[int, int], seed: int = CALIBRATION_SEED) -> list[np.ndarray]:
    """``count`` SynthStreet frames (H, W, 3) uint8 RGB at ``size`` (H, W)."""
    from panoptic_ros.synthstreet.scene import generate_scene

    return [generate_scene(seed, i, height=size[0], width=size[1]).image for i in range(count)]


def frame_reader(input_name: str, images: Iterable[np.ndarray]):
    """An ``onnxruntime.quantization.CalibrationDataReader`` over RGB frames ((H, W, 3)
    uint8): one ``{input_name: (1, 3, H, W) float32}`` feed per frame, then None.
    (The class is defined here: onnxruntime is imported only when quantizing.)"""
    from onnxruntime.quantization import CalibrationDataReader

    class _Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self._frames = iter(images)

        def get_next(self) -> dict[str, np.ndarray] | None:
            image = next(self._frames, None)
            if image is None:
                return None
            return {input_name: np.ascontiguousarray(image.transpose(2, 0, 1)[None], dtype=np.float32)}

    return _Reader()


def _end_nodes(model_path: Path) -> list[str]:
    """Names of the first convolution and of the nodes that produce graph outputs."""
    import onnx

    graph = onnx.load(str(model_path), load_external_data=False).graph
    outputs = {o.name for o in graph.output}
    first_conv = next((n.name for n in graph.node if n.op_type == "Conv"), None)
    return [n.name for n in graph.node if outputs & set(n.output)] + ([first_conv] if first_conv else [])


def quantize_int8(float_path: str | Path, out_path: str | Path, images: Sequence[np.ndarray],
                  settings: Int8Settings = Int8Settings()) -> Path:
    """Write a QDQ int8 version of the float ONNX model ``float_path`` to ``out_path``.

    Args:
        float_path: the exported float32 model (input ``images`` (1, 3, H, W)).
        out_path: the int8 model to write (written in a temporary folder beside it, then
            renamed: a reader never sees a partial file).
        images: calibration frames (H, W, 3) uint8 RGB at the model's input size.
        settings: how to quantize (``settings.calibration_frames`` is not read here).
    Returns:
        ``out_path``.
    """
    import onnx
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    float_path, out_path = Path(float_path), Path(out_path)
    input_name = onnx.load(str(float_path), load_external_data=False).graph.input[0].name
    out_path.parent.mkdir(parents=True, exist_ok=True)
    method = {"minmax": CalibrationMethod.MinMax, "entropy": CalibrationMethod.Entropy,
              "percentile": CalibrationMethod.Percentile}[settings.method]
    with tempfile.TemporaryDirectory(prefix=".panoptic_int8_", dir=out_path.parent) as tmp:
        prepared = Path(tmp) / "prepared.onnx"
        quant_pre_process(str(float_path), str(prepared), skip_symbolic_shape=True)
        excluded = _end_nodes(prepared) if settings.exclude_ends else []
        partial = Path(tmp) / "int8.onnx"
        quantize_static(str(prepared), str(partial), frame_reader(input_name, images),
                        quant_format=QuantFormat.QDQ, per_channel=settings.per_channel,
                        activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                        calibrate_method=method, nodes_to_exclude=excluded,
                        extra_options={"CalibTensorRangeSymmetric": False})
        os.replace(partial, out_path)
    return out_path


def int8_cache_path(float_path: Path, settings: Int8Settings) -> Path:
    """Where the int8 model of the cached float export ``float_path`` lives: next to it,
    named after it, the calibration frame count and the settings' key."""
    return float_path.with_name(f"{float_path.stem}-int8-c{settings.calibration_frames}-{settings.key()}.onnx")
