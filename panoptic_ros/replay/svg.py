"""Small inline SVG charts for the replay report: a histogram, a timeline and horizontal
bars. Plain strings, no plotting library (the report must be one self-contained file and
matplotlib is not a dependency); every text is escaped.
"""
from __future__ import annotations

import math
from html import escape
from typing import Sequence

AXIS = "#555"
GRID = "#e4e4e4"
FONT = 'font-family="Helvetica, Arial, sans-serif" font-size="11"'


def nice_ticks(low: float, high: float, count: int = 5) -> list[float]:
    """About ``count`` round tick values covering [low, high] (steps of 1, 2 or 5 x 10^k)."""
    if not (math.isfinite(low) and math.isfinite(high)) or high <= low:
        return [low]
    raw = (high - low) / max(count, 1)
    magnitude = 10 ** math.floor(math.log10(raw))
    step = next(m * magnitude for m in (1, 2, 5, 10) if m * magnitude >= raw)
    first = math.floor(low / step) * step
    ticks = []
    value = first
    while value <= high + step * 1e-9:
        ticks.append(round(value, 10))
        value += step
    if ticks[-1] < high:
        ticks.append(round(value, 10))
    return ticks


def _fmt(value: float) -> str:
    return f"{value:.0f}" if abs(value) >= 10 or value == int(value) else f"{value:.2g}"


class _Frame:
    """Plot area inside an SVG with margins for the axis labels; maps data to pixels."""

    def __init__(self, width: int, height: int, x_range: tuple[float, float], y_range: tuple[float, float],
                 left: int = 56, bottom: int = 36, top: int = 12, right: int = 14):
        self.width, self.height = width, height
        self.x0, self.x1, self.y0, self.y1 = left, width - right, height - bottom, top
        self.xr, self.yr = x_range, y_range

    def x(self, value: float) -> float:
        lo, hi = self.xr
        return self.x0 + (value - lo) / ((hi - lo) or 1.0) * (self.x1 - self.x0)

    def y(self, value: float) -> float:
        lo, hi = self.yr
        return self.y0 - (value - lo) / ((hi - lo) or 1.0) * (self.y0 - self.y1)

    def axes(self, x_ticks: Sequence[float], y_ticks: Sequence[float], x_label: str, y_label: str) -> list[str]:
        parts = []
        for t in y_ticks:
            y = self.y(t)
            parts.append(f'<line x1="{self.x0}" y1="{y:.1f}" x2="{self.x1}" y2="{y:.1f}" stroke="{GRID}"/>')
            parts.append(f'<text x="{self.x0 - 6}" y="{y + 4:.1f}" text-anchor="end" {FONT}>{_fmt(t)}</text>')
        for t in x_ticks:
            x = self.x(t)
            parts.append(f'<line x1="{x:.1f}" y1="{self.y0}" x2="{x:.1f}" y2="{self.y0 + 4}" stroke="{AXIS}"/>')
            parts.append(f'<text x="{x:.1f}" y="{self.y0 + 16}" text-anchor="middle" {FONT}>{_fmt(t)}</text>')
        parts.append(f'<line x1="{self.x0}" y1="{self.y0}" x2="{self.x1}" y2="{self.y0}" stroke="{AXIS}"/>')
        parts.append(f'<line x1="{self.x0}" y1="{self.y0}" x2="{self.x0}" y2="{self.y1}" stroke="{AXIS}"/>')
        parts.append(f'<text x="{(self.x0 + self.x1) / 2:.1f}" y="{self.height - 4}" text-anchor="middle" '
                     f'{FONT}>{escape(x_label)}</text>')
        cy = (self.y0 + self.y1) / 2
        parts.append(f'<text x="12" y="{cy:.1f}" text-anchor="middle" transform="rotate(-90 12 {cy:.1f})" '
                     f'{FONT}>{escape(y_label)}</text>')
        return parts


def _svg(width: int, height: int, parts: list[str], title: str) -> str:
    return (f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
            f'viewBox="0 0 {width} {height}" role="img" aria-label="{escape(title)}"><title>{escape(title)}</title>'
            + "".join(parts) + "</svg>")


def histogram_svg(edges: Sequence[float], counts: Sequence[int], *, x_label: str, title: str,
                  width: int = 640, height: int = 240, color: str = "#3b7dd8") -> str:
    """Bars of ``counts`` over the bins between consecutive ``edges``."""
    if not counts:
        return _svg(width, 40, [f'<text x="8" y="24" {FONT}>no data</text>'], title)
    x_ticks = nice_ticks(edges[0], edges[-1])
    top = max(counts)
    y_ticks = nice_ticks(0, top, 4)
    frame = _Frame(width, height, (min(edges[0], x_ticks[0]), max(edges[-1], x_ticks[-1])), (0, y_ticks[-1]))
    parts = frame.axes(x_ticks, y_ticks, x_label, "frames")
    for lo, hi, count in zip(edges[:-1], edges[1:], counts):
        x, w = frame.x(lo), max(frame.x(hi) - frame.x(lo) - 1, 1)
        y = frame.y(count)
        parts.append(f'<rect x="{x:.1f}" y="{y:.1f}" width="{w:.1f}" height="{frame.y0 - y:.1f}" fill="{color}">'
                     f'<title>{_fmt(lo)}-{_fmt(hi)}: {count}</title></rect>')
    return _svg(width, height, parts, title)


def timeline_svg(t_s: Sequence[float], values: Sequence[float | None], *, y_label: str, title: str,
                 width: int = 640, height: int = 240, color: str = "#3b7dd8", missing_color: str = "#d83b3b") -> str:
    """``values`` over time as dots joined by a line; None values (dropped frames) as red
    ticks under the axis."""
    if not t_s:
        return _svg(width, 40, [f'<text x="8" y="24" {FONT}>no data</text>'], title)
    present = [(t, v) for t, v in zip(t_s, values) if v is not None]
    x_ticks = nice_ticks(0.0, max(max(t_s), 1e-3))
    y_ticks = nice_ticks(0.0, max((v for _, v in present), default=1.0), 4)
    frame = _Frame(width, height, (0.0, x_ticks[-1]), (0.0, y_ticks[-1]))
    parts = frame.axes(x_ticks, y_ticks, "time since the first frame (s)", y_label)
    if present:
        points = " ".join(f"{frame.x(t):.1f},{frame.y(v):.1f}" for t, v in present)
        parts.append(f'<polyline points="{points}" fill="none" stroke="{color}" stroke-width="1" opacity="0.6"/>')
        parts += [f'<circle cx="{frame.x(t):.1f}" cy="{frame.y(v):.1f}" r="2" fill="{color}"/>' for t, v in present]
    parts += [f'<line x1="{frame.x(t):.1f}" y1="{frame.y0 - 5}" x2="{frame.x(t):.1f}" y2="{frame.y0}" '
              f'stroke="{missing_color}" stroke-width="1.5"/>' for t, v in zip(t_s, values) if v is None]
    return _svg(width, height, parts, title)


def bars_svg(rows: Sequence[tuple[str, float, str]], *, title: str, width: int = 640, row_height: int = 18,
             maximum: float = 1.0, value_format: str = "{:.1%}") -> str:
    """Horizontal bars: one (label, value, CSS colour) per row, value in [0, ``maximum``]."""
    label_width, right = 170, 60
    height = row_height * len(rows) + 8
    span = width - label_width - right
    parts = []
    for i, (label, value, color) in enumerate(rows):
        y = 4 + i * row_height
        w = max(0.0, min(value / maximum, 1.0)) * span
        parts.append(f'<text x="{label_width - 6}" y="{y + row_height * 0.7:.1f}" text-anchor="end" '
                     f'{FONT}>{escape(label)}</text>')
        parts.append(f'<rect x="{label_width}" y="{y + 2}" width="{w:.1f}" height="{row_height - 4}" '
                     f'fill="{escape(color)}" stroke="#0003"/>')
        parts.append(f'<text x="{label_width + w + 4:.1f}" y="{y + row_height * 0.7:.1f}" '
                     f'{FONT}>{escape(value_format.format(value))}</text>')
    return _svg(width, height, parts, title)
