"""Per-frame bookkeeping of a replay and its figures (frames, drops, latency, throughput).

Times are ``time.perf_counter()`` seconds taken where the event happens: when a frame is
handed to DDS (live) or to the Predictor (offline), and when its primary output
(``~/panoptic``) arrives (live) or has been built and serialized (offline). A frame counts
as *processed* once its primary output is there; ``dropped = sent - processed``, whatever
the reason (lost by DDS, replaced in the node's one-frame slot, rejected, timed out).
"""
from __future__ import annotations

import math
import threading
from collections import Counter
from dataclasses import dataclass, field

import numpy as np

PERCENTILES = (50, 90, 99)


@dataclass
class FrameRecord:
    """One input frame.

    Attributes:
        index: position among the frames read (0, 1, ...).
        stamp_ns: header stamp (the key outputs are matched by).
        log_ns: log time in the input bag.
        sent_s: when it was handed over; None if it never was (undecodable offline).
        done_s: when its primary output arrived; None while (or if never) processed.
        model_ms: model time of this frame where known (offline).
        rejected: why it was not handed over (decode cause), else None.
        outputs: names of the outputs received for it.
    """

    index: int
    stamp_ns: int
    log_ns: int
    sent_s: float | None = None
    done_s: float | None = None
    model_ms: float | None = None
    rejected: str | None = None
    outputs: set[str] = field(default_factory=set)

    @property
    def latency_ms(self) -> float | None:
        if self.sent_s is None or self.done_s is None:
            return None
        return (self.done_s - self.sent_s) * 1e3


class RunLog:
    """Frames of one replay and the outputs that came back; thread-safe.

    Args:
        primary: the output whose arrival marks a frame as processed.
    """

    def __init__(self, primary: str = "panoptic"):
        self.primary = primary
        self.records: list[FrameRecord] = []
        self.unmatched_outputs = 0   # outputs whose stamp was never sent (another publisher)
        self.output_counts: Counter[str] = Counter()
        self._by_stamp: dict[int, FrameRecord] = {}
        self._cond = threading.Condition()

    def add(self, stamp_ns: int, log_ns: int, *, sent_s: float | None = None,
            rejected: str | None = None) -> FrameRecord:
        """A frame read from the bag: handed over at ``sent_s`` or ``rejected``."""
        with self._cond:
            record = FrameRecord(len(self.records), stamp_ns, log_ns, sent_s=sent_s, rejected=rejected)
            self.records.append(record)
            if rejected is None:
                self._by_stamp[stamp_ns] = record
            return record

    def output(self, name: str, stamp_ns: int, t: float, model_ms: float | None = None) -> FrameRecord | None:
        """Output ``name`` of the frame stamped ``stamp_ns`` is there at ``t``.

        Returns:
            the frame's record, or None for a stamp that was never sent.
        """
        with self._cond:
            record = self._by_stamp.get(stamp_ns)
            if record is None:
                self.unmatched_outputs += 1
                return None
            if name not in record.outputs:
                record.outputs.add(name)
                self.output_counts[name] += 1
                if name == self.primary:
                    record.done_s = t
                    record.model_ms = model_ms
            self._cond.notify_all()
            return record

    def wait(self, predicate, timeout: float) -> bool:
        """Block until ``predicate()`` holds (checked on every output) or ``timeout`` s pass."""
        with self._cond:
            return self._cond.wait_for(predicate, timeout)

    def record_of(self, stamp_ns: int) -> FrameRecord | None:
        with self._cond:
            return self._by_stamp.get(stamp_ns)

    @property
    def sent(self) -> int:
        with self._cond:
            return sum(r.sent_s is not None for r in self.records)

    @property
    def processed(self) -> int:
        with self._cond:
            return sum(r.done_s is not None for r in self.records)

    def processed_stamps(self) -> set[int]:
        with self._cond:
            return {r.stamp_ns for r in self.records if r.done_s is not None}


def percentiles(values, qs=PERCENTILES) -> dict[str, float | None]:
    """``{"p50": ..., "p90": ..., "p99": ..., "mean": ..., "max": ...}``; None when empty."""
    values = np.asarray([v for v in values if v is not None], dtype=np.float64)
    if values.size == 0:
        return {**{f"p{q}": None for q in qs}, "mean": None, "max": None}
    out = {f"p{q}": float(v) for q, v in zip(qs, np.percentile(values, qs))}
    return {**out, "mean": float(values.mean()), "max": float(values.max())}


def histogram(values, max_bins: int = 30) -> dict[str, list]:
    """``{"edges": [B + 1], "counts": [B]}`` of the values (about sqrt(N) bins)."""
    values = np.asarray(values, dtype=np.float64)
    if values.size == 0:
        return {"edges": [], "counts": []}
    bins = int(min(max_bins, max(5, math.ceil(math.sqrt(values.size)))))
    low, high = float(values.min()), float(values.max())
    if high - low < 1e-9:
        low, high = low - 0.5, high + 0.5
    counts, edges = np.histogram(values, bins=bins, range=(low, high))
    return {"edges": [float(e) for e in edges], "counts": [int(c) for c in counts]}


def summarize(log: RunLog, *, wall_s: float, model_ms: dict | None = None) -> dict:
    """The run's figures as a JSON-ready dict.

    Args:
        log: the frames.
        wall_s: wall-clock duration of the run.
        model_ms: model-time percentiles from elsewhere (the node's diagnostics); None
            computes them from the records (offline).
    """
    records = list(log.records)
    sent = [r for r in records if r.sent_s is not None]
    done = [r for r in sent if r.done_s is not None]
    latencies = [r.latency_ms for r in done]
    start = min((r.sent_s for r in sent), default=0.0)
    span = max((r.done_s for r in done), default=start) - start
    return {
        "frames_in": len(records),
        "frames_sent": len(sent),
        "frames_out": len(done),
        "dropped": len(sent) - len(done),
        "rejected": dict(Counter(r.rejected for r in records if r.rejected is not None)),
        "outputs": dict(log.output_counts),
        "unmatched_outputs": log.unmatched_outputs,
        "latency_ms": percentiles(latencies),
        "latency_histogram": histogram(latencies),
        "timeline": {"t_s": [round(r.sent_s - start, 4) for r in sent],
                     "latency_ms": [None if r.latency_ms is None else round(r.latency_ms, 3) for r in sent]},
        "model_ms": model_ms if model_ms is not None else percentiles(r.model_ms for r in done),
        "throughput_fps": len(done) / span if span > 0 else None,
        "wall_s": wall_s,
    }
