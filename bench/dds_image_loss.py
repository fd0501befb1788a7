"""Raw camera frames lost between two processes over DDS, per subscriber QoS.

This process publishes ``--frames`` seeded ``sensor_msgs/Image`` rgb8 frames (default
512x1024x3 = 1.5 MB) at ``--rate`` Hz. A subscriber in a separate process (its own
interpreter and rclpy context) counts what arrives, once per QoS mode:

- ``best_effort``: best effort, keep last 1 (``panoptic_node``'s default input QoS);
- ``sensor_data``: rclpy's ``qos_profile_sensor_data`` (best effort, keep last 5);
- ``reliable``: reliable, keep last 10 (what ``panoptic-replay`` gives the node it starts).

The publisher is reliable, keep last 10, in every mode (as ``panoptic-replay``'s), so
the subscriber's QoS is the one thing that changes. Before sending, both sides must have
matched (``get_subscription_count`` here, ``get_publisher_count`` in the subscriber).
After the last frame the bench waits until every frame is in or ``--grace`` seconds pass
without a new one. ``--busy`` runs one extra process per core doing float32 matmuls for
the whole run (a model using every core, as in the node).

Prints per mode: sent, received, lost and lost %, publish -> arrival latency p50/p90,
and the 1-minute load average at the end of the mode; the header names the RMW
implementation, the Fast DDS transport and publication mode settings, and the load
average before the run (the machine may be shared: compare modes within one run).

Usage:
    .venv/bin/python bench/dds_image_loss.py                     # 100 frames, 10 Hz, 3 modes
    .venv/bin/python bench/dds_image_loss.py --busy
    .venv/bin/python bench/dds_image_loss.py --transport SHM --modes best_effort --repeats 3
    .venv/bin/python bench/dds_image_loss.py --large-shm         # a frame fits one SHM message

``--large-shm`` writes a Fast DDS XML profile (shared memory only, a segment and a
``maxMessageSize`` larger than a frame, so a frame is not cut into 64 KB fragments) and
points ``FASTRTPS_DEFAULT_PROFILES_FILE`` of both processes at it.
"""
from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from panoptic_ros.ros.environment import private_dds_environment  # noqa: E402 (imports no rclpy)

private_dds_environment("dds_image_loss_ros_home_")

import numpy as np  # noqa: E402
import rclpy  # noqa: E402
from rclpy.executors import SingleThreadedExecutor  # noqa: E402
from rclpy.qos import HistoryPolicy, QoSProfile, ReliabilityPolicy, qos_profile_sensor_data  # noqa: E402
from rclpy.signals import SignalHandlerOptions  # noqa: E402
from sensor_msgs.msg import Image  # noqa: E402
from std_msgs.msg import Header  # noqa: E402

from panoptic_ros.replay.bag import cdr_stamp  # noqa: E402
from panoptic_ros.ros.image_messages import numpy_to_image  # noqa: E402

MODES = {
    "best_effort": QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=1, reliability=ReliabilityPolicy.BEST_EFFORT),
    "sensor_data": qos_profile_sensor_data,
    "reliable": QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=10, reliability=ReliabilityPolicy.RELIABLE),
}
PUBLISHER_QOS = MODES["reliable"]
TOPIC = "/dds_image_loss/image"
MATCH_TIMEOUT_S = 30.0
# Fast DDS settings that change how a large frame travels; printed so a figure names them.
DDS_ENV = ("RMW_IMPLEMENTATION", "FASTDDS_BUILTIN_TRANSPORTS", "RMW_FASTRTPS_PUBLICATION_MODE",
           "FASTRTPS_DEFAULT_PROFILES_FILE")


LARGE_SHM_PROFILE = """<?xml version="1.0" encoding="UTF-8" ?>
<profiles xmlns="http://www.eprosima.com/XMLSchemas/fastRTPS_Profiles">
  <transport_descriptors>
    <transport_descriptor>
      <transport_id>large_shm</transport_id>
      <type>SHM</type>
      <segment_size>{segment}</segment_size>
      <maxMessageSize>{message}</maxMessageSize>
    </transport_descriptor>
  </transport_descriptors>
  <participant profile_name="dds_image_loss_large_shm" is_default_profile="true">
    <rtps>
      <userTransports><transport_id>large_shm</transport_id></userTransports>
      <useBuiltinTransports>false</useBuiltinTransports>
    </rtps>
  </participant>
</profiles>
"""


def write_large_shm_profile(directory: Path, frame_bytes: int) -> Path:
    """A Fast DDS profile whose SHM transport carries a whole frame in one message.

    The message limit leaves room for the CDR/RTPS headers; the segment holds several
    frames so the writer need not wait for the reader to release one.
    """
    message = frame_bytes + (1 << 20)
    path = directory / "large_shm.xml"
    path.write_text(LARGE_SHM_PROFILE.format(segment=max(16 << 20, 8 * message), message=message))
    return path


def describe(qos: QoSProfile) -> str:
    reliability = "best effort" if qos.reliability == ReliabilityPolicy.BEST_EFFORT else "reliable"
    return f"{reliability}, keep last {qos.depth}"


# ---- child roles (separate processes started by the bench) ------------------------------

def run_subscriber(mode: str) -> int:
    """Count frames on :data:`TOPIC` with ``MODES[mode]`` until stdin closes.

    Writes ``ready`` once matched with the publisher, then ``frame <seq> <time.time()>``
    per arrival (raw CDR, as ``panoptic_node`` takes its input: no Python deserialising).
    """
    context = rclpy.context.Context()
    rclpy.init(context=context, signal_handler_options=SignalHandlerOptions.NO)
    node = rclpy.create_node("dds_image_loss_subscriber", context=context)
    out_lock = threading.Lock()

    def emit(line: str) -> None:
        with out_lock:
            sys.stdout.write(line + "\n")
            sys.stdout.flush()

    def on_image(data: bytes) -> None:
        emit(f"frame {cdr_stamp(data) % 1_000_000_000} {time.time():.6f}")

    subscription = node.create_subscription(Image, TOPIC, on_image, MODES[mode], raw=True)
    stop = threading.Event()
    # The bench closes our stdin when it is done: no signals, no polling of files.
    threading.Thread(target=lambda: (sys.stdin.read(), stop.set()), daemon=True).start()
    executor = SingleThreadedExecutor(context=context)
    executor.add_node(node)
    ready = False
    try:
        while not stop.is_set():
            executor.spin_once(timeout_sec=0.05)
            if not ready and subscription.get_publisher_count() > 0:
                ready = True
                emit("ready")
    finally:
        executor.remove_node(node)
        node.destroy_node()
        executor.shutdown(timeout_sec=2.0)
        rclpy.try_shutdown(context=context)
    return 0


def run_busy() -> int:
    """Multiply float32 matrices until stdin closes (one core's worth: BLAS limited to 1 thread).

    Stdin is a pipe from the bench: it closes when the bench stops us or dies in any way,
    so no busy loop outlives it.
    """
    threading.Thread(target=lambda: (sys.stdin.read(), os._exit(0)), daemon=True).start()
    rng = np.random.default_rng(0)
    a, b = rng.standard_normal((2, 384, 384), dtype=np.float32)
    while True:
        a = np.tanh(a @ b)


def child_command(role: str, *args: str) -> list[str]:
    return [sys.executable, str(Path(__file__).resolve()), "--role", role, *args]


# ---- the bench (publisher side) ----------------------------------------------------------

class SubscriberProcess:
    """The subscriber child and a thread that collects its ``ready``/``frame`` lines."""

    def __init__(self, mode: str, log_path: Path, env: dict[str, str]):
        self.log_path = log_path
        self._log = open(log_path, "wb")
        self.proc = subprocess.Popen(child_command("subscriber", "--mode", mode), stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, stderr=self._log, env=env, text=True)
        self.cond = threading.Condition()
        self.ready = False
        self.arrivals: dict[int, float] = {}
        self.duplicates = 0
        self.last_arrival = 0.0
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        for line in self.proc.stdout:
            parts = line.split()
            with self.cond:
                if parts[:1] == ["ready"]:
                    self.ready = True
                elif parts[:1] == ["frame"] and len(parts) == 3:
                    seq, arrived = int(parts[1]), float(parts[2])
                    self.duplicates += seq in self.arrivals
                    self.arrivals.setdefault(seq, arrived)
                    self.last_arrival = time.monotonic()
                self.cond.notify_all()
        with self.cond:
            self.cond.notify_all()

    def wait(self, predicate, timeout: float) -> bool:
        """Wait until ``predicate()`` holds (True) or ``timeout`` passes or the child exits."""
        deadline = time.monotonic() + timeout
        with self.cond:
            while not predicate():
                left = deadline - time.monotonic()
                if left <= 0 or self.proc.poll() is not None:
                    return predicate()
                self.cond.wait(min(left, 0.1))
            return True

    def stop(self) -> int:
        self.proc.stdin.close()
        try:
            code = self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            code = self.proc.wait()
        self._reader.join(timeout=5)
        self._log.close()
        return code

    def log_tail(self, lines: int = 20) -> str:
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])


def send_frames(publisher, msg: Image, frames: int, rate: float) -> dict[int, float]:
    """Publish ``msg`` ``frames`` times at ``rate`` Hz; stamp.nanosec = seq. Returns seq -> time.time()."""
    sent = {}
    start = time.monotonic()
    for seq in range(frames):
        time.sleep(max(0.0, start + seq / rate - time.monotonic()))
        msg.header.stamp.nanosec = seq
        sent[seq] = time.time()
        publisher.publish(msg)
    return sent


def run_mode(node, msg: Image, mode: str, args, workdir: Path, run: int) -> dict:
    """One publisher/subscriber session in ``mode``; the figures of that session."""
    publisher = node.create_publisher(Image, TOPIC, PUBLISHER_QOS)
    sub = SubscriberProcess(mode, workdir / f"subscriber_{mode}_{run}.log", env=os.environ.copy())
    try:
        matched = sub.wait(lambda: sub.ready and publisher.get_subscription_count() > 0, MATCH_TIMEOUT_S)
        if not matched:
            raise SystemExit(f"dds_image_loss: the {mode} subscriber did not match the publisher within "
                             f"{MATCH_TIMEOUT_S:.0f} s (exit code {sub.proc.poll()}); its log:\n{sub.log_tail()}")
        sent = send_frames(publisher, msg, args.frames, args.rate)
        # Late arrivals (reliable repairs, queued fragments): until all are in, or quiet for --grace s.
        while not sub.wait(lambda: len(sub.arrivals) >= args.frames, args.grace):
            if time.monotonic() - max(sub.last_arrival, 0.0) >= args.grace:
                break
    finally:
        code = sub.stop()
        node.destroy_publisher(publisher)
    if code != 0:
        raise SystemExit(f"dds_image_loss: the {mode} subscriber exited with {code}; its log:\n{sub.log_tail()}")
    latencies = [(sub.arrivals[s] - sent[s]) * 1e3 for s in sub.arrivals if s in sent]
    return {"sent": len(sent), "received": len(sub.arrivals), "duplicates": sub.duplicates,
            "latencies": latencies, "load": os.getloadavg()[0]}


def start_busy(count: int) -> list[subprocess.Popen]:
    if not count:
        return []
    env = {**os.environ, "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    return [subprocess.Popen(child_command("busy"), stdin=subprocess.PIPE, env=env) for _ in range(count)]


def stop_busy(procs: list[subprocess.Popen]) -> None:
    for proc in procs:
        proc.stdin.close()
        proc.terminate()
    for proc in procs:
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def percentile(values: list[float], q: float) -> str:
    return f"{np.percentile(values, q):8.1f}" if values else f"{'-':>8}"


def print_header(args, rmw: str, busy: int) -> None:
    height, width = args.size
    mb = height * width * 3 / 2**20
    load = os.getloadavg()
    print(f"RMW implementation: {rmw} (rclpy.get_rmw_implementation_identifier())")
    print("DDS environment: " + ", ".join(f"{k}={os.environ.get(k, '<unset>')}" for k in DDS_ENV))
    print(f"frames: {args.frames} x {width}x{height} rgb8 ({mb:.2f} MiB) at {args.rate:g} Hz, "
          f"publisher {describe(PUBLISHER_QOS)}, subscriber in a separate process, grace {args.grace:g} s")
    print(f"CPU: {os.cpu_count()} cores, load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f} (1/5/15 min) "
          f"before the run; busy processes: {busy}")
    print()
    print(f"{'mode':<12} {'subscriber QoS':<24} {'run':>3} {'sent':>5} {'recv':>5} {'lost':>5} {'lost %':>7} "
          f"{'p50 ms':>8} {'p90 ms':>8} {'load1':>6}")


def print_row(mode: str, run: int, r: dict) -> None:
    lost = r["sent"] - r["received"]
    print(f"{mode:<12} {describe(MODES[mode]):<24} {run:>3} {r['sent']:>5} {r['received']:>5} {lost:>5} "
          f"{100 * lost / r['sent']:>6.1f}% {percentile(r['latencies'], 50)} {percentile(r['latencies'], 90)} "
          f"{r['load']:>6.2f}" + (f"  ({r['duplicates']} duplicates)" if r["duplicates"] else ""), flush=True)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--frames", type=int, default=100, help="frames per mode (default 100)")
    parser.add_argument("--rate", type=float, default=10.0, help="publish rate in Hz (default 10)")
    parser.add_argument("--size", type=int, nargs=2, default=(512, 1024), metavar=("H", "W"),
                        help="frame height and width (default 512 1024: 1.5 MB rgb8)")
    parser.add_argument("--modes", nargs="+", choices=list(MODES), default=list(MODES), help="QoS modes to run")
    parser.add_argument("--repeats", type=int, default=1, help="sessions per mode (default 1)")
    parser.add_argument("--busy", action="store_true", help="one matmul process per core during the run")
    parser.add_argument("--transport", choices=["DEFAULT", "SHM", "UDPv4", "LARGE_DATA"],
                        help="Fast DDS builtin transports (sets FASTDDS_BUILTIN_TRANSPORTS for both sides)")
    parser.add_argument("--large-shm", action="store_true",
                        help="a Fast DDS profile with a shared-memory segment larger than a frame (SHM only)")
    parser.add_argument("--grace", type=float, default=2.0, help="seconds without arrivals that end a mode")
    parser.add_argument("--role", choices=["bench", "subscriber", "busy"], default="bench", help=argparse.SUPPRESS)
    parser.add_argument("--mode", choices=list(MODES), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.frames < 1 or args.rate <= 0 or args.repeats < 1 or args.grace <= 0 or min(args.size) < 1:
        parser.error("--frames, --repeats and --size must be >= 1; --rate and --grace must be > 0")
    if args.transport and args.large_shm:
        parser.error("give --transport or --large-shm, not both")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.role == "subscriber":
        return run_subscriber(args.mode)
    if args.role == "busy":
        return run_busy()
    workdir = Path(tempfile.mkdtemp(prefix="dds_image_loss_"))
    # Set before rclpy.init: this process and the children (they inherit os.environ) read them.
    if args.transport:
        os.environ["FASTDDS_BUILTIN_TRANSPORTS"] = args.transport
    if args.large_shm:
        profile = write_large_shm_profile(workdir, frame_bytes=3 * args.size[0] * args.size[1])
        os.environ["FASTRTPS_DEFAULT_PROFILES_FILE"] = str(profile)
    header = Header(frame_id="camera")
    header.stamp.sec = 1
    pixels = np.random.default_rng(0).integers(0, 256, (*args.size, 3), dtype=np.uint8)
    msg = numpy_to_image(pixels, "rgb8", header)
    context = rclpy.context.Context()
    rclpy.init(context=context, signal_handler_options=SignalHandlerOptions.NO)
    node = rclpy.create_node("dds_image_loss_publisher", context=context)
    busy_count = (os.cpu_count() or 1) if args.busy else 0
    print_header(args, rclpy.get_rmw_implementation_identifier(), busy_count)
    busy = start_busy(busy_count)
    try:
        for mode in args.modes:
            for run in range(1, args.repeats + 1):
                print_row(mode, run, run_mode(node, msg, mode, args, workdir, run))
    finally:
        stop_busy(busy)
        node.destroy_node()
        rclpy.try_shutdown(context=context)
        shutil.rmtree(workdir, ignore_errors=True)
    print("\nlost = sent - received (distinct frames); latency = publish() call -> arrival in the subscriber")
    return 0


if __name__ == "__main__":
    sys.exit(main())
