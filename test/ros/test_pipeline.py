"""The latest-frame slot, the worker thread and the diagnostics statistics (no ROS)."""
import threading

import numpy as np
import pytest

from panoptic_ros.inference.predictor import Predictor
from panoptic_ros.ros.pipeline import Frame, FrameStats, LatestSlot, RateMeter, Window, Worker


def test_slot_keeps_only_the_newest_item():
    slot = LatestSlot()
    assert slot.put(1) is None
    assert slot.put(2) == 1
    assert slot.put(3) == 2
    assert slot.take(timeout=0) == 3
    assert slot.take(timeout=0) is None
    assert slot.clear() is None
    slot.put(4)
    assert slot.clear() == 4
    assert slot.take(timeout=0) is None


def test_close_wakes_a_waiting_taker():
    slot = LatestSlot()
    got = []
    taker = threading.Thread(target=lambda: got.append(slot.take()))
    taker.start()
    slot.close()
    taker.join(5)
    assert not taker.is_alive() and got == [None]
    assert slot.put(1) == 1  # a closed slot keeps nothing: the item comes back
    assert slot.take(timeout=0) is None and slot.close() is None


def test_worker_processes_the_newest_frame_and_survives_errors():
    slot = LatestSlot()
    release, started, failed, finished = (threading.Event() for _ in range(4))
    seen, errors = [], []

    def process(frame):
        started.set()
        release.wait(5)
        if frame.msg == "bad":
            raise RuntimeError("boom")
        seen.append(frame.msg)
        if len(seen) == 2:
            finished.set()

    def on_error(exc):
        errors.append(exc)
        failed.set()

    worker = Worker(slot, process, on_error=on_error)
    worker.start()
    slot.put(Frame("first", 0.0, 0))
    assert started.wait(5)
    for i, msg in enumerate(["stale-1", "stale-2", "bad"]):  # arrive while "first" is processed
        slot.put(Frame(msg, 0.0, i + 1))
    release.set()
    assert failed.wait(5)
    slot.put(Frame("newest", 0.0, 4))
    assert finished.wait(5)
    worker.stop()
    assert seen == ["first", "newest"]
    assert len(errors) == 1 and str(errors[0]) == "boom"


def test_stop_waits_for_a_slow_frame_past_its_wait_period(tiny_weights):
    # The frame is slow by construction, not by timing: it cannot finish before stop()
    # has waited two full wait periods (the second on_wait call releases it). stop()
    # returning earlier would leave ``results`` empty.
    predictor = Predictor.from_checkpoint(tiny_weights["ciae"], device="cpu", num_threads=1)
    rgb = np.random.default_rng(0).integers(0, 256, (48, 64, 3), dtype=np.uint8)
    started, release, results, waits = threading.Event(), threading.Event(), [], []

    def process(frame):
        started.set()
        assert release.wait(30)
        results.append(predictor.predict(frame.msg))

    def on_wait(seconds):
        waits.append(seconds)
        if len(waits) == 2:
            release.set()

    slot = LatestSlot()
    worker = Worker(slot, process, on_error=results.append)
    slot.put(Frame(rgb, 0.0, 0))
    worker.start()
    assert started.wait(30)
    worker.stop(on_wait=on_wait, wait_period=0.01)
    # stop returned only once the frame was done: what it used may be freed now
    assert len(results) == 1 and results[0].panoptic.shape == (48, 64)
    assert len(waits) >= 2 and waits == sorted(waits)  # it said it was waiting, and kept waiting
    predictor.close()


def test_window_percentiles_and_rate_meter():
    window = Window(size=100)
    assert all(v != v for v in window.percentiles())  # NaN while empty
    for v in range(1, 101):
        window.add(float(v))
    p50, p90, p99 = window.percentiles()
    assert p50 == pytest.approx(50.5) and p90 == pytest.approx(90.1) and window.max() == 100
    now = [0.0]
    meter = RateMeter(horizon=2.0, clock=lambda: now[0])
    for _ in range(11):
        meter.tick()
        now[0] += 0.1
    now[0] -= 0.1
    assert meter.rate() == pytest.approx(10.0)
    now[0] += 5.0
    assert meter.rate() == 0.0


def test_frame_stats_snapshot_counts_everything():
    stats = FrameStats()
    first = Frame("a", 10.0, stats.on_received(10.0))
    stats.on_received(10.02)
    stats.on_dropped()
    stats.on_slot_put(first)
    stats.on_slot_take(first)
    stats.on_published(first, 10.05, model_ms=30.0, overhead_ms=1.5)
    assert stats.on_rejected("truncated") == 1
    assert stats.on_rejected("truncated") == 2
    stats.on_rejected("zero_size")
    stats.on_error()
    snap = stats.snapshot()
    assert (snap["frames_received"], snap["frames_processed"], snap["frames_dropped"]) == (2, 1, 1)
    assert snap["frames_rejected"] == 3 and snap["rejected.truncated"] == 2 and snap["rejected.zero_size"] == 1
    assert snap["inference_errors"] == 1
    assert snap["latency_p50_ms"] == pytest.approx(50.0)
    assert snap["model_p99_ms"] == pytest.approx(30.0) and snap["node_overhead_p50_ms"] == pytest.approx(1.5)
    assert snap["input_gap_max_ms"] == pytest.approx(20.0)


def test_frame_stats_keep_no_per_frame_records_unless_asked():
    stats = FrameStats()
    slot = LatestSlot(on_put=stats.on_slot_put, on_take=stats.on_slot_take)
    for index in range(3):
        slot.put(Frame(index, 0.0, stats.on_received(0.0)))
        slot.take(timeout=0)
    assert not stats.arrivals and not stats.starts
    snap = stats.snapshot()
    assert snap["frames_received"] == 3 and 0 <= snap["age_at_start_max_ms"] < 1e3
    with pytest.raises(RuntimeError, match="record_starts=True"):
        stats.stale_starts()


def test_stale_starts_counts_frames_started_while_a_newer_one_waited():
    stats = FrameStats(record_starts=True)
    frames = [Frame(i, 0.0, stats.on_received(0.0)) for i in range(4)]
    slot = LatestSlot(on_put=stats.on_slot_put, on_take=stats.on_slot_take)
    slot.put(frames[0])
    slot.take(timeout=0)
    slot.put(frames[1])
    slot.put(frames[2])  # replaces 1
    slot.take(timeout=0)
    assert stats.stale_starts() == 0 and len(stats.starts) == 2
    records = stats.start_records()
    assert [r[0] for r in records] == [0, 2] and records[1][2] is None  # nothing arrived after frame 2 yet
    assert 0 <= records[0][1] < records[0][2]  # frame 0 started before frame 1 arrived
    # A queue that hands out frame 3 after frame 2 arrived would be stale:
    stats.on_slot_put(frames[3])
    stats.on_slot_take(frames[2])
    assert stats.stale_starts() == 1
    index, age, period = stats.start_records()[-1]
    assert index == 2 and period <= age
