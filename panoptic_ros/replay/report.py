"""The replay report: ``report.json`` (every figure) and ``report.html`` (one self-contained
page: inline CSS, inline SVG charts, pictures as base64 data URIs; nothing is fetched).

The page shows the frame counts and timing figures, a latency histogram and timeline, the
panoptic scores (All/Things/Stuff, per-class PQ bars and table, mIoU) when the bag had
ground truth, and a strip of sample frames: input, overlay, prediction and ground truth,
coloured with :mod:`panoptic_ros.viz` as the node colours them.
"""
from __future__ import annotations

import base64
import json
import math
from html import escape
from pathlib import Path

import cv2
import numpy as np

from panoptic_ros.checkpoint import atomic_write_bytes
from panoptic_ros.labels import LabelSpace
from panoptic_ros.replay.bag import stamp_text
from panoptic_ros.replay.evaluate import SampleFrame
from panoptic_ros.replay.svg import bars_svg, histogram_svg, timeline_svg
from panoptic_ros.viz import colorize_panoptic, panoptic_overlay

THUMB_WIDTH = 320
CSS = """
body{font-family:Helvetica,Arial,sans-serif;margin:24px;color:#222;background:#fafafa;max-width:1340px}
h1{font-size:22px;margin:0 0 4px}h2{font-size:17px;margin:28px 0 8px;border-bottom:1px solid #ddd;padding-bottom:4px}
.sub{color:#666;font-size:13px}.cards{display:flex;flex-wrap:wrap;gap:10px;margin-top:14px}
.card{background:#fff;border:1px solid #ddd;border-radius:6px;padding:10px 14px;min-width:120px}
.card b{display:block;font-size:20px}.card span{color:#666;font-size:12px}
.warn{background:#fff4e0;border:1px solid #e6b35c;padding:8px 12px;border-radius:6px;margin-top:12px}
.charts{display:flex;flex-wrap:wrap;gap:16px}.chart{background:#fff;border:1px solid #ddd;border-radius:6px;padding:8px}
table{border-collapse:collapse;background:#fff;font-size:12px}
td,th{border:1px solid #ddd;padding:3px 8px;text-align:right}
th{background:#f0f0f0}td:first-child,th:first-child{text-align:left}table.kv td{text-align:left}
.strip{display:grid;gap:6px;align-items:start}.strip img{width:100%;border:1px solid #ccc}
.strip div.h{font-size:12px;color:#555;text-align:center}code{background:#eee;padding:1px 4px;font-size:12px}
"""


def json_safe(value):
    """``value`` with non-finite floats as None (JSON has no NaN) and tuples as lists."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    if isinstance(value, np.generic):
        return json_safe(value.item())
    return value


def _data_uri(rgb: np.ndarray, width: int = THUMB_WIDTH) -> str:
    """(H, W, 3) uint8 RGB as a JPEG data URI, scaled to ``width`` pixels."""
    height = max(1, round(rgb.shape[0] * width / rgb.shape[1]))
    small = cv2.resize(np.ascontiguousarray(rgb), (width, height), interpolation=cv2.INTER_AREA)
    ok, jpeg = cv2.imencode(".jpg", small[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, 85])
    if not ok:
        raise ValueError("JPEG encoding of a report thumbnail failed")
    return "data:image/jpeg;base64," + base64.b64encode(jpeg.tobytes()).decode("ascii")


def sample_pictures(sample: SampleFrame, label_space: LabelSpace) -> dict[str, np.ndarray]:
    """The pictures of one sample frame: image, overlay, prediction, ground truth (those
    that exist)."""
    pictures = {}
    if sample.rgb is not None:
        pictures["image"] = sample.rgb
    if sample.pred is not None:
        if sample.rgb is not None and sample.rgb.shape[:2] == sample.pred.panoptic.shape:
            pictures["overlay"] = panoptic_overlay(sample.rgb, sample.pred, label_space)
        pictures["prediction"] = colorize_panoptic(sample.pred, label_space)
    if sample.gt is not None:
        pictures["ground truth"] = colorize_panoptic(sample.gt, label_space)
    return pictures


def write_report(out: Path, report: dict, samples: dict[int, SampleFrame], label_space: LabelSpace | None) -> dict:
    """Write ``samples/*_overlay.png``, ``report.json`` and ``report.html`` into ``out``;
    returns the report as written (JSON-safe, with ``sample_files``)."""
    strips = []
    files = []
    for stamp in sorted(samples):
        pictures = sample_pictures(samples[stamp], label_space) if label_space is not None else {}
        if "overlay" in pictures:
            path = out / "samples" / f"{stamp_text(stamp).replace('.', '_')}_overlay.png"
            path.parent.mkdir(parents=True, exist_ok=True)
            cv2.imwrite(str(path), pictures["overlay"][..., ::-1])
            files.append(str(path))
        strips.append((stamp, {k: _data_uri(v) for k, v in pictures.items()}))
    report["sample_files"] = files
    report = json_safe(report)
    atomic_write_bytes(out / "report.json", json.dumps(report, indent=2).encode())
    atomic_write_bytes(out / "report.html", render_html(report, strips).encode())
    return report


def _ms(value) -> str:
    return "–" if value is None else f"{value:.1f} ms"


def _pct(value) -> str:
    return "–" if value is None else f"{100 * value:.1f}"


def _cards(report: dict) -> str:
    f, ev = report["figures"], report.get("evaluation")
    lat, model = f["latency_ms"], f["model_ms"] or {}
    fps = f["throughput_fps"]
    items = [("frames in", f["frames_in"]), ("sent", f["frames_sent"]), ("outputs", f["frames_out"]),
             ("dropped", f["dropped"]), ("latency p50", _ms(lat["p50"])), ("latency p90", _ms(lat["p90"])),
             ("latency p99", _ms(lat["p99"])), ("model p50", _ms(model.get("p50"))),
             ("throughput", "–" if fps is None else f"{fps:.2f} fps")]
    if ev is not None:
        items += [("PQ", _pct(ev["pq"]["All"]["pq"])), ("PQ things", _pct(ev["pq"]["Things"]["pq"])),
                  ("PQ stuff", _pct(ev["pq"]["Stuff"]["pq"])), ("mIoU", _pct(ev["miou"]))]
    cards = "".join(f'<div class="card"><b>{escape(str(v))}</b><span>{escape(k)}</span></div>' for k, v in items)
    return f'<div class="cards">{cards}</div>{_drops(report)}'


def drop_text(report: dict) -> str | None:
    """Where the dropped frames went (live, from the node's counters), as one sentence."""
    drops, dropped = report["run"].get("drops"), report["figures"]["dropped"]
    if not drops or not dropped:
        return None
    lost = "lost in DDS before the node"
    if report["run"].get("input_reliability") == "best_effort":
        lost += " (its input is best effort; a reliable input delivers every frame)"
    parts = [(lost, drops["lost_before_node"]),
             ("replaced in the node's one-frame slot by newer frames", drops["replaced_in_node_slot"]),
             ("rejected or failed in the node", drops["rejected_by_node"] + drops["node_errors"]),
             ("answered, but the ~/panoptic output was lost on the way back", drops["outputs_lost_after_node"])]
    return f"{dropped} dropped: " + "; ".join(f"{n} {what}" for what, n in parts if n)


def _drops(report: dict) -> str:
    text = drop_text(report)
    return "" if text is None else f'<p class="sub">{escape(text)}.</p>'


def _charts(report: dict) -> str:
    f = report["figures"]
    hist = f["latency_histogram"]
    timeline = f["timeline"]
    return ('<h2>Latency</h2><p class="sub">End to end: from handing the frame to '
            + ("DDS to the arrival of its <code>~/panoptic</code>" if report["run"]["mode"] == "live"
               else "the Predictor to its serialized outputs")
            + '. Red ticks on the timeline: dropped frames.</p><div class="charts"><div class="chart">'
            + histogram_svg(hist["edges"], hist["counts"], x_label="latency (ms)", title="latency histogram")
            + '</div><div class="chart">'
            + timeline_svg(timeline["t_s"], timeline["latency_ms"], y_label="latency (ms)", title="latency timeline")
            + "</div></div>")


def _scores(ev: dict | None, coco: dict | None) -> str:
    if ev is None:
        return ""
    rows = "".join(f"<tr><td>{g}</td><td>{_pct(ev['pq'][g]['pq'])}</td><td>{_pct(ev['pq'][g]['sq'])}</td>"
                   f"<td>{_pct(ev['pq'][g]['rq'])}</td><td>{ev['pq'][g]['n']}</td></tr>"
                   for g in ("All", "Things", "Stuff"))
    present = [c for c in ev["per_class"] if c["tp"] + c["fp"] + c["fn"] > 0]
    bars = [(f"{c['name']}{' *' if c['is_thing'] else ''}", c["pq"], "rgb({},{},{})".format(*c["color"]))
            for c in present]
    table = "".join(f"<tr><td>{escape(c['name'])}{' *' if c['is_thing'] else ''}</td><td>{_pct(c['pq'])}</td>"
                    f"<td>{_pct(c['sq'])}</td><td>{_pct(c['rq'])}</td><td>{c['tp']}</td><td>{c['fp']}</td>"
                    f"<td>{c['fn']}</td><td>{_pct(c['iou'])}</td></tr>" for c in present)
    rescore = (f"<p class=\"sub\">Re-score: <code>{escape(coco['command'])}</code></p>"
               if coco and "command" in coco else "")
    return (f"<h2>Panoptic quality</h2><p class=\"sub\">{ev['frames_evaluated']} frames scored against the ground "
            f"truth (official PQ rules); mIoU {_pct(ev['miou'])}, pixel accuracy {_pct(ev['pixel_accuracy'])}. "
            f"* = thing class.</p><table><tr><th></th><th>PQ</th><th>SQ</th><th>RQ</th><th>classes</th></tr>{rows}"
            f"</table><h2>PQ per class</h2><div class=\"charts\"><div class=\"chart\">"
            f"{bars_svg(bars, title='PQ per class')}</div><table><tr><th>class</th><th>PQ</th><th>SQ</th><th>RQ</th>"
            f"<th>TP</th><th>FP</th><th>FN</th><th>IoU</th></tr>{table}</table></div>{rescore}")


def _strip(strips: list) -> str:
    if not strips:
        return ""
    columns = [c for c in ("image", "overlay", "prediction", "ground truth") if any(c in s for _, s in strips)]
    cells = "".join(f'<div class="h">{c}</div>' for c in columns)
    for stamp, pictures in strips:
        cells += "".join(f'<div><img alt="{c} {stamp_text(stamp)}" src="{pictures[c]}"></div>' if c in pictures
                         else "<div></div>" for c in columns)
    return (f'<h2>Sample frames</h2><div class="strip" style="grid-template-columns:repeat({len(columns)},1fr)">'
            f"{cells}</div><p class=\"sub\">stamps: {', '.join(stamp_text(s) for s, _ in strips)}</p>")


def _details(report: dict) -> str:
    run = report["run"]
    rows = {k: (f"{v:.2f}" if isinstance(v, float) else v) for k, v in run.items()
            if k not in ("node_figures", "drops") and v is not None}
    rows.update({"bag": report["bag_file"], "camera topic": f"{report['image_topic']} ({report['image_type']})",
                 "ground truth": report["gt_topic"] or "none", "output bag": report["output_bag"]["path"]})
    node = run.get("node_figures") or {}
    rows.update({f"node {k}": (f"{v:.1f}" if isinstance(v, float) else v) for k, v in node.items()})
    body = "".join(f"<tr><td>{escape(str(k))}</td><td>{escape(str(v))}</td></tr>" for k, v in rows.items())
    return f'<h2>Run</h2><table class="kv">{body}</table>'


def render_html(report: dict, strips: list) -> str:
    """The report page for a (JSON-safe) report dict and its sample thumbnails."""
    run = report["run"]
    title = f"panoptic-replay: {run.get('model') or ''} {run['mode']}"
    warnings = [("interrupted (Ctrl-C): results up to that point", report["interrupted"])]
    warnings += [(e, True) for e in report["errors"]]
    banner = "".join(f'<div class="warn">{escape(text)}</div>' for text, show in warnings if show)
    no_gt = ("" if report["evaluation"] is not None or report["gt_topic"] is not None else
             '<p class="sub">Ground truth ignored (--no-gt): no scores.</p>' if report["gt_ignored"] else
             '<p class="sub">The bag has no ground-truth topic (32SC1 panoptic ids): no scores.</p>')
    return (f"<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>{escape(title)}</title>"
            f"<style>{CSS}</style></head><body><h1>{escape(title)}</h1>"
            f"<div class=\"sub\">{escape(report['bag'])} · {escape(report['created'])}</div>{banner}"
            f"{_cards(report)}{_charts(report)}{_scores(report['evaluation'], report['coco'])}{no_gt}"
            f"{_strip(strips)}{_details(report)}</body></html>")
