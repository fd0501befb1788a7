"""Live replay over DDS (the replay's ROS shell): the bag's frames go to the real node, its
outputs come back and are recorded.

The node is started as a process (:mod:`panoptic_ros.replay.nodeproc`) or an already
running one is used (``connect``). A replay node publishes each frame's bytes from the
bag unchanged (converted only when the node listens to the other image type), either at
the recorded rate (times ``rate``) or, with ``as_fast_as_possible``, the next frame as soon
as the previous frame's ``~/panoptic`` is back (or the node's diagnostics show it idle
without it: the frame was lost). Outputs are received serialized (no
deserialization on the receive path, so arrival times are not delayed by it), stamped on
arrival, matched to their frame by header stamp and written to the output bag by a
writer thread.

A node the replay starts listens reliably (see :class:`~panoptic_ros.replay.nodeproc.NodeSpec`),
so frames are dropped only in its one-frame slot; a connected node keeps its own QoS (by
default best effort, where large frames can be lost in DDS). Every frame whose
``~/panoptic`` never arrives counts as dropped. The node's ``/diagnostics`` give its own
counters (received, dropped in the slot, rejected) and model time percentiles, and tell
when it has finished everything it received.

A multi-camera replay (:meth:`LiveRunner.start_cameras`, :meth:`LiveRunner.run_cameras`)
starts one node with a ``cameras`` parameter, publishes each camera's frames on its own
topic (the frames of one time step together; as fast as possible, the next step once
every frame of this one is answered) and records each camera's outputs with its own log.

Everything else of the replay (bags, scoring, report, the offline runner) is pure and
lives in :mod:`panoptic_ros.replay`; :mod:`panoptic_ros.replay.run` imports this module
only for a live replay.
"""
from __future__ import annotations

import queue
import threading
import time
from pathlib import Path
from typing import Iterable

import rclpy
from diagnostic_msgs.msg import DiagnosticArray
from rclpy.executors import SingleThreadedExecutor
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy
from rclpy.serialization import deserialize_message
from rclpy.signals import SignalHandlerOptions
from sensor_msgs.msg import CompressedImage, Image
from vision_msgs.msg import Detection2DArray, LabelInfo

from panoptic_ros.labels import LABEL_SPACES, LabelSpace
from panoptic_ros.outputs import DETECTIONS_TYPE, OUTPUT_TYPES, VOID_CLASS_NAME
from panoptic_ros.replay.bag import RawMessage, cdr_stamp
from panoptic_ros.replay.messages import RECORDED_OUTPUTS, convert_camera
from panoptic_ros.replay.metrics import RunLog
from panoptic_ros.replay.multicamera import time_steps
from panoptic_ros.replay.nodeproc import NodeError, NodeProcess, NodeSpec
from panoptic_ros.replay.outbag import OutputBag
from panoptic_ros.serialized.image import COMPRESSED_TYPE, IMAGE_TYPE, ImageDecodeError

_RELIABLE = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=10, reliability=ReliabilityPolicy.RELIABLE)
_RECORD = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=100, reliability=ReliabilityPolicy.RELIABLE)
_LATCHED = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=1, reliability=ReliabilityPolicy.RELIABLE,
                      durability=DurabilityPolicy.TRANSIENT_LOCAL)
OUTPUT_GRACE_S = 3.0
CAMERA_TYPES = {IMAGE_TYPE: Image, COMPRESSED_TYPE: CompressedImage}
CAMERA_TYPE_NAMES = {cls: name for name, cls in CAMERA_TYPES.items()}
_OUTPUT_CLASSES = {IMAGE_TYPE: Image, DETECTIONS_TYPE: Detection2DArray}
_COUNTERS = ("frames_received", "frames_processed", "frames_dropped", "frames_rejected", "frames_discarded",
             "frames_paused", "inference_errors")


def label_space_of(names: list[str]) -> LabelSpace:
    """The label space whose category names are ``names`` (from ``~/label_info``)."""
    for space in LABEL_SPACES.values():
        if [c.name for c in space.categories] == names:
            return space
    raise NodeError(f"the node's ~/label_info lists {len(names)} classes that match no known label space "
                    f"({', '.join(LABEL_SPACES)})")


def label_info_names(data: bytes) -> list[str]:
    """Class names of a serialized ``LabelInfo`` in class-id order, without ``void``."""
    msg = deserialize_message(bytes(data), LabelInfo)
    return [c.class_name for c in sorted(msg.class_map, key=lambda c: c.class_id) if c.class_name != VOID_CLASS_NAME]


def _diagnostic_value(text: str):
    """A diagnostics value string as int, float, bool or the string itself."""
    if text in ("True", "False"):
        return text == "True"
    try:
        return int(text)
    except ValueError:
        try:
            return float(text)
        except ValueError:
            return text


class LiveRunner:
    """Replays frames through a running node and records what it publishes.

    Args:
        spec: start this node; None with ``connect``.
        connect: fully qualified name of a running node (``/ns/name``).
        log_dir: where the started node's log goes.
        rate: speed factor on the recorded timing.
        as_fast_as_possible: send the next frame when the previous one's output is back.
        frame_timeout: at most this many seconds to wait for one frame's output (as fast
            as possible) and for the node to finish after the last frame.
        startup_timeout: seconds for the node to load its model and answer.
    """

    mode = "live"

    def __init__(self, *, spec: NodeSpec | None = None, connect: str | None = None, log_dir: Path,
                 rate: float = 1.0, as_fast_as_possible: bool = False, frame_timeout: float = 30.0,
                 startup_timeout: float = 180.0):
        if (spec is None) == (connect is None):
            raise ValueError("give either a node spec to start or a node to connect to")
        self.spec, self.log_dir = spec, Path(log_dir)
        self.node_topic = "/" + (connect or spec.name).strip("/")
        self.rate, self.afap = rate, as_fast_as_possible
        self.frame_timeout, self.startup_timeout = frame_timeout, startup_timeout
        self.process: NodeProcess | None = None
        self.label_space: LabelSpace | None = None
        self.input_topic = self.input_type = self.input_reliability = None
        self.wall_s = 0.0
        self.exit_code: int | None = None
        self._label_info: bytes | None = None
        self._diag: dict = {}
        self._diag_count = 0
        self._baseline: dict = {}
        self._writes: queue.Queue = queue.Queue()
        self._logs: dict[str | None, RunLog] = {}  # camera (None: the one camera) -> its frames
        self._pubs: dict = {}  # camera -> publisher of its frames
        self._stopping = threading.Event()
        self._context = rclpy.context.Context()
        rclpy.init(context=self._context, signal_handler_options=SignalHandlerOptions.NO)
        self._node = rclpy.create_node(f"panoptic_replay_{id(self) % 100000}", context=self._context)
        self._executor = SingleThreadedExecutor(context=self._context)
        self._executor.add_node(self._node)
        self._spin_thread = threading.Thread(target=self._spin, name="replay_spin", daemon=True)
        self._spin_thread.start()

    # ---- set-up ---------------------------------------------------------------------

    def start(self, bag_topic: str, bag_type: str) -> None:
        """Start (or find) the node and wait until it is active and wired to us.

        Raises:
            NodeError: the node exits, fails to configure, or does not answer in time.
        """
        self._subscribe(cameras=[None])
        deadline = time.monotonic() + self.startup_timeout
        if self.spec is not None:
            self.process = NodeProcess(self.spec, self.log_dir / "node.log")
            self.input_topic, self.input_type = bag_topic, bag_type
        else:
            self.input_topic, self.input_type = self._find_input(bag_type, deadline)
        self._pubs = {None: self._node.create_publisher(CAMERA_TYPES[self.input_type], self.input_topic, _RELIABLE)}
        self._wait_until_wired(deadline)

    def start_cameras(self, inputs: dict[str, tuple[str, str]]) -> None:
        """Start the multi-camera node (``spec.cameras``) and wait until it is active and
        wired to us: one publisher per camera, outputs under ``<node>/<camera>/``.

        Args:
            inputs: camera name -> (the topic the node listens to, its message type).
        """
        if self.spec is None or not self.spec.cameras:
            raise ValueError("start_cameras: give a node spec with cameras")
        self._subscribe(cameras=list(inputs))
        deadline = time.monotonic() + self.startup_timeout
        self.process = NodeProcess(self.spec, self.log_dir / "node.log")
        self.input_topic = ", ".join(topic for topic, _ in inputs.values())
        self.input_type = ", ".join(sorted({msgtype for _, msgtype in inputs.values()}))
        self._pubs = {name: self._node.create_publisher(CAMERA_TYPES[msgtype], topic, _RELIABLE)
                      for name, (topic, msgtype) in inputs.items()}
        self._wait_until_wired(deadline)

    def _subscribe(self, cameras: list[str | None]) -> None:
        """Diagnostics, ``label_info`` and the recorded outputs of each camera (None: the
        single camera's ``<node>/<output>``)."""
        node = self._node
        node.create_subscription(DiagnosticArray, "/diagnostics", self._on_diagnostics, _RELIABLE)
        for camera in cameras:
            for name in RECORDED_OUTPUTS:
                node.create_subscription(_OUTPUT_CLASSES[OUTPUT_TYPES[name]], self._output_topic(camera, name),
                                         lambda data, name=name, camera=camera: self._on_output(name, data, camera),
                                         _RECORD, raw=True)
        node.create_subscription(LabelInfo, f"{self.node_topic}/label_info", self._on_label_info, _LATCHED,
                                 raw=True)

    def _output_topic(self, camera: str | None, name: str) -> str:
        return f"{self.node_topic}/{name}" if camera is None else f"{self.node_topic}/{camera}/{name}"

    def _wait_until_wired(self, deadline: float) -> None:
        self._until(self._wired, deadline, "the node to become active and match the replay's topics")
        seen = self._diag_count
        self._until(lambda: self._diag_count > seen, deadline, "the node's diagnostics")
        self._baseline = {k: self._diag.get(k, 0) for k in _COUNTERS}
        self.label_space = label_space_of(label_info_names(self._label_info))
        self.input_reliability = self._node_input_reliability()

    def _node_input_reliability(self) -> str | None:
        """The node's camera subscription reliability as DDS advertises it (its first camera's)."""
        name = self.node_topic.rsplit("/", 1)[-1]
        topic = next(iter(self._pubs.values())).topic_name
        for info in self._node.get_subscriptions_info_by_topic(topic):
            if info.node_name == name:
                return "best_effort" if info.qos_profile.reliability == ReliabilityPolicy.BEST_EFFORT else "reliable"
        return None

    def _find_input(self, bag_type: str, deadline: float) -> tuple[str, str]:
        """The camera topic and type the running node subscribes to."""
        namespace, _, name = self.node_topic.rpartition("/")
        namespace = namespace or "/"
        found: list[tuple[str, str]] = []

        def subscribed() -> bool:
            if (name, namespace) not in self._node.get_node_names_and_namespaces():
                return False
            pairs = self._node.get_subscriber_names_and_types_by_node(name, namespace)
            found[:] = [(topic, t) for topic, types in pairs for t in types if t in CAMERA_TYPES]
            return bool(found)

        self._until(subscribed, deadline, f"node {self.node_topic} with a camera subscription")
        found.sort(key=lambda pair: pair[1] != bag_type)  # same type as the bag first: no conversion
        return found[0]

    def _wired(self) -> bool:
        if self._diag.get("level") == 2 and "configure failed" in self._diag.get("message", ""):
            raise NodeError(f"{self.node_topic}: {self._diag['message']}")
        if self.spec is None and self._diag and (self._diag.get("state") != "active" or not self._diag.get("enabled")):
            # a running node we do not manage: say so at once instead of waiting for it
            raise NodeError(f"{self.node_topic} is {self._diag.get('message') or self._diag.get('state')}; "
                            f"activate it (and enable it with ~/enable) before replaying into it")
        return (self._diag.get("state") == "active" and self._label_info is not None
                and all(pub.get_subscription_count() > 0 for pub in self._pubs.values())
                and all(s.get_publisher_count() > 0 for s in self._node.subscriptions
                        if s.topic_name.startswith(self.node_topic + "/")))

    def _until(self, predicate, deadline: float, what: str) -> None:
        """Poll ``predicate`` (graph and diagnostics change in the spin thread)."""
        while not predicate():
            if self.process is not None:
                self.process.check_alive()
            if time.monotonic() > deadline:
                tail = f"\nnode log:\n{self.process.log_tail()}" if self.process is not None else ""
                raise NodeError(f"timed out after {self.startup_timeout:.0f} s waiting for {what}{tail}")
            time.sleep(0.02)

    # ---- callbacks (spin thread) --------------------------------------------------------

    def _spin(self) -> None:
        while not self._stopping.is_set() and self._context.ok():
            self._executor.spin_once(timeout_sec=0.05)

    def _on_output(self, name: str, data: bytes, camera: str | None = None) -> None:
        arrived = time.perf_counter()
        log = self._logs.get(camera)
        if log is None:
            return
        record = log.output(name, cdr_stamp(data), arrived)
        if record is not None:
            self._writes.put((self._output_topic(camera, name), record.log_ns, data))

    def _on_label_info(self, data: bytes) -> None:
        self._label_info = data

    def _on_diagnostics(self, msg: DiagnosticArray) -> None:
        wanted = f"{self.node_topic.rsplit('/', 1)[-1]}: panoptic segmentation"
        for status in msg.status:
            if status.name == wanted:
                values = {kv.key: _diagnostic_value(kv.value) for kv in status.values}
                level = status.level if isinstance(status.level, int) else int.from_bytes(status.level, "little")
                self._diag = {**values, "level": level, "message": status.message}
                self._diag_count += 1

    # ---- the replay ---------------------------------------------------------------------

    def run(self, frames: Iterable[RawMessage], msgtype: str, bag: OutputBag, log: RunLog, progress=None) -> None:
        """Send every frame, record the outputs, wait for the node to finish."""
        steps = ([(message, msgtype, None)] for message in frames)
        self._replay(steps, bag, {None: log}, progress)

    def run_cameras(self, frames: Iterable[RawMessage], inputs: dict[str, tuple[str, str]], bag: OutputBag,
                    logs: dict[str, RunLog], progress=None) -> None:
        """Send the frames of several cameras (after :meth:`start_cameras`): messages in log
        order are gathered into time steps until a camera repeats; record each camera's
        outputs in its log; wait for the node to finish.

        Args:
            frames: camera messages of the bag topics of ``inputs``, in log order.
            inputs: bag topic -> (camera name, message type).
            logs: camera name -> its frames.
        """
        self._replay(time_steps(frames, inputs), bag, dict(logs), progress)

    def _replay(self, steps, bag: OutputBag, logs: dict[str | None, RunLog], progress) -> None:
        self._logs = logs
        writer = threading.Thread(target=self._write_outputs, args=(bag,), name="replay_writer", daemon=True)
        writer.start()
        start = time.perf_counter()
        try:
            self._send_all(steps, progress)
            self._drain(list(logs.values()))
        finally:
            self.wall_s = time.perf_counter() - start
            self._writes.put(None)
            writer.join()

    def _send_all(self, steps, progress) -> None:
        """Each step: (message, bag type, camera) per frame, sent together at the step's
        recorded time (as fast as possible: once the previous step is answered)."""
        clock: list[float] = []
        for step in steps:
            sent = []
            for message, msgtype, camera in step:
                log, stamp = self._logs[camera], cdr_stamp(message.data)
                pub = self._pubs[camera]
                try:
                    data = convert_camera(message.data, msgtype, CAMERA_TYPE_NAMES[pub.msg_type])
                except ImageDecodeError as exc:
                    log.add(stamp, message.log_ns, rejected=exc.cause)
                    continue
                self._pace(clock, message.log_ns)
                if self.process is not None:
                    self.process.check_alive()
                record = log.add(stamp, message.log_ns, sent_s=time.perf_counter())
                pub.publish(data)
                sent.append((record, log))
            if self.afap and sent:
                self._await_answers(sent)
            if progress is not None:
                progress.update(len(step))
                progress.set_postfix(out=sum(log.processed for log in self._logs.values()), refresh=False)

    def _pace(self, clock: list[float], log_ns: int) -> None:
        """Wait for ``log_ns`` on the recorded timeline (times ``rate``); ``clock`` holds
        (start time, first log time), set by the first frame, which also writes ``label_info``."""
        if not clock:
            clock[:] = [time.perf_counter(), log_ns]
            self._writes.put((f"{self.node_topic}/label_info", log_ns, self._label_info))
        elif not self.afap:
            delay = clock[0] + (log_ns - clock[1]) / 1e9 / self.rate - time.perf_counter()
            if delay > 0:
                time.sleep(delay)  # pacing to the recorded timeline

    def _await_answers(self, sent: list[tuple]) -> None:
        """As fast as possible: wait for the outputs of these (record, log) frames, or until
        the node is idle without them (lost in DDS, or their answer lost): diagnostics
        generated after the send (the second one from now) that show every received frame
        finished. The frame timeout bounds the wait."""
        seen = self._diag_count
        deadline = time.monotonic() + self.frame_timeout

        def answered() -> bool:
            return all(record.done_s is not None for record, _ in sent)

        while not answered() and time.monotonic() < deadline and not self._idle(seen + 1):
            if self.process is not None:
                self.process.check_alive()
            sent[0][1].wait(answered, 0.05)

    def _counters(self) -> dict:
        """The node's counters since the replay started."""
        return {k: self._diag.get(k, 0) - self._baseline.get(k, 0) for k in _COUNTERS}

    def _idle(self, seen: int) -> bool:
        """Every frame the node received is finished: answered, replaced in its slot,
        rejected or failed (from diagnostics newer than ``seen``)."""
        if self._diag_count <= seen:
            return False
        delta = self._counters()
        # paused frames never enter the slot: they are not part of frames_received
        finished = sum(delta[k] for k in ("frames_processed", "frames_dropped", "frames_rejected", "inference_errors"))
        return finished >= delta["frames_received"]

    def _drain(self, logs: list[RunLog]) -> None:
        """Wait until every frame is answered or the node has finished all it received (at
        most the frame timeout), then for outputs still on the way (a reliable repair can
        take a heartbeat period) and for diagnostics that count every answered frame."""
        seen = self._diag_count
        deadline = time.monotonic() + self.frame_timeout

        def processed() -> int:
            return sum(log.processed for log in logs)

        def all_answered() -> bool:
            return processed() == sum(log.sent for log in logs)

        while time.monotonic() < deadline and not (all_answered() or self._idle(seen)):
            if self.process is not None:
                self.process.check_alive()
            logs[0].wait(all_answered, 0.05)
        published = set().union(*(log.output_counts for log in logs))  # the outputs the node publishes at all

        def complete() -> bool:
            return (self._counters()["frames_processed"] <= processed()
                    and all(published <= r.outputs for log in logs for r in log.records if r.done_s is not None))

        grace = time.monotonic() + OUTPUT_GRACE_S
        while time.monotonic() < grace and not complete():
            logs[0].wait(complete, 0.05)
        grace = time.monotonic() + OUTPUT_GRACE_S
        while time.monotonic() < grace and self._counters()["frames_processed"] < processed():
            time.sleep(0.02)  # diagnostics lag the outputs by up to one period

    def drop_breakdown(self, logs: list[RunLog]) -> dict:
        """Where the dropped frames went, from the node's counters (exact for a node the
        replay started; a connected node may also count frames from other publishers)."""
        c = self._counters()
        sent, processed = sum(log.sent for log in logs), sum(log.processed for log in logs)
        return {"lost_before_node": sent - c["frames_received"], "replaced_in_node_slot": c["frames_dropped"],
                "rejected_by_node": c["frames_rejected"], "node_errors": c["inference_errors"],
                "outputs_lost_after_node": c["frames_processed"] - processed}

    def _write_outputs(self, bag: OutputBag) -> None:
        for item in iter(self._writes.get, None):
            bag.write(*item)

    # ---- results and teardown ---------------------------------------------------------

    def node_figures(self) -> dict:
        """The node's counters over this replay and its latest timing percentiles."""
        d = self._diag
        counters = self._counters()
        timings = {k: d[k] for k in d if k.endswith("_ms") and isinstance(d[k], (int, float))}
        return {**counters, **timings}

    def model_ms(self) -> dict:
        d = self._diag
        return {"p50": d.get("model_p50_ms"), "p90": d.get("model_p90_ms"), "p99": d.get("model_p99_ms"),
                "mean": None, "max": None}

    def info(self) -> dict:
        d = self._diag
        out = {"mode": self.mode, "node": self.node_topic, "input_topic": self.input_topic,
               "input_type": self.input_type, "input_reliability": self.input_reliability, "rate": "as fast as possible" if self.afap else self.rate,
               "model": d.get("model"), "backend": d.get("backend"), "backend_requested": d.get("backend_requested"),
               "precision": d.get("precision"), "device": d.get("device"),
               "provider": d.get("provider"), "node_figures": self.node_figures(),
               "model_time_source": "node /diagnostics (last 200 frames)", "wall_s": self.wall_s}
        if self._logs:
            out["drops"] = self.drop_breakdown(list(self._logs.values()))
        if self.spec is not None:
            out.update(weights=str(self.spec.weights), node_log=str(self.process.log_path) if self.process else None,
                       node_exit_code=self.exit_code)
        return out

    def close(self) -> None:
        """Stop the node we started, then our own node and context."""
        if self.process is not None:
            self.exit_code = self.process.stop()
        self._stopping.set()
        self._spin_thread.join(5.0)
        self._executor.remove_node(self._node)
        self._node.destroy_node()
        self._executor.shutdown(timeout_sec=1.0)
        rclpy.try_shutdown(context=self._context)
