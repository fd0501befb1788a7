"""Typed configuration: frozen dataclasses loaded strictly from YAML or dicts.

Every config in the project is a frozen dataclass; its ``__post_init__`` checks ranges.
This module turns plain data (YAML, JSON, ``key=value`` overrides) into those
dataclasses and back, and rejects unknown keys and wrong types with an error that names
the full key path (``model.backbone.width: expected float, got 'wide'``).

Supported field types: ``bool int float str``, ``pathlib.Path``, ``Literal[...]``,
``Optional[X]`` / ``X | None``, ``tuple[X, ...]``, ``tuple[X, Y]``, ``list[X]``,
``dict[str, X]`` and nested dataclasses.

Each setting's default, description and allowed range are written once, in its field
(:func:`setting`); validation (:func:`check_ranges`), the node's ROS parameter
descriptors and its ``--help`` read them from there.
"""
from __future__ import annotations

import dataclasses
import re
import types
import typing
from pathlib import Path
from typing import Any, Iterable, Mapping, TypeVar

import yaml

T = TypeVar("T")

# YAML 1.1 (PyYAML) reads ``1e-3`` as a string: it wants a dot and a signed exponent
# (``1.0e-3``). Float fields accept the plain scientific notation most people write.
_SCIENTIFIC = re.compile(r"[+-]?(\d+\.?\d*|\.\d+)[eE][+-]?\d+")


class ConfigError(ValueError):
    """A configuration value or file that cannot be used; the message names the key."""


@dataclasses.dataclass(frozen=True)
class Range:
    """The allowed values of a number: ``low <= value <= high`` (``low < value`` when
    ``low_open``); a missing bound is no bound."""

    low: float | None = None
    high: float | None = None
    low_open: bool = False

    def __contains__(self, value: float) -> bool:
        above = self.low is None or (value > self.low if self.low_open else value >= self.low)
        return above and (self.high is None or value <= self.high)

    def __str__(self) -> str:
        if self.low is not None and self.high is not None and not self.low_open:
            return f"in [{self.low}, {self.high}]"
        bounds = [f"{'>' if self.low_open else '>='} {self.low}"] if self.low is not None else []
        bounds += [f"<= {self.high}"] if self.high is not None else []
        return " and ".join(bounds) or "any number"


def setting(default: Any = dataclasses.MISSING, *, description: str, range: Range | None = None,
            default_factory: Any = dataclasses.MISSING) -> Any:
    """A dataclass field that carries its description and allowed range.

    Args:
        default / default_factory: as for ``dataclasses.field``.
        description: what the setting does, one sentence (ROS descriptors, ``--help``).
        range: allowed values of a number, or of each item of a tuple or dict of numbers.
    """
    return dataclasses.field(default=default, default_factory=default_factory,
                             metadata={"description": description, "range": range})


def description_of(f: dataclasses.Field) -> str:
    """The description :func:`setting` gave field ``f`` ("" if none)."""
    return f.metadata.get("description", "")


def range_of(f: dataclasses.Field) -> Range | None:
    """The range :func:`setting` gave field ``f`` (None if none)."""
    return f.metadata.get("range")


def check_ranges(config: Any) -> None:
    """Check every field of dataclass instance ``config`` against its :func:`setting` range.

    Raises:
        ValueError: ``"<field>: must be <range>, got <value>"`` for the first value outside.
    """
    for f in dataclasses.fields(config):
        allowed = range_of(f)
        value = getattr(config, f.name)
        if allowed is None or value is None:
            continue
        if isinstance(value, Mapping):
            outside = {k: v for k, v in value.items() if v not in allowed}
        else:
            outside = [v for v in (value if isinstance(value, (tuple, list)) else (value,)) if v not in allowed]
        if outside:
            shown = outside if isinstance(value, Mapping) else value
            raise ValueError(f"{f.name}: must be {allowed}, got {shown!r}")


def from_dict(cls: type[T], data: Mapping[str, Any], where: str = "") -> T:
    """Build dataclass ``cls`` from ``data``, strictly.

    Args:
        cls: a dataclass type.
        data: its fields as plain data; missing fields take the dataclass defaults.
        where: key path prefix used in error messages.
    Raises:
        ConfigError: unknown or missing keys, wrong types, or a failed ``__post_init__``
            check (its message is kept, prefixed with the key path).
    """
    if not isinstance(data, Mapping):
        raise ConfigError(f"{where or cls.__name__}: expected a mapping, got {type(data).__name__}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise ConfigError(f"{_join(where, str(unknown[0]))}: unknown key (known: {', '.join(sorted(fields))})")
    kwargs = {}
    for name, f in fields.items():
        if name in data:
            kwargs[name] = _convert(hints[name], data[name], _join(where, name))
        elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            raise ConfigError(f"{_join(where, name)}: missing required key")
    try:
        return cls(**kwargs)
    except ConfigError:
        raise
    except (ValueError, TypeError) as exc:
        raise ConfigError(f"{where or cls.__name__}: {exc}") from None


def to_dict(obj: Any) -> Any:
    """A dataclass (or nested value) as plain YAML/JSON-ready data."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: to_dict(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, (list, tuple)):
        return [to_dict(v) for v in obj]
    if isinstance(obj, Mapping):
        return {k: to_dict(v) for k, v in obj.items()}
    if isinstance(obj, Path):
        return str(obj)
    return obj


def read_yaml(path: str | Path) -> dict:
    """Read a YAML mapping; errors name the file."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read config ({exc.strerror or exc})") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not UTF-8 text (byte 0x{exc.object[exc.start]:02x} at offset {exc.start})") \
            from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: malformed YAML: {yaml_error_line(exc)}") from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping at the top level, got {type(data).__name__}")
    return data


def yaml_error_line(exc: yaml.YAMLError) -> str:
    """A PyYAML error in one line: what is wrong, and where (PyYAML's own text spans lines
    and quotes the offending source)."""
    problem = getattr(exc, "problem", None)
    mark = getattr(exc, "problem_mark", None)
    if problem is None:
        return " ".join(str(exc).split())
    where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
    context = getattr(exc, "context", None)
    return f"{problem}{where}" + (f" ({context})" if context else "")


def apply_overrides(data: Mapping[str, Any], overrides: Iterable[str]) -> dict:
    """Apply ``dotted.key=value`` overrides (values parsed as YAML) to a nested dict copy."""
    result = _deep_copy(data)
    for item in overrides:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"override {item!r}: expected key=value")
        try:
            value = yaml.safe_load(raw) if raw != "" else ""
        except yaml.YAMLError:
            value = raw
        node = result
        parts = key.split(".")
        for part in parts[:-1]:
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                raise ConfigError(f"override {item!r}: {part} is not a section")
            node = child
        node[parts[-1]] = value
    return result


def load(cls: type[T], path: str | Path, overrides: Iterable[str] = ()) -> T:
    """Read YAML ``path``, apply overrides, and build ``cls``; errors name the file."""
    data = apply_overrides(read_yaml(path), overrides)
    try:
        return from_dict(cls, data)
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from None


def _join(where: str, name: str) -> str:
    return f"{where}.{name}" if where else name


def _deep_copy(data: Any) -> Any:
    if isinstance(data, Mapping):
        return {k: _deep_copy(v) for k, v in data.items()}
    if isinstance(data, list):
        return [_deep_copy(v) for v in data]
    return data


def _describe(value: Any) -> str:
    return f"{value!r} ({type(value).__name__})"


def _convert(tp: Any, value: Any, where: str) -> Any:  # noqa: C901 - one branch per type form
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if tp is Any:
        return value
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        options = [a for a in args if a is not type(None)]
        errors = []
        for option in options:
            try:
                return _convert(option, value, where)
            except ConfigError as exc:
                errors.append(str(exc))
        raise ConfigError(errors[0] if len(errors) == 1 else f"{where}: {_describe(value)} matches none of {tp}")
    if origin is typing.Literal:
        if value not in args:
            raise ConfigError(f"{where}: {value!r} is not one of {', '.join(map(repr, args))}")
        return value
    if dataclasses.is_dataclass(tp):
        if isinstance(value, tp):
            return value
        return from_dict(tp, value, where)
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where}: expected a list, got {_describe(value)}")
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_convert(args[0], v, f"{where}[{i}]") for i, v in enumerate(value))
        if len(value) != len(args):
            raise ConfigError(f"{where}: expected {len(args)} items, got {len(value)}")
        return tuple(_convert(a, v, f"{where}[{i}]") for i, (a, v) in enumerate(zip(args, value)))
    if origin is list:
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where}: expected a list, got {_describe(value)}")
        return [_convert(args[0], v, f"{where}[{i}]") for i, v in enumerate(value)]
    if origin in (dict, Mapping) or tp is dict:
        if not isinstance(value, Mapping):
            raise ConfigError(f"{where}: expected a mapping, got {_describe(value)}")
        key_t, val_t = args or (str, Any)
        return {_convert(key_t, k, where): _convert(val_t, v, f"{where}.{k}") for k, v in value.items()}
    return _convert_scalar(tp, value, where)


def _convert_scalar(tp: Any, value: Any, where: str) -> Any:
    if tp is bool:
        if isinstance(value, bool):
            return value
    elif tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str) and _SCIENTIFIC.fullmatch(value.strip()):
            return float(value)
    elif tp is str:
        if isinstance(value, str):
            return value
    elif tp is Path:
        if isinstance(value, (str, Path)):
            return Path(value)
    else:
        raise ConfigError(f"{where}: unsupported config type {tp!r}")
    raise ConfigError(f"{where}: expected {tp.__name__}, got {_describe(value)}")
