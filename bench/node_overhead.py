"""What the ROS node adds to the bare Predictor, per 2048x1024 frame, in one run.

1. The bare :class:`Predictor` on N frames: milliseconds per frame and frames/s.
2. The same frames through the node, one frame at a time, twice: as its own process
   (``panoptic_node`` started as ``panoptic-replay`` starts it, the subscriber in this
   process: the deployed situation; node overhead from the node's ``/diagnostics``), and
   as :class:`PanopticNode` in this process with an in-process subscriber:
   - *node overhead*: the node's own time per frame outside ``Predictor.predict``
     (decode the Image + build the output messages + publish), measured inside the node;
   - *end-to-end*: publish -> the last awaited output received by the subscriber, and what
     it adds to the bare predictor (also counts DDS transport of the 6 MB input and of the
     outputs, and their Python (de)serialisation).
   Once with a subscriber on ``~/panoptic`` only, once on every output.
3. Throughput: a camera publishing at ``--rate`` Hz (latest-frame-only drops what the
   node cannot process) vs the bare predictor's frame rate.
4. Before/after of the node's steps on one frame, timed alternately in the same rounds
   (the machine is shared: alternating keeps both sides under the same load):
   *before* = an rclpy message object (``numpy_to_image``) published with rclpy's
   ``Publisher.publish``, and the overlay with full-size outline/VOID masks; *now* = the
   node's path: ``~/panoptic`` resized by the predictor straight into its serialized
   message (:class:`~panoptic_ros.serialized.image.ImageMessage`), the other outputs as
   serialized bytes from :mod:`panoptic_ros.outputs` (outline/VOID masks from the
   model resolution), published with :class:`~panoptic_ros.ros.raw_publish.RawPublisher`
   (no copy of the bytes on the way into rcl).

Target: node overhead (decode + encode + publish of ``~/panoptic``) under 2 ms per frame.

Usage:
    .venv/bin/python bench/node_overhead.py                     # tiny random model
    .venv/bin/python bench/node_overhead.py --weights weights/panonet_synthstreet --frames 30
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

from panoptic_ros.ros.environment import private_dds_environment  # noqa: E402 (imports no rclpy)

private_dds_environment("node_overhead_ros_home_")
os.environ.setdefault("RMW_FASTRTPS_PUBLICATION_MODE", "ASYNCHRONOUS")  # as panoptic_node's main() sets it

import cv2  # noqa: E402
import numpy as np  # noqa: E402
import rclpy  # noqa: E402
import torch  # noqa: E402
from diagnostic_msgs.msg import DiagnosticArray  # noqa: E402
from rclpy.executors import MultiThreadedExecutor, SingleThreadedExecutor  # noqa: E402
from rclpy.parameter import Parameter  # noqa: E402
from rclpy.qos import QoSProfile, ReliabilityPolicy  # noqa: E402
from rclpy.serialization import serialize_message  # noqa: E402
from sensor_msgs.msg import Image  # noqa: E402
from std_msgs.msg import Header  # noqa: E402
from vision_msgs.msg import Detection2DArray  # noqa: E402

from panoptic_ros import outputs  # noqa: E402
from panoptic_ros.inference.predictor import Predictor  # noqa: E402
from panoptic_ros.replay.bag import cdr_stamp  # noqa: E402
from panoptic_ros.replay.nodeproc import NodeProcess, NodeSpec  # noqa: E402
from panoptic_ros.ros.image_messages import numpy_to_image  # noqa: E402
from panoptic_ros.ros.node import PanopticNode  # noqa: E402
from panoptic_ros.ros.raw_publish import RawPublisher  # noqa: E402
from panoptic_ros.serialized.image import ImageMessage, from_serialized, to_rgb8  # noqa: E402
from panoptic_ros.tiny_models import TINY_MODELS, write_tiny_checkpoint  # noqa: E402
from panoptic_ros.viz import colorize_panoptic, panoptic_overlay  # noqa: E402

OUTPUTS = {"panoptic": Image, "semantic": Image, "instances": Image, "overlay": Image,
           "detections": Detection2DArray}
QOS = QoSProfile(depth=2, reliability=ReliabilityPolicy.RELIABLE)


def synthetic_frames(count: int, height: int, width: int) -> list[np.ndarray]:
    """Smooth seeded street-like pictures (sky, road, blocks) with mild noise."""
    frames = []
    for i in range(count):
        rng = np.random.default_rng(i)
        img = np.zeros((height, width, 3), np.float32)
        img[: height // 3] = (70, 130, 180)
        img[height // 3:] = (128, 64, 128)
        for _ in range(12):
            y, x = rng.integers(0, height - 64), rng.integers(0, width - 64)
            h, w = rng.integers(32, height // 3), rng.integers(32, width // 4)
            img[y:y + h, x:x + w] = rng.integers(0, 256, 3)
        img += rng.normal(0, 6, img.shape)
        frames.append(np.clip(img, 0, 255).astype(np.uint8))
    return frames


def percentile(values, q):
    return float(np.percentile(values, q)) if len(values) else float("nan")


def bare_predictor(weights: Path, frames, device: str) -> tuple[list[float], Predictor]:
    predictor = Predictor.from_checkpoint(weights, device=device)
    for rgb in frames[:3]:  # warm-up
        predictor.predict(rgb)
    times = []
    for rgb in frames:
        start = time.perf_counter()
        predictor.predict(rgb)
        times.append((time.perf_counter() - start) * 1e3)
    return times, predictor


class Harness:
    """The node and a probe node spun by a background executor."""

    def __init__(self, weights: Path, device: str, kind: str):
        self.context = rclpy.context.Context()
        rclpy.init(context=self.context)
        overrides = {"weights": str(weights), "model": kind, "device": device, "qos.reliability": "reliable",
                     "qos.depth": 2}
        self.node = PanopticNode("bench_node", record_starts=True, context=self.context,
                                 cli_args=["--ros-args", "-r", "image:=/bench/image"],
                                 parameter_overrides=[Parameter(k, value=v) for k, v in overrides.items()])
        if self.node.state_label != "active":
            raise SystemExit(f"node did not start: {self.node.configure_error}")
        self.probe = rclpy.create_node("bench_probe", context=self.context)
        self.pub = self.probe.create_publisher(Image, "/bench/image", QOS)
        self.arrived: dict[str, dict[int, float]] = {name: {} for name in OUTPUTS}
        self.cond = threading.Condition()
        self.subs = {}
        self.executor = MultiThreadedExecutor(num_threads=2, context=self.context)
        self.executor.add_node(self.node)
        self.executor.add_node(self.probe)
        self.thread = threading.Thread(target=self.executor.spin, daemon=True)
        self.thread.start()

    def subscribe(self, names) -> None:
        for name in list(self.subs):
            if name not in names:
                self.probe.destroy_subscription(self.subs.pop(name))
        for name in names:
            if name not in self.subs:
                # raw: deserialising 8 MB in this process would compete with the node for the GIL
                self.subs[name] = self.probe.create_subscription(OUTPUTS[name], f"/bench_node/{name}",
                                                                 self._recorder(name), QOS, raw=True)
        self._wait(lambda: self.pub.get_subscription_count() > 0 and all(
            self.node.count_subscribers(f"/bench_node/{n}") == (1 if n in names else 0) for n in OUTPUTS))

    def _recorder(self, name):
        def record(data: bytes):
            arrived = time.perf_counter()
            with self.cond:
                self.arrived[name][cdr_stamp(data) % 1_000_000_000] = arrived
                self.cond.notify_all()
        return record

    def _wait(self, predicate, timeout=120.0) -> None:
        deadline = time.monotonic() + timeout
        with self.cond:
            while not predicate():
                if time.monotonic() > deadline:
                    raise SystemExit("timed out waiting for the node")
                self.cond.wait(0.05)

    def publish(self, rgb: np.ndarray, seq: int) -> float:
        header = Header(frame_id="camera")
        header.stamp.sec, header.stamp.nanosec = 1, seq
        msg = numpy_to_image(rgb, "rgb8", header)
        start = time.perf_counter()
        self.pub.publish(msg)
        return start

    def one_by_one(self, frames, names, first_seq: int) -> tuple[list[float], list[float], list[float]]:
        """Per frame: end-to-end ms, what it adds to the node's own Predictor call on that
        frame, and the node's overhead ms (decode + encode + publish, measured inside)."""
        self.subscribe(names)
        e2e, added = [], []
        for i, rgb in enumerate(frames):
            seq = first_seq + i
            start = self.publish(rgb, seq)
            self._wait(lambda: all(seq in self.arrived[n] for n in names))
            e2e.append((max(self.arrived[n][seq] for n in names) - start) * 1e3)
            added.append(e2e[-1] - self.node.predictor.last_timings.total_ms)
        return e2e, added, self.node.stats.overhead_ms.values()[-len(frames):]  # the window holds 200

    def stream(self, frames, first_seq: int, seconds: float, rate: float) -> tuple[float, float]:
        """Input and output frames per second while a camera publishes at ``rate`` Hz."""
        self.subscribe(["panoptic"])
        stats = self.node.stats
        received, processed = stats.received, stats.processed
        start = time.perf_counter()
        for i in range(int(seconds * rate)):
            time.sleep(max(0.0, start + i / rate - time.perf_counter()))
            self.publish(frames[i % len(frames)], first_seq + i)
        elapsed = time.perf_counter() - start
        return (stats.received - received) / elapsed, (stats.processed - processed) / elapsed

    def before_after(self, frames, rounds: int) -> list[tuple[str, float, float | None]]:
        """p50 ms of each step for one frame: (label, now, before or None), both sides timed
        alternately in every round; publishing goes to a subscriber in this process."""
        predictor = self.node.predictor
        header = Header(frame_id="camera")
        raw = serialize_message(numpy_to_image(frames[0], "rgb8", header))
        rgb = to_rgb8(from_serialized(raw))
        result = predictor.predict(rgb)
        low, space = predictor.last_model_result, predictor.label_space
        pubs = {name: self._breakdown_publisher(name) for name in ("panoptic", "overlay")}

        def overlay_before():  # colours from the model resolution, masks at full size
            colors = cv2.resize(colorize_panoptic(low, space), (result.width, result.height),
                                interpolation=cv2.INTER_NEAREST_EXACT)
            return numpy_to_image(panoptic_overlay(rgb, result, space, colors=colors), "rgb8", header)

        raw_pubs = {name: RawPublisher(pub) for name, pub in pubs.items()}

        size = (result.width, result.height)

        def panoptic_now():  # the predictor's upsampling writes into the message's pixels
            message = ImageMessage(result.height, result.width, "32SC1", header)
            cv2.resize(low.panoptic, size, dst=message.pixels, interpolation=cv2.INTER_NEAREST_EXACT)
            return message.data

        def panoptic_before():
            upsampled = cv2.resize(low.panoptic, size, interpolation=cv2.INTER_NEAREST_EXACT)
            return numpy_to_image(upsampled, "32SC1", header)

        steps = {  # label -> (now, before)
            "read input (from_serialized + to_rgb8)": (lambda: to_rgb8(from_serialized(raw)), None),
            "upsample + build ~/panoptic": (panoptic_now, panoptic_before),
            "upsample + build + publish ~/panoptic": (lambda: raw_pubs["panoptic"].publish(panoptic_now()),
                                                    lambda: pubs["panoptic"].publish(panoptic_before())),
            "build ~/overlay": (lambda: outputs.overlay_image(rgb, result, space, header, low_res=low), overlay_before),
            "build + publish ~/overlay": (
                lambda: raw_pubs["overlay"].publish(outputs.overlay_image(rgb, result, space, header, low_res=low)),
                lambda: pubs["overlay"].publish(overlay_before())),
            "build ~/semantic": (lambda: outputs.semantic_image(result, space, header, low_res=low), None),
            "build ~/instances": (lambda: outputs.instance_image(result, header, low_res=low), None),
            "build ~/detections": (lambda: outputs.detections(result, space, header), None),
        }
        rows = []
        for label, (now, before) in steps.items():
            times: dict[str, list[float]] = {"now": [], "before": []}
            for _ in range(rounds):
                for side, step in (("before", before), ("now", now)):
                    if step is None:
                        continue
                    start = time.perf_counter()
                    step()
                    times[side].append((time.perf_counter() - start) * 1e3)
                    time.sleep(0.005)
            rows.append((label, statistics.median(times["now"]),
                         statistics.median(times["before"]) if times["before"] else None))
        return rows

    def _breakdown_publisher(self, name: str):
        pub = self.probe.create_publisher(OUTPUTS[name], f"/bench_breakdown/{name}", QOS)
        self.probe.create_subscription(OUTPUTS[name], f"/bench_breakdown/{name}", lambda m: None, QOS, raw=True)
        self._wait(lambda: pub.get_subscription_count() > 0)
        return pub

    def close(self) -> None:
        self.executor.shutdown(timeout_sec=5)
        self.node.destroy_node()
        self.probe.destroy_node()
        rclpy.try_shutdown(context=self.context)


def separate_process(weights: Path, kind: str, device: str, threads: int, frames, names,
                     log: Path) -> tuple[float, float, float]:
    """``panoptic_node`` in its own process, this process publishing one frame at a time
    and subscribing (raw) to ``names``: the node's overhead p50 / p90 from its
    ``/diagnostics`` and the end-to-end p50 ms."""
    spec = NodeSpec(model=kind, weights=weights.resolve(), name="bench_process_node", input_topic="/bench_process/image",
                    device=device, num_threads=threads, diagnostics_period=0.2, params=("qos.depth:=2",))
    process = NodeProcess(spec, log)
    context = rclpy.context.Context()
    rclpy.init(context=context)
    probe = rclpy.create_node("bench_process_probe", context=context)
    executor = SingleThreadedExecutor(context=context)
    executor.add_node(probe)
    arrived: dict[str, dict[int, float]] = {name: {} for name in names}
    diagnostics: dict[str, str] = {}
    try:
        pub = probe.create_publisher(Image, spec.input_topic, QOS)
        for name in names:
            probe.create_subscription(OUTPUTS[name], f"/{spec.name}/{name}", lambda data, name=name: arrived[
                name].__setitem__(cdr_stamp(data) % 1_000_000_000, time.perf_counter()), QOS, raw=True)
        probe.create_subscription(DiagnosticArray, "/diagnostics", lambda m: diagnostics.update(
            {kv.key: kv.value for s in m.status if s.name.startswith(spec.name) for kv in s.values}), 10)

        def spin_until(predicate, timeout=180.0):
            deadline = time.monotonic() + timeout
            while not predicate():
                process.check_alive()
                if time.monotonic() > deadline:
                    raise SystemExit(f"timed out waiting for the node process:\n{process.log_tail()}")
                executor.spin_once(timeout_sec=0.02)

        spin_until(lambda: diagnostics.get("state") == "active" and pub.get_subscription_count() > 0
                   and all(sub.get_publisher_count() > 0 for sub in probe.subscriptions if "bench_process_node/"
                           in sub.topic_name))
        e2e = []
        for seq, rgb in enumerate([*frames[:2], *frames]):  # two warm-up frames
            header = Header(frame_id="camera")
            header.stamp.sec, header.stamp.nanosec = 1, seq
            msg = numpy_to_image(rgb, "rgb8", header)
            start = time.perf_counter()
            pub.publish(msg)
            spin_until(lambda: all(seq in arrived[n] for n in names))
            e2e.append((max(arrived[n][seq] for n in names) - start) * 1e3)
        spin_until(lambda: int(diagnostics.get("frames_processed", 0)) >= len(frames) + 2)
        return (float(diagnostics["node_overhead_p50_ms"]), float(diagnostics["node_overhead_p90_ms"]),
                percentile(e2e[2:], 50))
    finally:
        process.stop()
        executor.shutdown(timeout_sec=5)
        probe.destroy_node()
        rclpy.try_shutdown(context=context)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", choices=sorted(TINY_MODELS), default="ciae")
    parser.add_argument("--weights", type=Path, help="checkpoint (default: a tiny random model)")
    parser.add_argument("--frames", type=int, default=20)
    parser.add_argument("--size", type=int, nargs=2, default=(1024, 2048), metavar=("H", "W"))
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--stream-seconds", type=float, default=5.0)
    parser.add_argument("--rate", type=float, default=30.0, help="camera rate of the throughput run (Hz)")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (1 is steadiest on a busy box)")
    parser.add_argument("--rounds", type=int, default=15, help="alternating rounds of the before/after steps")
    args = parser.parse_args()
    if not 1 <= args.frames <= 200:
        parser.error("--frames must be 1..200 (the node keeps the last 200 timings)")

    torch.set_num_threads(args.threads)
    workdir = Path(tempfile.mkdtemp(prefix="node_overhead_"))
    weights = args.weights or write_tiny_checkpoint(workdir, args.model, input_size=(256, 512))
    frames = synthetic_frames(args.frames, *args.size)
    print(f"frames: {args.frames} x {args.size[1]}x{args.size[0]} rgb8; weights: "
          f"{weights if args.weights else f'tiny random {args.model}'}; device {args.device}; "
          f"torch threads {torch.get_num_threads()}")

    bare, predictor = bare_predictor(weights, frames, args.device)
    kind = predictor.kind
    t = predictor.last_timings
    bare_p50 = statistics.median(bare)
    print(f"\nbare Predictor: p50 {bare_p50:.1f} ms/frame (last: pre {t.preprocess_ms:.1f} + model "
          f"{t.model_ms:.1f} + post {t.postprocess_ms:.1f}), {1e3 / statistics.mean(bare):.2f} frames/s")
    predictor.close()

    separate = [(label, *separate_process(weights, kind, args.device, args.threads, frames, names,
                                          workdir / f"node_{len(names)}.log"))
                for label, names in (("~/panoptic only", ["panoptic"]), ("all outputs", list(OUTPUTS)))]

    harness = Harness(weights, args.device, kind)
    try:
        harness.one_by_one(frames[:2], ["panoptic"], 1)  # warm-up
        rows = []
        for label, names, seq in (("~/panoptic only", ["panoptic"], 100), ("all outputs", list(OUTPUTS), 300)):
            rows.append((label, *harness.one_by_one(frames, names, seq)))
        in_fps, out_fps = harness.stream(frames, 1000, args.stream_seconds, args.rate)
        steps = harness.before_after(frames, args.rounds)
        snapshot = harness.node.stats.snapshot()
        stale = harness.node.stats.stale_starts()
    finally:
        harness.close()

    print("\nnode as its own process, one frame at a time   node overhead p50 / p90 ms   end-to-end p50 ms")
    for label, p50, p90, e2e in separate:
        print(f"  {label:45s} {p50:8.2f} / {p90:6.2f}   {e2e:17.1f}")
    print("  (panoptic_node as deployed, this process subscribing; overhead from the node's /diagnostics)")
    print("\nnode in this process, one frame at a time     node overhead p50 / p90 ms   end-to-end p50 ms   "
          "end-to-end minus predictor p50 / p90 ms")
    for label, e2e, added, overhead in rows:
        print(f"  {label:45s} {percentile(overhead, 50):8.2f} / {percentile(overhead, 90):6.2f}"
              f"   {percentile(e2e, 50):17.1f}   {percentile(added, 50):11.2f} / {percentile(added, 90):6.2f}")
    print("  (node overhead: decode + build messages + publish, inside the node; end-to-end minus predictor adds "
          "the\n   input's and outputs' DDS transport and Python (de)serialisation)")
    bare_fps = 1e3 / statistics.mean(bare)
    print(f"\nthroughput at {args.rate:.0f} Hz input: in {in_fps:.2f} frames/s, out {out_fps:.2f} frames/s vs bare "
          f"predictor {bare_fps:.2f} frames/s (ratio {out_fps / bare_fps:.2f}); dropped (latest-frame-only) "
          f"{snapshot['frames_dropped']}, stale starts {stale}")
    print(f"\nsteps for one frame, p50 ms over {args.rounds} alternating rounds (publish = to one subscriber in "
          f"this process over DDS):")
    print(f"  {'':40s} {'before':>8s} {'now':>8s}  now/before")
    for label, now, before in steps:
        ratio = f"{now / before:10.2f}" if before else ""
        print(f"  {label:40s} {before if before else float('nan'):8.2f} {now:8.2f}  {ratio}")
    print()
    for where, target in (("as its own process", separate[0][1]), ("in this process", percentile(rows[0][3], 50))):
        print(f"target: node overhead for ~/panoptic (decode + encode + publish) < 2 ms per frame, node {where}: "
              f"{target:.2f} ms -> {'MET' if target < 2.0 else 'MISSED'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
