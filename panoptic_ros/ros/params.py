"""The node's parameters: declarations with descriptors, and their translation into the
predictor's and the node's settings.

Every parameter is a field of a config dataclass: :class:`PredictorConfig` (the model),
:class:`NodeSettings` (the node's own), or the model's post-processing config. Its type,
default, description and range are read from the field (``panoptic_ros.config.setting``);
this module adds only the parameter's name and when it may change.

Three kinds of parameters:

- *configure-time* (model, weights, backend, QoS, ...): read when the node configures
  (or activates, for the input topic and QoS); while the node is configured a change is
  rejected with the reason (deactivate and clean up first), so the running state always
  matches what ``ros2 param get`` shows.
- *runtime* (publish toggles, overlay alpha, image size limit): apply from the next frame.
- *post-processing* (``panonet.<setting>``, ``ciae.<setting>``): one per field of the
  model's post-processing config. Unset means "the
  checkpoint's value"; after configure they show the values in use. Changes apply from
  the next frame and are validated by the config class itself (ranges, types).
"""
from __future__ import annotations

import array
import dataclasses
import logging
import sys
import textwrap
import types
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Mapping

import yaml
from rcl_interfaces.msg import FloatingPointRange, IntegerRange, ParameterDescriptor
from rclpy.node import Node
from rclpy.parameter import Parameter

from panoptic_ros.cameras import parse_cameras
from panoptic_ros.config import ConfigError, Range, check_ranges, description_of, from_dict, range_of, setting
from panoptic_ros.inference.predictor import PredictorConfig
from panoptic_ros.kinds import MODEL_KINDS, model_kind
from panoptic_ros.resources import default_weights
from panoptic_ros.serialized.compressed import DEFAULT_MAX_PIXELS

T = Parameter.Type
AT_CONFIGURE = "read at configure; change it in the unconfigured state"
CONFIGURE, RUNTIME, STARTUP = "configure", "runtime", "start-up"  # when a parameter may change
_INT64 = (-(1 << 63), (1 << 63) - 1)
_FLOAT = (-sys.float_info.max, sys.float_info.max)


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
        range: allowed values of a number (of each item, for arrays and ``name:value`` entries).
        choices: allowed strings.
    """

    name: str
    type: Parameter.Type
    default: Any
    description: str
    runtime: bool = False
    read_only: bool = False
    range: Range | None = None
    choices: tuple[str, ...] = ()

    def constraints(self) -> str:
        """Choices, range and when it may change, as one line."""
        parts = [f"one of: {', '.join(self.choices)}"] if self.choices else []
        if self.range is not None:
            parts.append(f"{'each ' if self.type not in (T.INTEGER, T.DOUBLE) else ''}must be {self.range}")
        if not self.runtime and not self.read_only:
            parts.append(AT_CONFIGURE)
        return "; ".join(parts)

    def descriptor(self) -> ParameterDescriptor:
        desc = ParameterDescriptor(name=self.name, type=self.type.value, description=self.description,
                                   additional_constraints=self.constraints(), read_only=self.read_only)
        if self.range is not None and self.type == T.DOUBLE:
            low, high = _bounds(self.range, _FLOAT)
            desc.floating_point_range = [FloatingPointRange(from_value=float(low), to_value=float(high), step=0.0)]
        elif self.range is not None and self.type == T.INTEGER:
            low, high = _bounds(self.range, _INT64)
            desc.integer_range = [IntegerRange(from_value=int(low), to_value=int(high), step=1)]
        return desc


def _bounds(allowed: Range, limits: tuple[float, float]) -> tuple[float, float]:
    """Inclusive (low, high) for a ROS range: a missing bound is the type's limit; an open
    low bound is included (the config class rejects the bound itself, with its message)."""
    return (limits[0] if allowed.low is None else allowed.low, limits[1] if allowed.high is None else allowed.high)


@dataclass(frozen=True)
class NodeSettings:
    """The node's own (non-model) settings, from the parameters (each field describes itself)."""

    cameras: tuple[str, ...] = setting((), description=(
        "cameras served by this node with one model, batched: entries 'name' (input name/image, or "
        "name/image/compressed with compressed) or 'name:topic' (a topic ending in /compressed is "
        "CompressedImage); outputs ~/<name>/panoptic, ...; empty = one camera on image, outputs ~/panoptic, ..."))
    compressed: bool = setting(False, description="subscribe to image/compressed (CompressedImage) instead of "
                                                  "image")
    reliability: Literal["best_effort", "reliable"] = setting("best_effort",
                                                             description="input subscription reliability")
    depth: int = setting(1, range=Range(1, 1000), description="input subscription queue depth")
    output_depth: int = setting(3, range=Range(1, 100), description=(
        "history depth of the output publishers (reliable): more than 1 lets a reliable subscriber get an output "
        "repaired after the next one is out; each sample of history holds one output message"))
    max_image_side: int = setting(8192, range=Range(16, 16384),
                                  description="input images wider or taller than this are rejected")
    max_image_pixels: int = setting(DEFAULT_MAX_PIXELS, range=Range(256, 33_554_432), description=(
        "input images of more pixels than this are rejected before decoding (default: a 4096x2160 camera)"))
    publish_panoptic: bool = setting(True, description="publish ~/panoptic (32SC1 panoptic ids)")
    publish_semantic: bool = setting(True, description="publish ~/semantic (mono8 train indices, 255 = void)")
    publish_instances: bool = setting(True, description="publish ~/instances (mono16 instance index)")
    publish_overlay: bool = setting(True, description="publish ~/overlay (rgb8 colours over the image)")
    publish_detections: bool = setting(True, description="publish ~/detections (Detection2DArray)")
    stuff_detections: bool = setting(False, description="also list stuff segments in ~/detections")
    overlay_alpha: float = setting(0.5, range=Range(0.0, 1.0),
                                   description="weight of the segment colours in ~/overlay")
    diagnostics_period: float = setting(1.0, range=Range(0.05, 60.0),
                                        description="seconds between /diagnostics messages")
    autostart: bool = setting(True, description="configure and activate on start-up")
    keep_freed_buffers: bool = setting(True, description=(
        "keep freed multi-megabyte buffers mapped for the next frame (glibc malloc thresholds; process-wide): "
        "no page faults on the per-frame images, the process keeps its peak heap"))

    def __post_init__(self) -> None:
        check_ranges(self)
        parse_cameras(self.cameras)


# PredictorConfig field -> parameter name (all read at configure)
_PREDICTOR_PARAMETERS = {
    "model": "model", "weights": "weights", "backend": "backend", "device": "device", "precision": "precision",
    "fp16": "fp16", "input_size": "input_size", "channels_last": "channels_last", "compile": "compile",
    "num_threads": "num_threads", "onnx_path": "onnx.path", "onnx_cache_dir": "onnx.cache_dir",
    "onnx_providers": "onnx.providers", "onnx_spin_wait": "onnx.spin_wait",
}
# The node's own meaning of two predictor settings: parameter -> (default, description)
_NODE_MEANINGS = {
    "model": (MODEL_KINDS[0], "model architecture"),
    "weights": ("", "checkpoint (.safetensors/.json or their stem); empty = the shipped demo weights of the model"),
}
# NodeSettings field -> (parameter name, when it may change)
_NODE_PARAMETERS = {
    "cameras": ("cameras", STARTUP),
    "compressed": ("compressed", CONFIGURE),
    "reliability": ("qos.reliability", CONFIGURE),
    "depth": ("qos.depth", CONFIGURE),
    "output_depth": ("qos.output_depth", CONFIGURE),
    "max_image_side": ("max_image_side", RUNTIME),
    "max_image_pixels": ("max_image_pixels", RUNTIME),
    "publish_panoptic": ("publish.panoptic", RUNTIME),
    "publish_semantic": ("publish.semantic", RUNTIME),
    "publish_instances": ("publish.instances", RUNTIME),
    "publish_overlay": ("publish.overlay", RUNTIME),
    "publish_detections": ("publish.detections", RUNTIME),
    "stuff_detections": ("publish.stuff_detections", RUNTIME),
    "overlay_alpha": ("overlay_alpha", RUNTIME),
    "diagnostics_period": ("diagnostics_period", STARTUP),
    "autostart": ("autostart", STARTUP),
    "keep_freed_buffers": ("memory.keep_freed_buffers", STARTUP),
}


# ---- dataclass fields -> parameters ----------------------------------------------------

_SCALAR_TYPES = {bool: T.BOOL, int: T.INTEGER, float: T.DOUBLE, str: T.STRING, Path: T.STRING}
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


def _choices(hint: Any) -> tuple[str, ...]:
    """The values of a ``Literal`` (also inside ``Optional``)."""
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        return tuple(c for a in typing.get_args(hint) if a is not type(None) for c in _choices(a))
    return tuple(typing.get_args(hint)) if typing.get_origin(hint) is Literal else ()


def _ros_default(f: dataclasses.Field, ros_type: Parameter.Type) -> Any:
    """A field's default as a parameter value: unset strings are empty, tuples lists."""
    value = f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default
    if value is None:
        return "" if ros_type == T.STRING else None
    return list(value) if isinstance(value, tuple) else str(value) if isinstance(value, Path) else value


def _field_specs(cls: type, names: Mapping[str, tuple[str, str]]) -> list[Spec]:
    """One parameter per field of ``cls`` in ``names`` (field -> (parameter, when)), from
    the field's type, default, description and range."""
    hints, fields = typing.get_type_hints(cls), {f.name: f for f in dataclasses.fields(cls)}
    specs = []
    for field_name, (name, when) in names.items():
        f, ros_type = fields[field_name], _ros_type(hints[field_name])
        default, description = _NODE_MEANINGS.get(name, (None, None))
        if description is None:
            default, description = _ros_default(f, ros_type), description_of(f)
        specs.append(Spec(name, ros_type, default, description, runtime=when == RUNTIME, read_only=when == STARTUP,
                          range=range_of(f), choices=_choices(hints[field_name])))
    return specs


NODE_PARAMETERS: tuple[Spec, ...] = tuple(
    _field_specs(PredictorConfig, {field: (name, CONFIGURE) for field, name in _PREDICTOR_PARAMETERS.items()})
    + _field_specs(NodeSettings, _NODE_PARAMETERS))
_BY_NAME = {s.name: s for s in NODE_PARAMETERS}


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


def postprocess_specs(kind: str) -> tuple[Spec, ...]:
    """``<kind>.<field>`` parameters for the fields of the model's post-processing config."""
    config_cls = model_kind(kind).postprocess_config
    hints = typing.get_type_hints(config_cls)
    specs = []
    for f in dataclasses.fields(config_cls):
        ros_type = _ros_type(hints[f.name])
        if ros_type is None:
            continue
        text = description_of(f) or f"{config_cls.__name__}.{f.name}"
        if _is_mapping(hints[f.name]):
            text += ". Entries 'name:value', e.g. ['car:0.6', 'person:0.45']"
        specs.append(Spec(f"{kind}.{f.name}", ros_type, None,
                          f"{kind} post-processing: {text} (unset = the checkpoint's value)", runtime=True,
                          range=range_of(f), choices=_choices(hints[f.name])))
    return tuple(specs)


def all_specs() -> tuple[Spec, ...]:
    """Every parameter the node declares."""
    return NODE_PARAMETERS + tuple(s for kind in MODEL_KINDS for s in postprocess_specs(kind))


def parameter_help(width: int = 100) -> str:
    """Every parameter as ``name (type, default): description [constraints]`` lines, for ``--help``."""
    entries = []
    for spec in all_specs():
        default = "unset" if spec.default is None else repr(spec.default)
        constraints = spec.constraints()
        text = f"{spec.name} ({spec.type.name.lower()}, {default}): {spec.description}" + \
            (f" [{constraints}]" if constraints else "")
        entries.append(textwrap.fill(text, width, initial_indent="  ", subsequent_indent="      "))
    return "\n".join(entries)


def declare_parameters(node: Node) -> None:
    """Declare every parameter of :func:`all_specs` on ``node`` (overrides applied)."""
    for spec in all_specs():
        # Unset and empty-array defaults are declared by type (rclpy would type [] as bytes).
        default = spec.type if spec.default is None or spec.default == [] else spec.default
        descriptor = spec.descriptor()
        if spec.default == []:
            # An empty array is set by type after the declaration unless an override (command
            # line, file; `[]` in YAML is none) gave a value; read-only comes after that.
            writable = spec.descriptor()
            writable.read_only = False
            if node.declare_parameter(spec.name, default, writable).type_ == T.NOT_SET:
                node.set_parameters([Parameter(spec.name, spec.type, [])])
            node.set_descriptor(spec.name, descriptor)
        else:
            node.declare_parameter(spec.name, default, descriptor)


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
    optional = {f.name for f in dataclasses.fields(PredictorConfig) if f.default is None}
    data = {field: None if field in optional and values[name] in ("", [], None) else values[name]
            for field, name in _PREDICTOR_PARAMETERS.items() if field != "fp16"}
    data.update(weights=values["weights"] or str(default_weights(kind)), precision=_precision(values),
                postprocess=postprocess_overrides(values, kind))
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


def node_settings(values: Mapping[str, Any]) -> NodeSettings:
    """The node's own settings the parameters describe (``ConfigError`` names the field)."""
    # An unset parameter (an empty-array default is declared unset) takes the field's default.
    return from_dict(NodeSettings, {field: values[name] for field, (name, _) in _NODE_PARAMETERS.items()
                                    if values[name] is not None})


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
        node_settings(merged)
        predictor_config(merged)
        for kind in MODEL_KINDS:
            config_cls = model_kind(kind).postprocess_config
            from_dict(config_cls, postprocess_overrides(merged, kind), f"{kind}")
    except ConfigError as exc:
        return str(exc)
    return None
