"""One multi-camera node against N single-camera nodes, on the same input: frames/s in all
and per camera, and memory.

For N in ``--cameras`` (default 1 2 4 8), two set-ups run one after the other, each as
``panoptic_node`` processes started the way ``panoptic-replay`` starts them:

- *one node*: one ``panoptic_node`` with ``cameras: [cam0, ..., camN-1]`` (one model,
  the frames of the cameras with a new frame batched);
- *N nodes*: N single-camera ``panoptic_node`` s, one per camera.

This process publishes N cameras (reliable, each its own SynthStreet frame, ``--rate`` Hz
each, faster than the model can follow: the nodes keep the newest frame per camera and
drop the rest) and counts each camera's ``~/panoptic`` outputs over ``--seconds`` once
every camera has had one output, and the frames each camera's statistics in the nodes'
``/diagnostics`` say arrived (received Hz). Memory: the summed resident set (``VmRSS``) and peak
(``VmHWM``) of the node processes at the end. Every node gets ``--threads`` CPU threads
(torch), so N single-camera nodes may use up to N times the cores of the one node.

Usage:
    .venv/bin/python bench/multicamera.py                       # 1 2 4 8 cameras, shipped PanoNet
    .venv/bin/python bench/multicamera.py --cameras 2 4 --seconds 20 --rate 10
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

from panoptic_ros.ros.environment import private_dds_environment  # imports no rclpy

private_dds_environment("multicamera_bench_ros_home_")

import numpy as np  # noqa: E402
import rclpy  # noqa: E402
from rclpy.executors import SingleThreadedExecutor  # noqa: E402
from diagnostic_msgs.msg import DiagnosticArray  # noqa: E402
from rclpy.qos import QoSProfile, ReliabilityPolicy  # noqa: E402
from sensor_msgs.msg import Image  # noqa: E402

from panoptic_ros.cli_common import parse_size  # noqa: E402
from panoptic_ros.replay.nodeproc import NodeProcess, NodeSpec  # noqa: E402
from panoptic_ros.resources import default_weights  # noqa: E402
from panoptic_ros.ros.image_messages import numpy_to_image  # noqa: E402
from panoptic_ros.synthstreet.scene import generate_scene  # noqa: E402

RELIABLE = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)


def node_specs(setup: str, cameras: int, args: argparse.Namespace) -> list[NodeSpec]:
    """The node processes of a set-up: ``one`` (one node, all cameras) or ``separate``."""
    common = dict(model=args.model, weights=Path(args.weights or default_weights(args.model)).resolve(),
                  device="cpu", num_threads=args.threads, input_qos=args.qos,
                  params=(f"input_size:=[{args.input_size[0]}, {args.input_size[1]}]",))
    if setup == "one":
        entries = tuple(f"cam{i}:/bench/cam{i}/image" for i in range(cameras))
        return [NodeSpec(name="multi", input_topic="/bench/cam0/image", cameras=entries, **common)]
    return [NodeSpec(name=f"single{i}", input_topic=f"/bench/cam{i}/image", **common) for i in range(cameras)]


def output_topics(setup: str, cameras: int) -> list[str]:
    """Each camera's ``~/panoptic`` topic."""
    if setup == "one":
        return [f"/multi/cam{i}/panoptic" for i in range(cameras)]
    return [f"/single{i}/panoptic" for i in range(cameras)]


def memory_mb(pid: int) -> tuple[float, float]:
    """(VmRSS, VmHWM) of a process in MB."""
    fields = dict(line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines() if ":" in line)
    return tuple(int(fields[key].split()[0]) / 1024 for key in ("VmRSS", "VmHWM"))


class Cameras:
    """Publishes N cameras at ``rate`` Hz and counts the outputs of each."""

    def __init__(self, context, cameras: int, outputs: list[str], *, size: tuple[int, int], rate: float):
        self.node = rclpy.create_node("multicamera_bench", context=context)
        self.pubs = [self.node.create_publisher(Image, f"/bench/cam{i}/image", RELIABLE) for i in range(cameras)]
        self.frames = [numpy_to_image(generate_scene(3000, i, height=size[0], width=size[1]).image, "rgb8")
                       for i in range(cameras)]
        self.counts: Counter[int] = Counter()
        for i, topic in enumerate(outputs):
            self.node.create_subscription(Image, topic, lambda _, i=i: self.counts.update([i]), RELIABLE, raw=True)
        self.received: dict[str, int] = {}  # diagnostics status name -> frames_received
        self.node.create_subscription(DiagnosticArray, "/diagnostics", self._on_diagnostics, RELIABLE)
        self.node.create_timer(1.0 / rate, self._publish)

    def _on_diagnostics(self, msg: DiagnosticArray) -> None:
        for status in msg.status:
            values = {kv.key: kv.value for kv in status.values}
            if "frames_received" in values and "cameras" not in values:   # a camera's own figures
                self.received[status.name] = int(values["frames_received"])

    def _publish(self) -> None:
        for pub, frame in zip(self.pubs, self.frames):
            frame.header.stamp = self.node.get_clock().now().to_msg()
            pub.publish(frame)


def run_setup(setup: str, cameras: int, args: argparse.Namespace, log_dir: Path) -> dict:
    """Start the nodes, wait for every camera's first output, count outputs for
    ``args.seconds``; returns the figures."""
    processes = [NodeProcess(spec, log_dir / f"{setup}{cameras}_{spec.name}.log")
                 for spec in node_specs(setup, cameras, args)]
    context = rclpy.context.Context()
    rclpy.init(context=context)
    bench = Cameras(context, cameras, output_topics(setup, cameras), size=args.size, rate=args.rate)
    executor = SingleThreadedExecutor(context=context)
    executor.add_node(bench.node)
    try:
        deadline = time.monotonic() + args.startup_timeout
        while len(bench.counts) < cameras:
            for p in processes:
                p.check_alive()
            if time.monotonic() > deadline:
                raise RuntimeError(f"{setup} x{cameras}: not every camera answered in {args.startup_timeout} s")
            executor.spin_once(timeout_sec=0.05)
        start_counts, start_received, start = Counter(bench.counts), dict(bench.received), time.monotonic()
        while time.monotonic() - start < args.seconds:
            executor.spin_once(timeout_sec=0.05)
        elapsed = time.monotonic() - start
        per_camera = [(bench.counts[i] - start_counts[i]) / elapsed for i in range(cameras)]
        received = [(n - start_received.get(name, 0)) / elapsed for name, n in bench.received.items()]
        memory = [memory_mb(p.process.pid) for p in processes]
    finally:
        for p in processes:
            p.stop()
        executor.remove_node(bench.node)
        bench.node.destroy_node()
        executor.shutdown(timeout_sec=1.0)
        rclpy.try_shutdown(context=context)
    return {"fps": sum(per_camera), "per_camera": per_camera, "received": received,
            "rss_mb": sum(m[0] for m in memory),
            "peak_mb": sum(m[1] for m in memory)}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--cameras", type=int, nargs="+", default=[1, 2, 4, 8])
    p.add_argument("--model", default="panonet", choices=("panonet", "ciae"))
    p.add_argument("--weights", help="checkpoint (default: the shipped demo weights of --model)")
    p.add_argument("--size", type=parse_size, default=(256, 512), help="camera frames HxW (default 256x512)")
    p.add_argument("--input-size", type=parse_size, default=(256, 512), help="model input HxW (default 256x512)")
    p.add_argument("--rate", type=float, default=10.0, help="Hz per camera (default 10)")
    p.add_argument("--seconds", type=float, default=15.0, help="measured seconds per set-up (default 15)")
    p.add_argument("--threads", type=int, default=1, help="CPU threads per node (default 1)")
    p.add_argument("--qos", choices=("reliable", "best_effort"), default="reliable",
                   help="the nodes' input reliability (default reliable, depth 10, as panoptic-replay starts them; "
                        "best_effort: the node's own default, depth 1)")
    p.add_argument("--startup-timeout", type=float, default=180.0)
    args = p.parse_args(argv)
    os.environ.setdefault("RMW_FASTRTPS_PUBLICATION_MODE", "ASYNCHRONOUS")
    log_dir = Path(tempfile.mkdtemp(prefix="multicamera_bench_"))
    print(f"{args.model}, frames {args.size[0]}x{args.size[1]}, model input {args.input_size[0]}x"
          f"{args.input_size[1]}, {args.rate:g} Hz per camera, {args.threads} thread(s) per node, "
          f"{args.seconds:g} s per set-up; node logs in {log_dir}")
    print(f"{'cameras':>7}  {'set-up':<9} {'fps in all':>10}  {'fps per camera (min..max)':>26}  "
          f"{'RSS MB':>7}  {'peak MB':>7}  received Hz per camera (min..max)")
    rows = {}
    for n in args.cameras:
        for setup in ("one", "separate"):
            r = rows[n, setup] = run_setup(setup, n, args, log_dir)
            label = "one node" if setup == "one" else f"{n} nodes"
            print(f"{n:>7}  {label:<9} {r['fps']:>10.2f}  {np.mean(r['per_camera']):>10.2f} "
                  f"({min(r['per_camera']):.2f}..{max(r['per_camera']):.2f}){'':>4}  {r['rss_mb']:>7.0f}  "
                  f"{r['peak_mb']:>7.0f}  {min(r['received'], default=0):.1f}..{max(r['received'], default=0):.1f}",
                  flush=True)
        one, separate = rows[n, "one"], rows[n, "separate"]
        print(f"{'':>7}  one/N: throughput {one['fps'] / separate['fps']:.2f}x, memory "
              f"{one['rss_mb'] / separate['rss_mb']:.2f}x", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
