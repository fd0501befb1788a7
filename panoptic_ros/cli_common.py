"""argparse value types shared by the console scripts (``panoptic-synth``, ``panoptic-replay``,
the training CLIs and the benchmarks): each parses one option's text or raises
``argparse.ArgumentTypeError`` with a message that says what was expected."""
from __future__ import annotations

import argparse
import re
from typing import Callable

MIN_SIZE = (64, 128)  # (H, W): the smallest SynthStreet scene and model input the CLIs take


def parse_size(text: str) -> tuple[int, int]:
    """``HxW`` (e.g. ``512x1024``) -> (H, W), at least :data:`MIN_SIZE`."""
    m = re.fullmatch(r"\s*(\d+)\s*[xX]\s*(\d+)\s*", text)
    if not m:
        raise argparse.ArgumentTypeError(f"size must be HEIGHTxWIDTH such as 512x1024, got {text!r}")
    h, w = int(m.group(1)), int(m.group(2))
    if h < MIN_SIZE[0] or w < MIN_SIZE[1]:
        raise argparse.ArgumentTypeError(f"size must be at least {MIN_SIZE[0]}x{MIN_SIZE[1]}, got {h}x{w}")
    return h, w


def int_at_least(minimum: int) -> Callable[[str], int]:
    """argparse type: an integer >= ``minimum`` (0 or 1: non-negative or positive)."""
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            value = minimum - 1
        if value < minimum:
            kind = "positive" if minimum == 1 else "non-negative"
            raise argparse.ArgumentTypeError(f"expected a {kind} integer, got {text!r}")
        return value
    return parse


positive_int, non_negative_int = int_at_least(1), int_at_least(0)


def positive_float(text: str) -> float:
    """argparse type: a finite number > 0."""
    try:
        value = float(text)
    except ValueError:
        value = 0.0
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}")
    return value
