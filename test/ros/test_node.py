"""The node over real DDS: outputs, headers, detections, label info, enable service,
parameters, latest-frame-only behaviour, diagnostics and type hashes."""
from __future__ import annotations

import time

import numpy as np
import pytest
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus
from rclpy.parameter import Parameter
from rclpy.parameter_client import AsyncParameterClient
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
from std_msgs.msg import Header
from std_srvs.srv import SetBool
from vision_msgs.msg import LabelInfo

from panoptic_ros.labels import CITYSCAPES
from panoptic_ros.ros.node import diagnostic_array
from panoptic_ros.serialized.image import image_to_numpy
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
    ("max_image_side", 65535, "max_image_side"),  # a 2-core robot cannot decode such frames
    ("max_image_pixels", 100, "max_image_pixels"),
    ("max_image_pixels", 100_000_000, "max_image_pixels"),
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


def _diagnostics(probe_node, name: str) -> list:
    seen = []
    probe_node.create_subscription(DiagnosticArray, "/diagnostics",
                                   lambda m: seen.extend(s for s in m.status if s.name.startswith(f"{name}:")), 10)
    return seen


def _values(status) -> dict[str, str]:
    return {kv.key: kv.value for kv in status.values}


def test_latest_frame_only_each_processed_frame_is_the_newest_at_its_start(ros_context, spinner, tiny_weights):
    # A node of its own, slowed down by a larger model input; a reliable deep input queue
    # brings every frame into the node, so frames can only be dropped in its one-frame slot.
    name, topic = "latest_frame_node", "/latest_frame_test/image"
    node = make_node(ros_context, tiny_weights["ciae"], name=name, topic=topic, record_starts=True,
                     input_size=[256, 384], diagnostics_period=0.1, **{"qos.reliability": "reliable", "qos.depth": 100})
    probe = Probe(ros_context, spinner, name=name, topic=topic)
    with running(spinner, node, probe.node):
        probe.connect(node)
        seen = _diagnostics(probe.node, name)
        stats, sent = node.stats, 0
        # the camera outpaces the model: a frame every 10 ms; on a loaded machine the model can
        # take a second per frame, so the cap on frames is a cap of about 30 s
        while (stats.dropped < 5 or stats.processed < 3) and sent < 3000:
            probe.pub.publish(camera_image(2000 + sent))
            sent += 1
            spinner.until(lambda: stats.received == sent, what=f"frame {sent} to reach the node")
            time.sleep(0.01)
        last = 2000 + sent - 1
        spinner.until(lambda: last in probe.got["panoptic"], what="the newest frame's output")
        # every frame that reached the node was processed or replaced by a newer one (a frame
        # counts as processed once all its outputs are out)
        spinner.until(lambda: stats.processed + stats.dropped == sent, what="the counters to settle")
        assert stats.received == sent
        assert 3 <= stats.processed < sent and stats.dropped >= 5
        # the node's own record: each frame started while no newer one had arrived, i.e. its
        # age at the start of processing was below the input period at that moment
        records = stats.start_records()
        assert len(records) == stats.processed and records[-1][0] == sent - 1 and records[-1][2] is None
        for index, age, period in records[:-1]:
            assert age < period, f"frame {index} started {age * 1e3:.2f} ms after arriving, a newer one came " \
                                 f"{period * 1e3:.2f} ms after it"
        assert stats.stale_starts() == 0
        assert sorted(s - 2000 for s in probe.got["panoptic"]) == [r[0] for r in records]
        # /diagnostics reports the same counts
        spinner.until(lambda: seen and _values(seen[-1])["frames_processed"] == str(stats.processed),
                      what="diagnostics counting every frame")
        values = _values(seen[-1])
        assert (values["frames_received"], values["frames_dropped"]) == (str(sent), str(stats.dropped))
        assert float(values["age_at_start_max_ms"]) == pytest.approx(max(r[1] for r in records) * 1e3, abs=1e-3)


_COUNTS = ("frames_received", "frames_processed", "frames_dropped", "frames_rejected", "frames_paused",
           "inference_errors")


def test_diagnostics_report_rates_latency_drops_and_the_device(node, probe, spinner):
    # Three frames sent one at a time (each waits for its outputs): between a report before
    # and one after them, received and processed grow by exactly 3 and nothing else moves.
    seen = _diagnostics(probe.node, NAME)
    spinner.until(lambda: seen, what="a first diagnostics message")
    before = {k: int(_values(seen[0])[k]) for k in _COUNTS}
    for seq in range(500, 503):
        probe.send(camera_image(seq))
    done = str(before["frames_processed"] + 3)
    spinner.until(lambda: any(_values(s)["frames_processed"] == done for s in seen),
                  what="a diagnostics message counting the three frames")
    status = next(s for s in seen if _values(s)["frames_processed"] == done)
    values = _values(status)
    assert {k: int(values[k]) - before[k] for k in _COUNTS} == {
        "frames_received": 3, "frames_processed": 3, "frames_dropped": 0, "frames_rejected": 0,
        "frames_paused": 0, "inference_errors": 0}
    assert status.level == DiagnosticStatus.OK and status.hardware_id == "cpu"
    # backend auto (the default) resolved on the CPU, and why
    assert (values["device"], values["backend"], values["model"]) == ("cpu", "onnxruntime", "ciae")
    assert (values["backend_requested"], values["precision"]) == ("auto", "fp32")
    assert "measured fastest" in values["backend_reason"]
    # model time is part of each frame's latency, so every percentile of it is below the
    # same percentile of the latency; percentiles grow with q
    latency = [float(values[f"latency_p{q}_ms"]) for q in (50, 90, 99)]
    model = [float(values[f"model_p{q}_ms"]) for q in (50, 90, 99)]
    assert 0 < model[0] and latency == sorted(latency) and model == sorted(model)
    assert all(m <= lat for m, lat in zip(model, latency))
    # (rates are windowed over wall time: their arithmetic is tested with a fake clock in
    # test_pipeline; here they only have to be reported)
    assert float(values["output_rate_hz"]) >= 0 and float(values["input_rate_hz"]) >= 0


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


def test_output_publishers_are_reliable_with_a_configurable_history(node, ros_context, spinner, tiny_weights):
    assert {n: p.qos_profile.depth for n, p in node.output_publishers.items() if n != "label_info"} == \
        {"panoptic": 3, "semantic": 3, "instances": 3, "overlay": 3, "detections": 3}
    with running(spinner, make_node(ros_context, tiny_weights["ciae"], name="deep_output_node",
                                    topic="/deep_output/image", **{"qos.output_depth": 8})) as (n,):
        assert n.output_publishers["panoptic"].qos_profile.depth == 8
        infos = n.get_publishers_info_by_topic("/deep_output_node/panoptic")
        assert [i.qos_profile.reliability for i in infos] == [ReliabilityPolicy.RELIABLE]
        refused = n.set_parameters([Parameter("qos.output_depth", value=2)])[0]
        assert not refused.successful and "read at configure" in refused.reason


def test_each_output_publisher_is_wrapped_for_raw_publishing_once(node, probe):
    raw = dict(node._raw_pubs)
    assert {n: r.publisher for n, r in raw.items()} == \
        {n: p for n, p in node.output_publishers.items() if n != "label_info"}
    probe.send(camera_image(700))
    probe.send(camera_image(701))
    assert all(node._raw_pubs[n] is r for n, r in raw.items())  # the same wrappers, frame after frame


def test_diagnostics_format_values_as_strings():
    header = Header(frame_id="camera")
    msg = diagnostic_array(header, name="n", hardware_id="cpu", level=DiagnosticStatus.WARN, message="m",
                           values={"rate": 2.5, "dropped": 3, "device": "cpu"})
    status = msg.status[0]
    assert msg.header == header
    assert (status.level, status.name, status.hardware_id, status.message) == (DiagnosticStatus.WARN, "n", "cpu", "m")
    assert {kv.key: kv.value for kv in status.values} == {"rate": "2.500", "dropped": "3", "device": "cpu"}
