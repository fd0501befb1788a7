"""Compressed-frame bombs against ``panoptic_node`` in its own process (issue 17, point 1).

The probe's pattern: a 5 Hz stream of good 512x1024 JPEG frames for ``--seconds`` (20),
alone and with one bomb a second mixed in, alternated ``--repeats`` (2) times. The bombs rotate through

- the probe's 631-byte-class JPEG: a small valid JPEG whose frame header says 8000x8000
  (``too_large``: above the 4096x2160 pixel budget),
- the same JPEG declaring 4000x2000, within both limits but far too little data for it
  (``truncated``: libjpeg would fill in a 24 MB image),
- a valid 8192x8192 grey PNG of ~80 KB (``too_large``).

Then one 1024x2048 frame and 3 s of good frames (the node trims its heap once frames get
smaller, so RSS before the burst is measured on a trimmed heap too) until five were
answered, a burst of ``--burst`` valid 4096x2160 JPEG frames at the same rate, and good
frames again until five were answered: RSS after the burst against before it.

Prints: good frames answered without and with bombs and their ratio (target >= 90 %),
bombs sent vs rejected by cause (target: all), node RSS baseline (end of the stream
without bombs) and peak during the bomb stream (target: peak <= baseline + 150 MB), and
RSS before the burst, at its peak and after it. RSS is that of the node process, sampled
every 50 ms from /proc. The machine may be shared: print ``uptime``'s load with it.

Usage:
    .venv/bin/python bench/decompression_bombs.py                  # shipped PanoNet, CPU
    .venv/bin/python bench/decompression_bombs.py --model ciae --seconds 10
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import threading
import time
from pathlib import Path

from panoptic_ros.ros.environment import private_dds_environment  # noqa: E402 (imports no rclpy)

private_dds_environment("decompression_bombs_ros_home_")

import cv2  # noqa: E402
import numpy as np  # noqa: E402
import rclpy  # noqa: E402
from diagnostic_msgs.msg import DiagnosticArray  # noqa: E402
from rclpy.executors import SingleThreadedExecutor  # noqa: E402
from rclpy.qos import QoSProfile, ReliabilityPolicy  # noqa: E402
from sensor_msgs.msg import CompressedImage, Image  # noqa: E402
from std_msgs.msg import Header  # noqa: E402

from panoptic_ros.replay.nodeproc import NodeProcess, NodeSpec  # noqa: E402
from panoptic_ros.resources import default_weights  # noqa: E402
from panoptic_ros.ros.memory import resident_set_mb  # noqa: E402

QOS = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)


def good_jpeg(seed: int, height: int = 512, width: int = 1024) -> bytes:
    """A smooth random picture (compresses like a camera frame, ~60-100 KB)."""
    small = np.random.default_rng(seed).integers(0, 256, (height // 16, width // 16, 3), dtype=np.uint8)
    return cv2.imencode(".jpg", cv2.resize(small, (width, height), interpolation=cv2.INTER_CUBIC),
                        [cv2.IMWRITE_JPEG_QUALITY, 90])[1].tobytes()


def jpeg_declaring(width: int, height: int) -> bytes:
    data = bytearray(cv2.imencode(".jpg", np.full((16, 16, 3), 90, np.uint8))[1].tobytes())
    sof = data.find(b"\xff\xc0")
    data[sof + 5:sof + 9] = height.to_bytes(2, "big") + width.to_bytes(2, "big")
    return bytes(data)


BOMBS = {  # name -> (format, data, expected cause)
    "jpeg 8000x8000": ("jpeg", jpeg_declaring(8000, 8000), "too_large"),
    "jpeg 4000x2000": ("jpeg", jpeg_declaring(4000, 2000), "truncated"),
    "png 8192x8192": ("png", cv2.imencode(".png", np.zeros((8192, 8192), np.uint8))[1].tobytes(), "too_large"),
}


class Sampler(threading.Thread):
    """RSS of the node every 50 ms; ``peak(since)`` is the largest sample after ``since``."""

    def __init__(self, pid: int):
        super().__init__(daemon=True)
        self.pid, self.samples, self.running = pid, [], True

    def run(self) -> None:
        while self.running:
            self.samples.append((time.monotonic(), resident_set_mb(self.pid)))
            time.sleep(0.05)

    def peak(self, since: float) -> float:
        return max(v for t, v in self.samples if t >= since)

    def now(self) -> float:
        return self.samples[-1][1]


class Bench:
    def __init__(self, args):
        self.spec = NodeSpec(model=args.model, weights=(args.weights or default_weights(args.model)).resolve(),
                             name="bomb_bench_node", input_topic="/bomb_bench/image", compressed=True,
                             device="cpu", num_threads=args.threads, diagnostics_period=0.2,
                             params=tuple(args.param))
        self.process = NodeProcess(self.spec, Path(tempfile.mkdtemp(prefix="bomb_bench_")) / "node.log")
        self.context = rclpy.context.Context()
        rclpy.init(context=self.context)
        self.probe = rclpy.create_node("bomb_bench_probe", context=self.context)
        self.executor = SingleThreadedExecutor(context=self.context)
        self.executor.add_node(self.probe)
        self.pub = self.probe.create_publisher(CompressedImage, self.spec.input_topic, QOS)
        self.answered: set[int] = set()
        self.probe.create_subscription(Image, f"/{self.spec.name}/panoptic",
                                       lambda m: self.answered.add(m.header.stamp.nanosec), QOS)
        self.diag: dict[str, str] = {}
        self.probe.create_subscription(DiagnosticArray, "/diagnostics", lambda m: self.diag.update(
            {kv.key: kv.value for s in m.status if s.name.startswith(self.spec.name) for kv in s.values}), 10)
        self.seq = 0

    def spin(self, seconds: float) -> None:
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            self.process.check_alive()
            self.executor.spin_once(timeout_sec=0.01)

    def wait(self, predicate, timeout: float = 300.0) -> None:
        end = time.monotonic() + timeout
        while not predicate():
            self.process.check_alive()
            if time.monotonic() > end:
                raise SystemExit(f"timed out waiting for the node:\n{self.process.log_tail()}")
            self.executor.spin_once(timeout_sec=0.02)

    def warm_up(self, data: bytes, timeout: float = 300.0) -> None:
        """A good frame every second until one is answered (first-frame costs, discovery)."""
        end = time.monotonic() + timeout
        while not self.answered:
            if time.monotonic() > end:
                raise SystemExit(f"the node answered no frame:\n{self.process.log_tail()}")
            self.send("jpeg", data)
            self.spin(1.0)
        self.spin(2.0)

    def send(self, fmt: str, data: bytes) -> int:
        self.seq += 1
        header = Header(frame_id="camera")
        header.stamp.sec, header.stamp.nanosec = 1, self.seq
        msg = CompressedImage(header=header, format=fmt)
        msg.data = data
        self.pub.publish(msg)
        return self.seq

    def stream(self, seconds: float, rate: float, bombs: bool, goods: list[bytes]) -> tuple[list[int], list[str]]:
        """Good frames at ``rate`` Hz for ``seconds``, and one bomb a second if ``bombs``."""
        sent, bombed, start = [], [], time.monotonic()
        for k in range(round(seconds * rate)):
            self.spin(max(0.0, start + k / rate - time.monotonic()))
            sent.append(self.send("jpeg", goods[k % len(goods)]))
            if bombs and k % round(rate) == round(rate) // 2:
                name = list(BOMBS)[len(bombed) % len(BOMBS)]
                self.send(*BOMBS[name][:2])
                bombed.append(name)
        self.spin(3.0)  # the last answers
        return sent, bombed

    def settle(self, goods: list[bytes], rate: float, answers: int = 5, timeout: float = 300.0) -> None:
        """Good frames at ``rate`` Hz until ``answers`` of them were answered (more than the
        outputs' history depth, so the larger frames before them have left it)."""
        sent, end = set(), time.monotonic() + timeout
        while len(self.answered & sent) < answers:
            if time.monotonic() > end:
                raise SystemExit(f"the node answered too few frames:\n{self.process.log_tail()}")
            sent.add(self.send("jpeg", goods[len(sent) % len(goods)]))
            self.spin(1.0 / rate)

    def close(self) -> None:
        self.process.stop()
        self.executor.shutdown(timeout_sec=5)
        self.probe.destroy_node()
        rclpy.try_shutdown(context=self.context)


def run(args) -> None:
    goods = [good_jpeg(seed) for seed in range(10)]
    big = [cv2.imencode(".jpg", cv2.resize(np.random.default_rng(s).integers(0, 256, (135, 256, 3), np.uint8),
                                           (4096, 2160)))[1].tobytes() for s in range(3)]
    bench = Bench(args)
    sampler = Sampler(bench.process.process.pid)
    sampler.start()
    try:
        bench.wait(lambda: bench.diag.get("state") == "active" and bench.pub.get_subscription_count() > 0)
        bench.warm_up(goods[0])
        alone, mixed, bombed, peak = [], [], [], 0.0
        rejected_before = int(bench.diag.get("frames_rejected", 0))
        for _ in range(args.repeats):  # alternated: the load of a shared machine drifts
            alone += bench.stream(args.seconds, args.rate, False, goods)[0]
            baseline, phase = sampler.now(), time.monotonic()
            sent, bombs = bench.stream(args.seconds, args.rate, True, goods)
            mixed, bombed, peak = mixed + sent, bombed + bombs, max(peak, sampler.peak(phase) - baseline)
        bench.spin(1.0)
        diag = dict(bench.diag)
        # One 1024x2048 frame, then small ones: the node trims its heap when frames get
        # smaller, so the heap the streams kept is not counted before the burst either.
        larger = bench.send("jpeg", good_jpeg(99, 1024, 2048))
        bench.wait(lambda: larger in bench.answered)
        bench.settle(goods, args.rate)
        before_burst = sampler.now()
        phase = time.monotonic()
        for k in range(args.burst):
            bench.send("jpeg", big[k % len(big)])
            bench.spin(1.0 / args.rate)
        bench.settle(goods, args.rate)
        burst_peak = sampler.peak(phase)
        after_burst = sampler.now()
    finally:
        sampler.running = False
        bench.close()
    report(args, alone, mixed, bombed, bench.answered, diag, rejected_before,
           (baseline, baseline + peak, before_burst, burst_peak, after_burst))


def report(args, alone, mixed, bombed, answered, diag, rejected_before, rss) -> None:
    baseline, peak, before_burst, burst_peak, after_burst = rss
    got_alone, got_mixed = len(answered & set(alone)), len(answered & set(mixed))
    print(f"decompression bombs vs panoptic_node ({args.model}, CPU, {args.threads or 'default'} threads); "
          f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f} at the end (shared machine?)")
    print(f"  good 512x1024 JPEG frames at {args.rate:g} Hz, {args.repeats} x {args.seconds:g} s each way "
          "(alternated):")
    print(f"    without bombs: {got_alone}/{len(alone)} answered")
    print(f"    with one bomb a second: {got_mixed}/{len(mixed)} answered -> "
          f"{100 * got_mixed / max(got_alone, 1):.0f} % of the rate without bombs (target >= 90 %)")
    causes = {cause: 0 for *_, cause in BOMBS.values()}
    for name in bombed:
        causes[BOMBS[name][2]] += 1
    counted = int(diag.get("frames_rejected", 0)) - rejected_before
    kinds = ", ".join(f"{bombed.count(n)} {n}" for n in BOMBS)
    by_cause = ", ".join(f"{diag.get('rejected.' + c, 0)} {c}" for c in causes)
    expected = ", ".join(f"{n} {c}" for c, n in causes.items())
    print(f"  bombs sent: {len(bombed)} ({kinds}); rejected: {counted} ({by_cause}; expected {expected}); "
          f"inference errors {diag.get('inference_errors')}")
    print(f"  node RSS: baseline {baseline:.0f} MB (end of a stream without bombs), largest rise during a bomb "
          f"stream +{peak - baseline:.0f} MB (target <= +150 MB)")
    print(f"  burst of {args.burst} valid 4096x2160 JPEG frames: RSS {before_burst:.0f} MB before, "
          f"peak {burst_peak:.0f} MB, {after_burst:.0f} MB once five 512x1024 frames were answered")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", choices=("panonet", "ciae"), default="panonet")
    parser.add_argument("--weights", type=Path, help="checkpoint (default: the shipped weights of --model)")
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--rate", type=float, default=5.0, help="good frames per second")
    parser.add_argument("--repeats", type=int, default=2, help="stream pairs (without, with bombs)")
    parser.add_argument("--burst", type=int, default=10, help="large valid frames after the bomb stream")
    parser.add_argument("--threads", type=int, default=0, help="the node's num_threads (0 = library default)")
    parser.add_argument("--param", action="append", default=[], metavar="NAME:=VALUE",
                        help="further node parameter (repeatable), e.g. qos.output_depth:=1")
    run(parser.parse_args())
    return 0


if __name__ == "__main__":
    sys.exit(main())
