"""Latest-frame-only hand-over between the subscription and the inference thread, and the
running statistics the node reports on ``/diagnostics``.

Pure Python (no rclpy): the subscription callback of each camera
:meth:`KeyedLatestSlot.put` s each frame; one worker thread :meth:`KeyedLatestSlot.take` s
the newest frame of every camera that has one. A frame that arrives while one of its
camera waits replaces it, so the worker never works through a backlog of stale frames.
"""
from __future__ import annotations

import threading
import time
from collections import Counter, deque
from dataclasses import dataclass
from typing import Any, Callable, Generic, TypeVar

import numpy as np

T = TypeVar("T")


@dataclass(frozen=True)
class Frame(Generic[T]):
    """A received message and when it arrived (``time.monotonic()`` seconds)."""

    msg: T
    received: float
    index: int


class KeyedLatestSlot(Generic[T]):
    """One-item mailboxes, one per key (camera), whose ``put`` overwrites; thread-safe.

    :meth:`take` hands over the newest item of every key that has one, all at once: one
    inference cycle serves every camera with a new frame, so under overload every camera
    is served in turn (none waits while another is served twice) and no item taken is
    older than one put of its own key.

    Args:
        on_put: called with (key, item) while the slot is locked, as it is stored.
        on_take: called with (key, item) while the slot is locked, as it is taken. Both
            run in one global order, so time stamps taken in them are exact.
    """

    def __init__(self, on_put: Callable[[Any, T], None] | None = None,
                 on_take: Callable[[Any, T], None] | None = None):
        self._cond = threading.Condition()
        self._items: dict[Any, T] = {}
        self._closed = False
        self._on_put = on_put
        self._on_take = on_take

    def put(self, key: Any, item: T) -> T | None:
        """Store ``item`` for ``key``; returns the item that was not kept: the waiting one
        of ``key`` it replaced (never taken), ``item`` itself when closed, else None."""
        with self._cond:
            if self._closed:
                return item
            replaced = self._items.pop(key, None)
            self._items[key] = item   # re-inserted: keys are taken in the order their items came
            if self._on_put is not None:
                self._on_put(key, item)
            self._cond.notify()
            return replaced

    def take(self, timeout: float | None = None) -> dict[Any, T] | None:
        """key -> newest item of every key that has one (removing them), or None on
        timeout or after :meth:`close`."""
        with self._cond:
            self._cond.wait_for(lambda: self._items or self._closed, timeout)
            items, self._items = self._items, {}
            if self._closed or not items:
                return None
            if self._on_take is not None:
                for key, item in items.items():
                    self._on_take(key, item)
            return items

    def clear(self) -> dict[Any, T]:
        """Forget the waiting items; returns them."""
        with self._cond:
            items, self._items = self._items, {}
            return items

    def close(self) -> dict[Any, T]:
        """Wake every waiter; later ``take`` calls return None at once and ``put`` keeps
        nothing. Returns the waiting items it forgot."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()
            items, self._items = self._items, {}
            return items


class LatestSlot(Generic[T]):
    """A one-item mailbox whose ``put`` overwrites; thread-safe (a
    :class:`KeyedLatestSlot` of one key).

    Args:
        on_put: called with each item while the slot is locked, as it is stored.
        on_take: called with each item while the slot is locked, as it is taken. Both
            run in one global order, so time stamps taken in them are exact.
    """

    def __init__(self, on_put: Callable[[T], None] | None = None, on_take: Callable[[T], None] | None = None):
        self._slot: KeyedLatestSlot[T] = KeyedLatestSlot(
            on_put=None if on_put is None else lambda _, item: on_put(item),
            on_take=None if on_take is None else lambda _, item: on_take(item))

    def put(self, item: T) -> T | None:
        """Store ``item``; returns the item that was not kept: the waiting one it replaced
        (never taken), ``item`` itself when the slot is closed, else None."""
        return self._slot.put(None, item)

    def take(self, timeout: float | None = None) -> T | None:
        """The newest item (removing it), or None on timeout or after :meth:`close`."""
        items = self._slot.take(timeout)
        return None if items is None else items[None]

    def clear(self) -> T | None:
        """Forget the waiting item; returns it (None if there was none)."""
        return self._slot.clear().get(None)

    def close(self) -> T | None:
        """Wake every waiter; later ``take`` calls return None at once and ``put`` keeps
        nothing. Returns the waiting item it forgot (None if there was none)."""
        return self._slot.close().get(None)


class Window:
    """The last ``size`` samples of a quantity, for percentiles."""

    def __init__(self, size: int = 200):
        self._values: deque[float] = deque(maxlen=size)

    def add(self, value: float) -> None:
        self._values.append(value)

    def percentiles(self, qs: tuple[float, ...] = (50, 90, 99)) -> tuple[float, ...]:
        """The ``qs`` percentiles, NaN while empty."""
        if not self._values:
            return tuple(float("nan") for _ in qs)
        return tuple(float(v) for v in np.percentile(np.fromiter(self._values, float), qs))

    def max(self) -> float:
        return max(self._values, default=float("nan"))

    def values(self) -> list[float]:
        """The samples, oldest first."""
        return list(self._values)


class RateMeter:
    """Events per second over the last ``horizon`` seconds."""

    def __init__(self, horizon: float = 2.0, clock: Callable[[], float] = time.monotonic):
        self._horizon = horizon
        self._clock = clock
        self._times: deque[float] = deque()

    def tick(self) -> None:
        self._times.append(self._clock())
        self._trim()

    def rate(self) -> float:
        self._trim()
        if len(self._times) < 2:
            return 0.0
        span = self._clock() - self._times[0]
        return (len(self._times) - 1) / span if span > 0 else 0.0

    def _trim(self) -> None:
        cutoff = self._clock() - self._horizon
        while self._times and self._times[0] < cutoff:
            self._times.popleft()


class FrameStats:
    """Counters and windows for the node's diagnostics; thread-safe.

    Every received frame ends in exactly one of processed, dropped (replaced in the slot
    by a newer frame), rejected (malformed, by cause), errors (inference failed) or
    discarded (cleared by a pause or deactivation before it was processed), so once no
    frame is in flight ``received`` is their sum. Frames that arrive while paused are
    counted as ``paused`` only: they are not received for processing.

    Args:
        window: samples kept for the percentiles.
        record_starts: also keep when each recent frame entered the slot and when its
            processing started (:meth:`start_records`), for tests and benchmarks that check
            the latest-frame-only hand-over; off, only the counters and windows are kept.
    """

    def __init__(self, window: int = 200, *, record_starts: bool = False):
        self._lock = threading.Lock()
        self.record_starts = record_starts
        self.received = 0
        self.processed = 0
        self.dropped = 0
        self.rejected: Counter[str] = Counter()
        self.errors = 0
        self.discarded = 0
        self.paused = 0
        self.input_rate = RateMeter()
        self.output_rate = RateMeter()
        self.latency_ms = Window(window)   # receive -> last publish
        self.model_ms = Window(window)     # predictor's model time
        self.overhead_ms = Window(window)  # decode + encode + publish
        self.age_at_start_ms = Window(window)  # arrival in the slot -> processing start
        self.gap_ms = Window(window)  # between consecutive receptions
        self._last_received: float | None = None
        self._last_put = 0.0  # when the frame in the slot entered it (the slot holds one)
        # With record_starts: recent frames entering the slot (index, time) and leaving it
        # for processing (index, time, age), stamped under the slot's lock: enough to tell
        # whether each frame was the newest one when its processing started (start_records).
        self.arrivals: deque[tuple[int, float]] = deque(maxlen=window)
        self.starts: deque[tuple[int, float, float]] = deque(maxlen=window)

    def on_received(self, now: float) -> int:
        """Count one arrival; returns its index (0, 1, ...)."""
        with self._lock:
            index = self.received
            self.received += 1
            if self._last_received is not None:
                self.gap_ms.add((now - self._last_received) * 1e3)
            self._last_received = now
            self.input_rate.tick()
            return index

    def on_dropped(self) -> None:
        """A waiting frame was replaced by a newer one before processing."""
        with self._lock:
            self.dropped += 1

    def on_discarded(self) -> None:
        """A received frame was forgotten before processing (pause, deactivate)."""
        with self._lock:
            self.discarded += 1

    def on_paused(self) -> None:
        """A frame arrived while inference was paused (ignored)."""
        with self._lock:
            self.paused += 1

    def on_slot_put(self, frame: Frame) -> None:
        """``LatestSlot`` ``on_put`` hook: ``frame`` is available for processing now."""
        with self._lock:
            self._last_put = time.monotonic()
            if self.record_starts:
                self.arrivals.append((frame.index, self._last_put))

    def on_slot_take(self, frame: Frame) -> None:
        """``LatestSlot`` ``on_take`` hook: processing of ``frame`` starts now (``frame`` is
        the one put last: the slot holds one frame, and both hooks run under its lock)."""
        with self._lock:
            now = time.monotonic()
            age = now - self._arrival(frame)
            self.age_at_start_ms.add(age * 1e3)
            if self.record_starts:
                self.starts.append((frame.index, now, age))

    def _arrival(self, frame: Frame) -> float:
        """When ``frame`` entered the slot: with ``record_starts`` looked up in the record
        (which is there to check the hand-over, so it assumes nothing of it), else the time
        of the last put."""
        if not self.record_starts:
            return self._last_put
        return next((t for i, t in reversed(self.arrivals) if i == frame.index), frame.received)

    def start_records(self) -> list[tuple[int, float, float | None]]:
        """``(index, age, period)`` in seconds for each recent start of processing.

        ``age``: from the frame's arrival in the slot to the start of its processing;
        ``period``: from that arrival to the next frame's arrival (the input period at
        that moment), None while no later frame has arrived. The frame was the newest
        available when its processing started exactly when ``age < period``.

        Raises:
            RuntimeError: built without ``record_starts``.
        """
        if not self.record_starts:
            raise RuntimeError("start_records: FrameStats was built without record_starts=True")
        with self._lock:
            arrivals, starts = list(self.arrivals), list(self.starts)
        records = []
        for index, started, age in starts:
            later = [t for j, t in arrivals if j > index]
            records.append((index, age, min(later) - (started - age) if later else None))
        return records

    def stale_starts(self) -> int:
        """Recent frames whose processing started while a newer frame was waiting (0
        unless frames queue up somewhere)."""
        return sum(period is not None and period <= age for _, age, period in self.start_records())

    def on_rejected(self, cause: str) -> int:
        """Count a malformed frame; returns how many of this cause so far."""
        with self._lock:
            self.rejected[cause] += 1
            return self.rejected[cause]

    def on_error(self) -> None:
        with self._lock:
            self.errors += 1

    def on_published(self, frame: Frame, now: float, model_ms: float, overhead_ms: float) -> None:
        """A frame's outputs are out: ``overhead_ms`` is the node's own time on it (decode,
        encode, publish), i.e. everything but the predictor."""
        with self._lock:
            self.processed += 1
            self.latency_ms.add((now - frame.received) * 1e3)
            self.model_ms.add(model_ms)
            self.overhead_ms.add(overhead_ms)
            self.output_rate.tick()

    def snapshot(self) -> dict[str, Any]:
        """Every figure as a flat ``name -> value`` dict (diagnostics key/values)."""
        with self._lock:
            values: dict[str, Any] = {
                "input_rate_hz": self.input_rate.rate(),
                "output_rate_hz": self.output_rate.rate(),
                "frames_received": self.received,
                "frames_processed": self.processed,
                "frames_dropped": self.dropped,
                "frames_rejected": sum(self.rejected.values()),
                "frames_discarded": self.discarded,
                "frames_paused": self.paused,
                "inference_errors": self.errors,
            }
            for name, window in (("latency", self.latency_ms), ("model", self.model_ms),
                                 ("node_overhead", self.overhead_ms), ("age_at_start", self.age_at_start_ms)):
                for q, v in zip((50, 90, 99), window.percentiles()):
                    values[f"{name}_p{q}_ms"] = v
            values["age_at_start_max_ms"] = self.age_at_start_ms.max()
            values["input_gap_max_ms"] = self.gap_ms.max()
            for cause, count in sorted(self.rejected.items()):
                values[f"rejected.{cause}"] = count
            return values


_SUMMED = ("input_rate_hz", "output_rate_hz", "frames_", "inference_errors", "rejected.")


def merged_snapshot(snapshots: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """The node's figures from its cameras' :meth:`FrameStats.snapshot` s (name -> values):
    one camera's as they are; for several, ``cameras`` and the rates and counters summed
    over the cameras (percentiles are per camera only)."""
    if len(snapshots) == 1:
        return dict(next(iter(snapshots.values())))
    merged: dict[str, Any] = {"cameras": ",".join(snapshots)}
    for values in snapshots.values():
        for key, value in values.items():
            if key.startswith(_SUMMED):
                merged[key] = merged.get(key, 0) + value
    return merged


class Worker:
    """One thread that takes from a slot (a :class:`LatestSlot`: the newest frame; a
    :class:`KeyedLatestSlot`: the newest frame of each camera) and hands it to ``process``.

    ``process`` must not raise for bad frames (the node counts and logs those); an
    exception that escapes is counted as an error and the loop goes on.
    """

    def __init__(self, slot: LatestSlot[Frame] | KeyedLatestSlot[Frame], process: Callable[[Any], None], *,
                 on_error: Callable[[BaseException], None], name: str = "panoptic_worker"):
        self._slot = slot
        self._process = process
        self._on_error = on_error
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self, *, on_wait: Callable[[float], None] | None = None, wait_period: float = 10.0) -> None:
        """Close the slot and wait for the frame in progress to finish, however long it takes.

        The caller frees what ``process`` uses (publishers, the model) right after this
        returns, so returning earlier would pull them from under a running frame.

        Args:
            on_wait: called with the seconds waited so far every ``wait_period`` seconds
                while the frame is still running (to log that the node is waiting).
            wait_period: seconds between ``on_wait`` calls.
        """
        self._slot.close()
        if threading.current_thread() is self._thread:
            return
        start = time.monotonic()
        while self._thread.is_alive():
            self._thread.join(wait_period)
            if self._thread.is_alive() and on_wait is not None:
                on_wait(time.monotonic() - start)

    def _run(self) -> None:
        while True:
            frame = self._slot.take()
            if frame is None:
                return
            try:
                self._process(frame)
            except Exception as exc:  # noqa: BLE001 - one bad frame must not kill the node
                self._on_error(exc)
