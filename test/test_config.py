import dataclasses
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, Optional

import pytest

from panoptic_ros.config import (ConfigError, Range, apply_overrides, check_ranges, description_of, from_dict, load,
                                 range_of, setting, to_dict)


@dataclass(frozen=True)
class Inner:
    width: float = 1.0
    sizes: tuple[int, ...] = (1, 2)

    def __post_init__(self):
        if self.width <= 0:
            raise ValueError(f"width must be > 0, got {self.width}")


@dataclass(frozen=True)
class Outer:
    name: str
    mode: Literal["a", "b"] = "a"
    inner: Inner = field(default_factory=Inner)
    limit: Optional[int] = None
    hw: tuple[int, int] = (2, 3)
    table: dict[str, float] = field(default_factory=dict)
    path: Path = Path("x")
    flag: bool = False


def test_round_trip_and_defaults():
    cfg = from_dict(Outer, {"name": "n", "inner": {"width": 2, "sizes": [3]}, "table": {"car": 1}})
    assert cfg.inner == Inner(2.0, (3,)) and cfg.table == {"car": 1.0} and cfg.hw == (2, 3)
    assert from_dict(Outer, to_dict(cfg)) == cfg


@pytest.mark.parametrize("data, message", [
    ({"name": "n", "colour": 1}, "colour: unknown key"),
    ({"name": "n", "inner": {"widht": 1}}, "inner.widht: unknown key"),
    ({}, "name: missing required key"),
    ({"name": 3}, "name: expected str, got 3"),
    ({"name": "n", "mode": "c"}, "mode: 'c' is not one of 'a', 'b'"),
    ({"name": "n", "inner": {"width": "wide"}}, "inner.width: expected float, got 'wide'"),
    ({"name": "n", "inner": {"width": -1}}, "inner: width must be > 0"),
    ({"name": "n", "inner": {"sizes": [1, "x"]}}, r"inner.sizes\[1\]: expected int"),
    ({"name": "n", "hw": [1]}, "hw: expected 2 items"),
    ({"name": "n", "flag": 1}, "flag: expected bool"),
    ({"name": "n", "limit": True}, "limit: expected int"),
])
def test_errors_name_the_key(data, message):
    with pytest.raises(ConfigError, match=message):
        from_dict(Outer, data)


def test_overrides_and_files(tmp_path):
    f = tmp_path / "c.yaml"
    f.write_text("name: n\ninner:\n  width: 2\n")
    cfg = load(Outer, f, ["inner.width=0.5", "mode=b", "limit=null", "hw=[4, 5]"])
    assert cfg.inner.width == 0.5 and cfg.mode == "b" and cfg.limit is None and cfg.hw == (4, 5)
    assert apply_overrides({"a": {"b": 1}}, ["a.c=x"]) == {"a": {"b": 1, "c": "x"}}
    with pytest.raises(ConfigError, match="expected key=value"):
        apply_overrides({}, ["novalue"])
    f.write_text("name: [unclosed\n")
    with pytest.raises(ConfigError, match=f"{f}: malformed YAML"):
        load(Outer, f)
    with pytest.raises(ConfigError, match="cannot read config"):
        load(Outer, tmp_path / "missing.yaml")
    f.write_text("name: n\nbogus: 1\n")
    with pytest.raises(ConfigError, match=rf"{f}: bogus: unknown key"):
        load(Outer, f)


@pytest.mark.parametrize("text, value", [("1e-3", 1e-3), ("5E+2", 500.0), ("+2.5e-1", 0.25), (".5e1", 5.0),
                                         ("3.e0", 3.0)])
def test_float_fields_accept_plain_scientific_notation(tmp_path, text, value):
    # YAML 1.1 reads 1e-3 as a string; a float field takes it as the number it means, in a
    # file and in an override alike
    f = tmp_path / "c.yaml"
    f.write_text(f"name: n\ninner:\n  width: {text}\ntable:\n  car: {text}\n")
    cfg = load(Outer, f)
    assert cfg.inner.width == value and cfg.table == {"car": value}
    assert load(Outer, tmp_path / "c.yaml", [f"inner.width={text}"]).inner.width == value


@pytest.mark.parametrize("data, message", [
    ({"name": "n", "inner": {"width": "1e"}}, r"inner.width: expected float, got '1e'"),
    ({"name": "n", "inner": {"width": "e3"}}, r"inner.width: expected float, got 'e3'"),
    ({"name": "n", "inner": {"width": "1e-3x"}}, r"inner.width: expected float, got '1e-3x'"),
    ({"name": "n", "inner": {"sizes": ["1e3"]}}, r"inner.sizes\[0\]: expected int, got '1e3'"),
    ({"name": "1e3", "limit": "1e3"}, r"limit: expected int, got '1e3'"),
])
def test_scientific_notation_is_only_a_float(data, message):
    with pytest.raises(ConfigError, match=message):
        from_dict(Outer, data)


@dataclass(frozen=True)
class Ranged:
    rate: float = setting(0.5, range=Range(0, 1), description="a fraction")
    width: float = setting(1.0, range=Range(0, low_open=True), description="a positive width")
    sizes: tuple[int, ...] = setting((1, 2), range=Range(1), description="counts of at least one")
    table: dict[str, float] = setting(default_factory=dict, range=Range(high=10), description="at most ten each")
    name: str = setting("n", description="no range")

    def __post_init__(self):
        check_ranges(self)


def test_settings_carry_their_description_and_range_and_are_checked_by_them():
    fields = {f.name: f for f in dataclasses.fields(Ranged)}
    assert description_of(fields["rate"]) == "a fraction" and range_of(fields["name"]) is None
    assert [str(range_of(fields[n])) for n in ("rate", "width", "sizes", "table")] == \
        ["in [0, 1]", "> 0", ">= 1", "<= 10"]
    assert Ranged(rate=1.0, width=1e-9, sizes=(1,), table={"a": 10.0}).table == {"a": 10.0}
    for data, message in (({"rate": 1.5}, "rate: must be in [0, 1], got 1.5"),
                          ({"width": 0.0}, "width: must be > 0, got 0.0"),
                          ({"width": float("nan")}, "width: must be > 0, got nan"),
                          ({"sizes": [2, 0]}, "sizes: must be >= 1, got (2, 0)"),
                          ({"table": {"a": 1, "b": 11}}, "table: must be <= 10, got {'b': 11.0}")):
        with pytest.raises(ConfigError, match=re.escape(message)):
            from_dict(Ranged, data)
