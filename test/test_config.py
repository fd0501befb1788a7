from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, Optional

import pytest

from panoptic_ros.config import ConfigError, apply_overrides, from_dict, load, to_dict


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
