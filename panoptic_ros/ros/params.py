"""The node's parameters: declarations with descriptors, and their translation into the
predictor's and the node's settings.

Three kinds of parameters:

- *configure-time* (model, weights, backend, QoS, ...): read when the node configures
  (or activates, for the input topic and QoS); while the node is configured a change is
  rejected with the reason (deactivate and clean up first), so the running state always
  matches what ``ros2 param get`` shows.
- *runtime* (publish toggles, overlay alpha, image size limit): apply from the next frame.
- *post-processing* (``panonet.<setting>``, ``ciae.<setting>``): one per field of the
  model's post-processing config, described from its docstring. Unset means "the
  checkpoint's value"; after configure they show the values in use. Changes apply from
  the next frame and are validated by the config class itself (ranges, types).
"""
from __future__ import annotations

import array
import logging
import dataclasses
import re
import types
import typing
from dataclasses import dataclass
from typing import Any, Literal, Mapping

import yaml
from rcl_interfaces.msg import FloatingPointRange, IntegerRange, ParameterDescriptor
from rclpy.node import Node
from rclpy.parameter import Parameter

from panoptic_ros.config import ConfigError, from_dict
from panoptic_ros.inference.predictor import DEFAULT_PROVIDERS, PredictorConfig
from panoptic_ros.kinds import MODEL_KINDS, model_kind
from panoptic_ros.resources import default_weights
from panoptic_ros.serialized.compressed import DEFAULT_MAX_PIXELS

T = Parameter.Type
AT_CONFIGURE = "read at configure; change it in the unconfigured state"


@dataclass(frozen=True)
class Spec:
    """One declared parameter.

    Attributes:
        name: parameter name.
        type: ROS parameter type.
        default: default value; None declares it typed but unset.
        description: what it does (shown by ``ros2 param describe``).
        runtime: may change while the node is configured.
        read_only: never changes after start-up.
        range: inclusive (low, high) for numbers.
        choices: allowed strings.
    """

    name: str
    type: Parameter.Type
    default: Any
    description: str
    runtime: bool = False
    read_only: bool = False
    range: tuple[float, float] | None = None
    choices: tuple[str, ...] = ()

    def descriptor(self) -> ParameterDescriptor:
        constraints = [f"one of: {', '.join(self.choices)}"] if self.choices else []
        if not self.runtime and not self.read_only:
            constraints.append(AT_CONFIGURE)
        desc = ParameterDescriptor(name=self.name, type=self.type.value, description=self.description,
                                   additional_constraints="; ".join(constraints), read_only=self.read_only)
        if self.range is not None and self.type == T.DOUBLE:
            desc.floating_point_range = [FloatingPointRange(from_value=float(self.range[0]),
                                                            to_value=float(self.range[1]), step=0.0)]
        elif self.range is not None and self.type == T.INTEGER:
            desc.integer_range = [IntegerRange(from_value=int(self.range[0]), to_value=int(self.range[1]), step=1)]
        return desc


NODE_PARAMETERS: tuple[Spec, ...] = (
    Spec("model", T.STRING, "panonet", "model architecture", choices=MODEL_KINDS),
    Spec("weights", T.STRING, "", "checkpoint (.safetensors/.json or their stem); empty = the shipped "
                                  "demo weights of the model"),
    Spec("backend", T.STRING, "torch", "inference backend", choices=("torch", "onnxruntime")),
    Spec("device", T.STRING, "auto", "auto (CUDA when present, else CPU), cpu, cuda or cuda:N"),
    Spec("precision", T.STRING, "fp32", "inference precision: torch autocast on any device (bf16 pays on CPUs "
                                        "with AVX512-BF16 or AMX); onnxruntime: fp16 = TensorRT fp16 engines",
         choices=("fp32", "bf16", "fp16")),
    Spec("fp16", T.BOOL, False, "deprecated: true means precision fp16 (warns)"),
    Spec("input_size", T.INTEGER_ARRAY, None, "[H, W] the image is resized to for the model; "
                                              "unset = the checkpoint's size"),
    Spec("channels_last", T.BOOL, False, "torch: NHWC memory format"),
    Spec("compile", T.BOOL, False, "torch: torch.compile the model (slow first frame)"),
    Spec("num_threads", T.INTEGER, 0, "CPU inference threads (0 = library default)", range=(0, 256)),
    Spec("onnx.path", T.STRING, "", "onnxruntime: a ready .onnx file; empty = export into the cache"),
    Spec("onnx.cache_dir", T.STRING, "", "onnxruntime: export cache; empty = ~/.cache/panoptic_ros"),
    Spec("onnx.providers", T.STRING_ARRAY, list(DEFAULT_PROVIDERS),
         "onnxruntime providers by preference (tensorrt, cuda, cpu or full names); the first available "
         "one is used"),
    Spec("compressed", T.BOOL, False, "subscribe to image/compressed (CompressedImage) instead of image"),
    Spec("qos.reliability", T.STRING, "best_effort", "input subscription reliability",
         choices=("best_effort", "reliable")),
    Spec("qos.depth", T.INTEGER, 1, "input subscription queue depth", range=(1, 1000)),
    Spec("qos.output_depth", T.INTEGER, 3, "history depth of the output publishers (reliable): more than 1 lets a "
                                           "reliable subscriber get an output repaired after the next one is out; "
                                           "each sample of history holds one output message", range=(1, 100)),
    Spec("max_image_side", T.INTEGER, 8192, "input images wider or taller than this are rejected",
         runtime=True, range=(16, 16384)),
    Spec("max_image_pixels", T.INTEGER, DEFAULT_MAX_PIXELS, "input images of more pixels than this are rejected "
                                                            "before decoding (default: a 4096x2160 camera)",
         runtime=True, range=(256, 33_554_432)),
    Spec("publish.panoptic", T.BOOL, True, "publish ~/panoptic (32SC1 panoptic ids)", runtime=True),
    Spec("publish.semantic", T.BOOL, True, "publish ~/semantic (mono8 train indices, 255 = void)", runtime=True),
    Spec("publish.instances", T.BOOL, True, "publish ~/instances (mono16 instance index)", runtime=True),
    Spec("publish.overlay", T.BOOL, True, "publish ~/overlay (rgb8 colours over the image)", runtime=True),
    Spec("publish.detections", T.BOOL, True, "publish ~/detections (Detection2DArray)", runtime=True),
    Spec("publish.stuff_detections", T.BOOL, False, "also list stuff segments in ~/detections", runtime=True),
    Spec("overlay_alpha", T.DOUBLE, 0.5, "weight of the segment colours in ~/overlay", runtime=True,
         range=(0.0, 1.0)),
    Spec("diagnostics_period", T.DOUBLE, 1.0, "seconds between /diagnostics messages", read_only=True,
         range=(0.05, 60.0)),
    Spec("autostart", T.BOOL, True, "configure and activate on start-up", read_only=True),
    Spec("memory.keep_freed_buffers", T.BOOL, True, "keep freed multi-megabyte buffers mapped for the next "
                                                    "frame (glibc malloc thresholds; process-wide): no page "
                                                    "faults on the per-frame images, the process keeps its peak "
                                                    "heap", read_only=True),
)
_BY_NAME = {s.name: s for s in NODE_PARAMETERS}


@dataclass(frozen=True)
class IOSettings:
    """The node's own (non-model) settings, from the parameters."""

    compressed: bool
    reliability: Literal["best_effort", "reliable"]
    depth: int
    output_depth: int
    max_image_side: int
    max_image_pixels: int
    publish_panoptic: bool
    publish_semantic: bool
    publish_instances: bool
    publish_overlay: bool
    publish_detections: bool
    stuff_detections: bool
    overlay_alpha: float
    diagnostics_period: float


# IOSettings field -> parameter name
_IO_PARAMETERS = {
    "compressed": "compressed",
    "reliability": "qos.reliability",
    "depth": "qos.depth",
    "output_depth": "qos.output_depth",
    "max_image_side": "max_image_side",
    "max_image_pixels": "max_image_pixels",
    "publish_panoptic": "publish.panoptic",
    "publish_semantic": "publish.semantic",
    "publish_instances": "publish.instances",
    "publish_overlay": "publish.overlay",
    "publish_detections": "publish.detections",
    "stuff_detections": "publish.stuff_detections",
    "overlay_alpha": "overlay_alpha",
    "diagnostics_period": "diagnostics_period",
}


# ---- post-processing parameters -----------------------------------------------------

_SCALAR_TYPES = {bool: T.BOOL, int: T.INTEGER, float: T.DOUBLE, str: T.STRING}
_ARRAY_TYPES = {bool: T.BOOL_ARRAY, int: T.INTEGER_ARRAY, float: T.DOUBLE_ARRAY, str: T.STRING_ARRAY}


def _ros_type(hint: Any) -> Parameter.Type | None:
    """ROS parameter type for a dataclass field type; None if it has no ROS form."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        options = [a for a in args if a is not type(None)]
        return _ros_type(options[0]) if len(options) == 1 else None
    if origin is Literal:
        kinds = {type(a) for a in args}
        return _SCALAR_TYPES.get(kinds.pop()) if len(kinds) == 1 else None
    if origin in (tuple, list):
        items = {a for a in args if a is not Ellipsis}
        return _ARRAY_TYPES.get(items.pop()) if len(items) == 1 else None
    if origin is dict and args and args[0] is str and args[1] in (int, float, str):
        return T.STRING_ARRAY  # entries "key:value"
    return _SCALAR_TYPES.get(hint)


def _is_mapping(hint: Any) -> bool:
    return typing.get_origin(hint) is dict


def _from_ros(hint: Any, value: Any, name: str) -> Any:
    """A parameter value as the dataclass field wants it ("key:value" entries -> dict)."""
    value = plain(value)
    if not _is_mapping(hint):
        return value
    entries = {}
    for entry in value:
        key, sep, text = str(entry).rpartition(":")
        if not sep or not key.strip():
            raise ConfigError(f"{name}: entry {entry!r} is not 'name:value'")
        try:
            entries[key.strip()] = yaml.safe_load(text)
        except yaml.YAMLError:
            raise ConfigError(f"{name}: entry {entry!r} has no readable value") from None
    return entries


def _attribute_docs(cls: type) -> dict[str, str]:
    """``name: text`` entries of a Google-style ``Attributes:`` docstring section."""
    docs, current = {}, None
    doc = cls.__doc__ or ""
    section = doc.split("Attributes:", 1)[1] if "Attributes:" in doc else ""
    for line in section.splitlines():
        match = re.match(r"^\s{4,8}(\w+):\s*(.*)$", line)
        if match:
            current = match.group(1)
            docs[current] = match.group(2).strip()
        elif current and line.strip():
            docs[current] += " " + line.strip()
        elif not line.strip() and docs:
            current = None
    return docs


def postprocess_specs(kind: str) -> tuple[Spec, ...]:
    """``<kind>.<field>`` parameters for the fields of the model's post-processing config."""
    config_cls = model_kind(kind).postprocess_config
    hints = typing.get_type_hints(config_cls)
    docs = _attribute_docs(config_cls)
    specs = []
    for f in dataclasses.fields(config_cls):
        ros_type = _ros_type(hints[f.name])
        if ros_type is None:
            continue
        text = docs.get(f.name, f"{config_cls.__name__}.{f.name}")
        if _is_mapping(hints[f.name]):
            text += " Entries 'name:value', e.g. ['car:0.6', 'person:0.45']."
        specs.append(Spec(f"{kind}.{f.name}", ros_type, None,
                          f"{kind} post-processing: {text} (unset = the checkpoint's value)", runtime=True))
    return tuple(specs)


def all_specs() -> tuple[Spec, ...]:
    """Every parameter the node declares."""
    return NODE_PARAMETERS + tuple(s for kind in MODEL_KINDS for s in postprocess_specs(kind))


def declare_parameters(node: Node) -> None:
    """Declare every parameter of :func:`all_specs` on ``node`` (overrides applied)."""
    for spec in all_specs():
        # Unset and empty-array defaults are declared by type (rclpy would type [] as bytes).
        default = spec.type if spec.default is None or spec.default == [] else spec.default
        node.declare_parameter(spec.name, default, spec.descriptor())


def plain(value: Any) -> Any:
    """A parameter value as plain Python (arrays as lists)."""
    return list(value) if isinstance(value, (array.array, tuple, list)) else value


def parameter_values(node: Node) -> dict[str, Any]:
    """name -> current value of every declared parameter (None when unset)."""
    return {s.name: plain(node.get_parameter_or(s.name).value) for s in all_specs()}


# ---- parameters -> settings -----------------------------------------------------------

def predictor_config(values: Mapping[str, Any]) -> PredictorConfig:
    """The predictor settings the parameters describe (``ConfigError`` names the key)."""
    kind = values["model"]
    if kind not in MODEL_KINDS:
        raise ConfigError(f"model: {kind!r} is not one of {', '.join(MODEL_KINDS)}")
    data = {
        "weights": values["weights"] or str(default_weights(kind)),
        "model": kind,
        "backend": values["backend"],
        "device": values["device"],
        "precision": _precision(values),
        "input_size": values["input_size"] or None,
        "channels_last": values["channels_last"],
        "compile": values["compile"],
        "num_threads": values["num_threads"],
        "onnx_path": values["onnx.path"] or None,
        "onnx_cache_dir": values["onnx.cache_dir"] or None,
        "onnx_providers": list(values["onnx.providers"]),
        "postprocess": postprocess_overrides(values, kind),
    }
    return from_dict(PredictorConfig, data)


def _precision(values: Mapping[str, Any]) -> str:
    """``precision``, or ``fp16`` when only the deprecated ``fp16`` parameter asks for it."""
    if values.get("fp16"):
        if values["precision"] not in ("fp32", "fp16"):
            raise ConfigError(f"fp16: true contradicts precision {values['precision']!r}; set precision alone")
        logging.getLogger(__name__).warning("parameter fp16 is deprecated; use precision: fp16")
        return "fp16"
    return values["precision"]


def postprocess_overrides(values: Mapping[str, Any], kind: str) -> dict[str, Any]:
    """The post-processing settings of ``kind`` that are set (``<kind>.<field>`` -> field).

    Raises:
        ConfigError: a malformed ``name:value`` entry (names the parameter).
    """
    config_cls = model_kind(kind).postprocess_config
    hints = typing.get_type_hints(config_cls)
    prefix = f"{kind}."
    return {k[len(prefix):]: _from_ros(hints.get(k[len(prefix):]), v, k)
            for k, v in values.items() if k.startswith(prefix) and v is not None}


def io_settings(values: Mapping[str, Any]) -> IOSettings:
    """The node's own settings the parameters describe."""
    return from_dict(IOSettings, {field: values[name] for field, name in _IO_PARAMETERS.items()})


def check_changes(values: Mapping[str, Any], changes: Mapping[str, Any], *, configured: bool) -> str | None:
    """Why ``changes`` cannot be applied to ``values`` now, or None if they can.

    Args:
        values: current parameter values.
        changes: name -> new value.
        configured: the node is inactive or active (configure-time parameters are frozen).
    """
    frozen = sorted(n for n in changes if n in _BY_NAME and not _BY_NAME[n].runtime)
    if configured and frozen:
        return f"{', '.join(frozen)}: {AT_CONFIGURE} (deactivate and clean up the node first)"
    merged = {**values, **{k: plain(v) for k, v in changes.items()}}
    try:
        io_settings(merged)
        predictor_config(merged)
        for kind in MODEL_KINDS:
            config_cls = model_kind(kind).postprocess_config
            from_dict(config_cls, postprocess_overrides(merged, kind), f"{kind}")
    except ConfigError as exc:
        return str(exc)
    return None
