"""Replay figures from hand-made frame records, the SVG charts and the report page."""
from __future__ import annotations

import math
import xml.etree.ElementTree as ET

import pytest

from panoptic_ros.replay.metrics import RunLog, histogram, percentiles, summarize
from panoptic_ros.replay.report import json_safe, render_html
from panoptic_ros.replay.svg import bars_svg, histogram_svg, nice_ticks, timeline_svg

SVG = "{http://www.w3.org/2000/svg}"


def _log() -> RunLog:
    log = RunLog()
    log.add(100, 1000, sent_s=10.0)
    log.add(200, 2000, sent_s=10.1)
    log.add(300, 3000, sent_s=10.2)
    log.add(400, 4000, rejected="truncated")
    log.output("panoptic", 100, 10.05, model_ms=30.0)
    log.output("overlay", 100, 10.06)
    log.output("panoptic", 100, 10.5)          # a repeat does not count twice
    log.output("panoptic", 300, 10.45, model_ms=50.0)
    log.output("panoptic", 999, 10.5)          # never sent (another publisher)
    return log


def test_summary_counts_frames_and_drops_and_times_latency():
    s = summarize(_log(), wall_s=1.0)
    assert (s["frames_in"], s["frames_sent"], s["frames_out"], s["dropped"]) == (4, 3, 2, 1)
    assert s["rejected"] == {"truncated": 1} and s["unmatched_outputs"] == 1
    assert s["outputs"] == {"panoptic": 2, "overlay": 1}
    assert s["latency_ms"]["p50"] == pytest.approx(150.0) and s["latency_ms"]["max"] == pytest.approx(250.0)
    assert s["model_ms"]["p50"] == pytest.approx(40.0)
    assert s["timeline"] == {"t_s": [0.0, 0.1, 0.2], "latency_ms": [50.0, None, 250.0]}
    assert s["throughput_fps"] == pytest.approx(2 / 0.45)


def test_percentiles_and_histogram():
    p = percentiles([1.0, 2.0, 3.0, 4.0, None])
    assert (p["p50"], p["p90"], p["mean"], p["max"]) == pytest.approx((2.5, 3.7, 2.5, 4.0))
    assert percentiles([])["p99"] is None
    h = histogram(list(range(100)))
    assert len(h["counts"]) == 10 and sum(h["counts"]) == 100 and h["edges"][0] == 0 and h["edges"][-1] == 99
    assert histogram([]) == {"edges": [], "counts": []}


def test_nice_ticks_are_round_and_cover_the_range():
    assert nice_ticks(0, 97) == [0, 20, 40, 60, 80, 100]
    assert nice_ticks(0, 1) == pytest.approx([0, 0.2, 0.4, 0.6, 0.8, 1.0])
    assert nice_ticks(12.5, 13.4, 4) == pytest.approx([12.5, 13.0, 13.5])  # step 0.5 >= 0.9 / 4


def test_charts_are_well_formed_svg():
    hist = ET.fromstring(histogram_svg([0, 1, 2, 3], [4, 0, 2], x_label="ms", title="h"))
    assert len(hist.findall(f"{SVG}rect")) == 3
    line = ET.fromstring(timeline_svg([0, 1, 2], [5.0, None, 7.0], y_label="ms", title="t <&>"))
    assert len(line.findall(f"{SVG}circle")) == 2 and line.find(f"{SVG}title").text == "t <&>"
    bars = ET.fromstring(bars_svg([("car <1>", 0.5, "rgb(0,0,142)"), ("road", 1.2, "#804080")], title="b"))
    widths = [float(r.get("width")) for r in bars.findall(f"{SVG}rect")]
    assert widths[1] == 410 and widths[0] == pytest.approx(205)   # clipped to the maximum


def test_report_json_has_no_nan_and_the_page_escapes_text():
    assert json_safe({"a": math.nan, "b": [1.0, math.inf], 3: (2,)}) == {"a": None, "b": [1.0, None], "3": [2]}
    s = summarize(_log(), wall_s=1.0)
    report = json_safe({"created": "now", "bag": "<bag>", "bag_file": "x", "image_topic": "/c",
                        "image_type": "sensor_msgs/msg/Image", "gt_topic": None, "gt_ignored": False,
                        "run": {"mode": "offline", "model": "ciae"}, "interrupted": True, "errors": ["bad <file>"],
                        "figures": s, "evaluation": None, "coco": None, "output_bag": {"path": "o"}})
    html = render_html(report, [])
    assert "&lt;bag&gt;" in html and "bad &lt;file&gt;" in html and "<bag>" not in html
    assert "interrupted (Ctrl-C)" in html and "no ground-truth topic" in html
