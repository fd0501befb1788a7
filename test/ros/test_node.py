"""The node over real DDS: outputs, headers, detections, label info, enable service,
parameters, latest-frame-only behaviour, diagnostics and type hashes."""
from __future__ import annotations

import numpy as np
import pytest
import rclpy
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus
from rclpy.parameter import Parameter
from rclpy.parameter_client import AsyncParameterClient
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
from std_srvs.srv import SetBool
from vision_msgs.msg import LabelInfo

from panoptic_ros.labels import CITYSCAPES
from panoptic_ros.ros.image_codec import image_to_numpy
from panoptic_ros.types import PanopticResult
from ros_helpers import NAME, Probe, camera_image, make_node, running

pytestmark = pytest.mark.ros

OFFICIAL_HASHES = {
    "detections": "RIHS01_214274120007f4a683866481336b70310268cfa107aebe9d594a6acf75bda968",
    "label_info": "RIHS01_3d37df4015cdf660cc851c51897f2acd957e1ca6205ba0a99aebffb9406b0783",
}


@pytest.fixture(scope="module")
def node(ros_context, spinner, tiny_weights):
    n = spinner.add(make_node(ros_context, tiny_weights["ciae"], **{"qos.reliability": "reliable"}))
    assert n.state_label == "active", n.configure_error
    yield n
    spinner.remove(n)
    n.destroy_node()


@pytest.fixture(scope="module")
def probe(ros_context, spinner, node):
    p = Probe(ros_context, spinner)
    p.connect(node)
    return p


def test_every_output_comes_back_with_the_input_header(node, probe):
    frame = camera_image(1)
    got = probe.send(frame)
    for output, msg in got.items():
        assert msg.header == frame.header, output
    panoptic = image_to_numpy(got["panoptic"])
    assert panoptic.shape == (48, 64) and got["panoptic"].encoding == "32SC1"
    result = PanopticResult.from_panoptic_map(panoptic, CITYSCAPES)
    np.testing.assert_array_equal(image_to_numpy(got["semantic"]), result.semantic_map(CITYSCAPES))
    np.testing.assert_array_equal(image_to_numpy(got["instances"]), result.instance_map())
    assert image_to_numpy(got["overlay"]).shape == (48, 64, 3) and got["overlay"].encoding == "rgb8"


def test_detections_match_the_segments_of_the_panoptic_image(node, probe):
    got = probe.send(camera_image(2), outputs=("panoptic", "detections"))
    result = PanopticResult.from_panoptic_map(image_to_numpy(got["panoptic"]), CITYSCAPES)
    things = {str(s.id): s for s in result.segments if s.is_thing}
    assert things, "the tiny model should find some thing segment in this frame"
    detections = {d.id: d for d in got["detections"].detections}
    assert set(detections) == set(things)
    for seg_id, det in detections.items():
        x, y, w, h = things[seg_id].bbox
        assert det.results[0].hypothesis.class_id == CITYSCAPES.category(things[seg_id].category_id).name
        assert 0.0 <= det.results[0].hypothesis.score <= 1.0
        assert (det.bbox.center.position.x, det.bbox.center.position.y, det.bbox.size_x, det.bbox.size_y) == \
            (x + w / 2, y + h / 2, w, h)


def test_label_info_reaches_a_late_subscriber(node, probe, spinner):
    received = []
    latched = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE,
                         durability=DurabilityPolicy.TRANSIENT_LOCAL)
    probe.node.create_subscription(LabelInfo, f"/{NAME}/label_info", received.append, latched)
    spinner.until(lambda: received, what="label_info")
    names = {c.class_id: c.class_name for c in received[0].class_map}
    assert names[CITYSCAPES.train_index(26)] == "car" and names[255] == "void"
    assert received[0].threshold == pytest.approx(node.predictor.postprocess_config.score_threshold)


def test_enable_service_pauses_and_resumes_output(node, probe, spinner):
    client = probe.node.create_client(SetBool, f"/{NAME}/enable")
    assert client.wait_for_service(timeout_sec=30)
    response = spinner.future(client.call_async(SetBool.Request(data=False)))
    assert response.success and response.message == "inference paused"
    paused, processed = node.stats.paused, node.stats.processed
    probe.pub.publish(camera_image(3))
    spinner.until(lambda: node.stats.paused > paused, what="the paused frame to arrive")
    assert node.stats.processed == processed and 3 not in probe.got["panoptic"]
    assert spinner.future(client.call_async(SetBool.Request(data=True))).message == "inference resumed"
    probe.send(camera_image(4), outputs=("panoptic",))
    assert 3 not in probe.got["panoptic"]


@pytest.mark.parametrize("name, value, reason", [
    ("overlay_alpha", 1.5, "overlay_alpha"),
    ("qos.depth", 0, "qos.depth"),
    ("max_image_side", 8, "max_image_side"),
    ("overlay_alpha", "opaque", "type"),
    ("ciae.score_threshold", 1.5, "score_threshold"),
    ("ciae.max_instances", -3, "max_instances"),
    ("backend", "onnxruntime", "read at configure"),
    ("model", "panonet", "read at configure"),
    ("autostart", False, "read-only"),
])
def test_bad_parameter_changes_are_rejected_with_a_reason(node, name, value, reason):
    before = node.get_parameter_or(name).value
    result = node.set_parameters([Parameter(name, value=value)])[0]
    assert not result.successful
    assert reason in result.reason.lower(), result.reason
    assert node.get_parameter_or(name).value == before


def test_thresholds_and_toggles_change_at_once_over_the_parameter_service(node, probe, spinner):
    client = AsyncParameterClient(probe.node, NAME)
    assert client.wait_for_services(timeout_sec=30)
    results = spinner.future(client.set_parameters([Parameter("ciae.score_threshold", value=0.07),
                                                    Parameter("publish.overlay", value=False)]))
    assert all(r.successful for r in results.results)
    assert node.predictor.postprocess_config.score_threshold == pytest.approx(0.07)
    assert node._io.publish_overlay is False
    infos = []
    probe.node.create_subscription(LabelInfo, f"/{NAME}/label_info", infos.append, QoSProfile(
        depth=1, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.TRANSIENT_LOCAL))
    spinner.until(lambda: infos and infos[-1].threshold == pytest.approx(0.07), what="label_info with the threshold")
    probe.send(camera_image(5), outputs=("panoptic",))
    assert 5 not in probe.got["overlay"]
    bad = spinner.future(client.set_parameters([Parameter("ciae.nms_threshold", value=2.0)]))
    assert not bad.results[0].successful and "nms_threshold" in bad.results[0].reason
    node.set_parameters([Parameter("publish.overlay", value=True)])


def test_a_post_processing_change_runs_the_post_processing_once(node, probe):
    probe.send(camera_image(6), outputs=("panoptic",))  # raw outputs the change is tried on
    predictor = node.predictor
    real, runs = predictor._postprocess_fn, []

    def counted(*args, **kwargs):  # the real post-processing, counted
        runs.append(kwargs["config"])
        return real(*args, **kwargs)

    predictor._postprocess_fn = counted
    try:
        assert node.set_parameters([Parameter("ciae.max_instances", value=3)])[0].successful
        assert len(runs) == 1 and predictor.postprocess_config is runs[0] and runs[0].max_instances == 3
        assert node.set_parameters([Parameter("publish.stuff_detections", value=False)])[0].successful
        assert len(runs) == 1  # other parameters never run it
        assert not node.set_parameters([Parameter("ciae.max_instances", value=-1)])[0].successful
        assert len(runs) == 1 and predictor.postprocess_config.max_instances == 3  # refused by the config
    finally:
        predictor._postprocess_fn = real
        node.set_parameters([Parameter("ciae.max_instances", value=4)])


def test_latest_frame_only_under_overload(node, probe, spinner):
    received, dropped, done = node.stats.received, node.stats.dropped, node.stats.processed
    burst = [camera_image(1000 + i) for i in range(40)]
    for msg in burst:  # far faster than the node's frame rate
        probe.pub.publish(msg)
        spinner.executor.spin_once(timeout_sec=0.005)
    last = burst[-1].header.stamp.nanosec
    spinner.until(lambda: last in probe.got["panoptic"], what="the newest frame's output")

    def counts():
        s = node.stats
        return s.received - received, s.processed - done, s.dropped - dropped

    # every frame that reached the node was processed or replaced by a newer one
    spinner.until(lambda: counts()[0] == counts()[1] + counts()[2], what="the counters to settle")
    arrived, processed, replaced = counts()
    assert 0 < processed < arrived <= len(burst) and replaced > 0
    assert node.stats.stale_starts() == 0  # and each was the newest when its processing began
    outputs = sorted(s for s in probe.got["panoptic"] if s >= 1000)
    assert outputs[-1] == last and len(outputs) <= processed


def test_diagnostics_report_rates_latency_drops_and_the_device(node, probe, spinner):
    seen = []
    probe.node.create_subscription(DiagnosticArray, "/diagnostics",
                                   lambda m: seen.extend(s for s in m.status if s.name.startswith(NAME)), 10)
    spinner.until(lambda: any(int(dict((kv.key, kv.value) for kv in s.values).get("frames_dropped", 0)) > 0
                              for s in seen), what="a diagnostics message with the dropped count")
    status = seen[-1]
    values = {kv.key: kv.value for kv in status.values}
    assert status.level == DiagnosticStatus.OK and status.hardware_id == "cpu"
    for key in ("input_rate_hz", "output_rate_hz", "latency_p50_ms", "latency_p99_ms", "model_p90_ms",
                "frames_dropped", "frames_rejected", "device", "backend", "model"):
        assert key in values, key
    assert (values["backend"], values["model"]) == ("torch", "ciae")


def test_vision_msgs_types_carry_the_official_hashes(node, probe):
    for output, expected in OFFICIAL_HASHES.items():
        infos = probe.node.get_publishers_info_by_topic(f"/{NAME}/{output}")
        assert infos and {str(i.topic_type_hash) for i in infos} == {expected}


def test_input_qos_defaults_to_sensor_data(ros_context, spinner, tiny_weights):
    with running(spinner, make_node(ros_context, tiny_weights["ciae"], name="qos_probe_node",
                                    topic="/qos_test/image")) as (n,):
        infos = n.get_subscriptions_info_by_topic("/qos_test/image")
        assert len(infos) == 1
        assert infos[0].qos_profile.reliability == ReliabilityPolicy.BEST_EFFORT  # as seen over DDS
        assert n.input_subscription.qos_profile.depth == 1  # history depth is not advertised
