"""One node, three cameras, over real DDS: each camera's outputs carry its own header; a
silent camera and a camera sending bad frames do not hold up the others; under overload
every camera is served and its counters add up; per-camera diagnostics."""
from __future__ import annotations

import array
from collections import defaultdict

import pytest
from diagnostic_msgs.msg import DiagnosticArray
from rclpy.parameter import Parameter
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import CompressedImage, Image
from std_msgs.msg import Header
from vision_msgs.msg import LabelInfo

from panoptic_ros.ros.node import PanopticNode
from ros_helpers import OUTPUTS, RELIABLE, camera_image, running

pytestmark = pytest.mark.ros

NAME = "multicamera_under_test"
# front and left are raw cameras by name (input <name>/image in the test's namespace);
# right names its topic, a compressed one (raw and compressed cameras mix in one node).
CAMERAS = ["front", "left", "right:/mc_test/right/image/compressed"]
TOPICS = {"front": "/front/image", "left": "/left/image", "right": "/mc_test/right/image/compressed"}
SIZES = {"front": (48, 64), "left": (40, 72), "right": (48, 64)}


def _node(context, weights, name=NAME, record_starts=False) -> PanopticNode:
    values = {"model": "ciae", "weights": str(weights), "device": "cpu", "num_threads": 1, "cameras": CAMERAS,
              "qos.reliability": "reliable", "qos.depth": 100}
    return PanopticNode(name, record_starts=record_starts, context=context,
                        parameter_overrides=[Parameter(k, value=v) for k, v in values.items()])


def _frame(camera: str, seq: int):
    """A frame of ``camera`` whose stamp encodes the camera and ``seq``."""
    if camera == "right":   # a compressed camera sending corrupt JPEGs: fails in the decoder
        header = Header(frame_id="right")
        header.stamp.sec, header.stamp.nanosec = 300, seq
        msg = CompressedImage(header=header, format="jpeg")
        msg.data = array.array("B", b"\xff\xd8\xff\xe0 not a jpeg" * 8)
        return msg
    msg = camera_image(seq, *SIZES[camera], frame_id=camera)
    return msg


class MultiProbe:
    """A publisher per camera and a recorder per (camera, output), by frame stamp."""

    def __init__(self, context, spinner, node_name=NAME):
        self.node = spinner.add(__import__("rclpy").create_node(f"probe_for_{node_name}", context=context))
        self.pubs = {c: self.node.create_publisher(CompressedImage if c == "right" else Image, t, RELIABLE)
                     for c, t in TOPICS.items()}
        self.got: dict[tuple[str, str], dict[int, object]] = defaultdict(dict)
        for camera in TOPICS:
            for output, out_type in OUTPUTS.items():
                self.node.create_subscription(out_type, f"/{node_name}/{camera}/{output}",
                                              self._recorder(camera, output), RELIABLE)
        self.spinner = spinner
        self.node_name = node_name

    def _recorder(self, camera, output):
        return lambda msg: self.got[camera, output].__setitem__(msg.header.stamp.nanosec, msg)

    def connect(self, node):
        self.spinner.until(lambda: all(p.get_subscription_count() > 0 for p in self.pubs.values())
                           and all(node.count_subscribers(f"/{self.node_name}/{c}/{o}") > 0
                                   for c in TOPICS for o in OUTPUTS), what="discovery")

    def outputs_of(self, camera, seq):
        return {o: self.got[camera, o].get(seq) for o in OUTPUTS}


@pytest.fixture(scope="module")
def multi(ros_context, spinner, tiny_weights):
    node = _node(ros_context, tiny_weights["ciae"], record_starts=True)
    assert node.state_label == "active", node.configure_error
    probe = MultiProbe(ros_context, spinner)
    with running(spinner, node, probe.node):
        probe.connect(node)
        yield node, probe


def _settled(node) -> bool:
    """No frame in flight or waiting: every received frame has been counted."""
    return all(s.received == s.processed + s.dropped + sum(s.rejected.values()) + s.errors + s.discarded
               for s in node.camera_stats.values())


def test_each_camera_has_its_own_topics_and_label_info_is_one_per_node(multi):
    node, probe = multi
    assert sorted(node.camera_stats) == ["front", "left", "right"]
    assert {n: s.topic_name for n, s in node.input_subscriptions.items()} == TOPICS
    assert sorted(node.output_publishers) == sorted([f"{c}/{o}" for c in TOPICS for o in OUTPUTS] + ["label_info"])
    assert node.count_publishers(f"/{NAME}/label_info") == 1
    latched = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.TRANSIENT_LOCAL)
    infos = []
    probe.node.create_subscription(LabelInfo, f"/{NAME}/label_info", infos.append, latched)
    probe.spinner.until(lambda: infos, what="label_info")


def test_outputs_of_each_camera_carry_its_own_header_and_size(multi):
    node, probe = multi
    frames = {c: _frame(c, 11) for c in ("front", "left")}
    for camera, frame in frames.items():
        probe.pubs[camera].publish(frame)
    probe.spinner.until(lambda: all(None not in probe.outputs_of(c, 11).values() for c in frames),
                        what="outputs of both cameras")
    for camera, frame in frames.items():
        for output, msg in probe.outputs_of(camera, 11).items():
            assert msg.header == frame.header, (camera, output)
            if output != "detections":
                assert (msg.height, msg.width) == SIZES[camera], (camera, output)
    assert not probe.got["right", "panoptic"]   # the silent camera got nothing, and held nothing up


def test_a_camera_sending_bad_frames_does_not_hold_up_the_others(multi):
    node, probe = multi
    rejected = sum(node.camera_stats["right"].rejected.values())
    for seq in range(20, 25):
        for camera in TOPICS:
            probe.pubs[camera].publish(_frame(camera, seq))
        probe.spinner.until(lambda: all(seq in probe.got[c, "panoptic"] for c in ("front", "left")),
                            what=f"outputs of frame {seq}")
    probe.spinner.until(lambda: sum(node.camera_stats["right"].rejected.values()) >= rejected + 5
                        and _settled(node), what="the bad frames to be counted")
    assert not probe.got["right", "panoptic"]
    assert node.camera_stats["right"].processed == 0 and node.camera_stats["right"].errors == 0


def test_frames_waiting_together_run_as_one_batch(multi):
    # The worker is held inside a run (on the node's processing lock, taken by the test)
    # while frames of both good cameras arrive: they wait side by side and the next run
    # takes them as one batch, by construction rather than by timing.
    node, probe = multi
    front = node.camera_stats["front"]
    batches = node.batch_sizes[2]
    with node._gate:
        started = len(front.starts)
        probe.pubs["front"].publish(_frame("front", 39))
        probe.spinner.until(lambda: len(front.starts) > started, what="the worker to take frame 39")
        received = {c: node.camera_stats[c].received for c in ("front", "left")}
        for camera in ("front", "left"):
            probe.pubs[camera].publish(_frame(camera, 40))
        probe.spinner.until(lambda: all(node.camera_stats[c].received > received[c] for c in received),
                            what="both frames to arrive")
    probe.spinner.until(lambda: all(40 in probe.got[c, "panoptic"] for c in ("front", "left"))
                        and 39 in probe.got["front", "panoptic"], what="outputs of the frames")
    assert node.batch_sizes[2] == batches + 1


def test_under_overload_every_camera_is_served_and_the_counters_add_up(multi):
    node, probe = multi
    before = {c: node.camera_stats[c].received for c in TOPICS}
    burst = range(100, 130)
    for seq in burst:  # far faster than the model: most frames wait and are replaced
        for camera in TOPICS:
            probe.pubs[camera].publish(_frame(camera, seq))
    last = burst[-1]
    probe.spinner.until(lambda: all(last in probe.got[c, "panoptic"] for c in ("front", "left"))
                        and all(node.camera_stats[c].received - before[c] == len(burst) for c in TOPICS)
                        and _settled(node), what="the burst to be processed")
    for camera in ("front", "left"):
        stats = node.camera_stats[camera]
        assert stats.processed >= 1 and stats.stale_starts() == 0, camera
        served = [seq for seq in burst if seq in probe.got[camera, "panoptic"]]
        assert served[-1] == last  # the newest frame of each camera is never dropped
    # the bad camera's frames all end counted too, none of them as processed
    assert node.camera_stats["right"].processed == 0


def test_diagnostics_report_every_camera(multi, spinner):
    node, probe = multi
    seen = []
    probe.node.create_subscription(DiagnosticArray, "/diagnostics", seen.append, 10)
    spinner.until(lambda: any(len(m.status) == 4 for m in seen), what="diagnostics with the camera statuses")
    message = next(m for m in seen if len(m.status) == 4)
    names = [s.name for s in message.status]
    assert names == [f"{NAME}: panoptic segmentation"] + [f"{NAME}: camera {c}" for c in ("front", "left", "right")]
    by_camera = {s.name.rsplit(" ", 1)[1]: {kv.key: kv.value for kv in s.values} for s in message.status[1:]}
    for values in by_camera.values():
        for key in ("input_rate_hz", "output_rate_hz", "latency_p50_ms", "latency_p99_ms", "frames_dropped",
                    "frames_rejected", "frames_received", "frames_processed"):
            assert key in values
    overall = {kv.key: kv.value for kv in message.status[0].values}
    assert overall["cameras"] == "front,left,right"
    assert int(overall["frames_received"]) == sum(int(v["frames_received"]) for v in by_camera.values())
    assert any(k.startswith("rejected.") for k in by_camera["right"])
