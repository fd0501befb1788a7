"""Live replay through the real node over DDS: a node started by the replay, a running node
it connects to, frame accounting, scores, and Ctrl-C."""
from __future__ import annotations

import pytest
import rclpy
from replay_helpers import read_bag, read_mcap, scenes, write_recorded_bag

from panoptic_ros.eval.cli import evaluate_coco_panoptic
from panoptic_ros.replay.nodeproc import NodeError, NodeProcess, NodeSpec
from panoptic_ros.replay.run import ReplayOptions, replay

pytestmark = pytest.mark.ros
OUTPUTS = ("panoptic", "semantic", "overlay", "detections")
TARGET = "replay_test_node"


@pytest.fixture(scope="module")
def running_node(tmp_path_factory, tiny):
    """A node started the way a user starts one, listening on /replay_test/image."""
    spec = NodeSpec(model="ciae", weights=tiny["ciae"], name=TARGET, input_topic="/replay_test/image",
                    device="cpu", num_threads=1, input_qos="best_effort")  # the node's default QoS
    node = NodeProcess(spec, tmp_path_factory.mktemp("running_node") / "node.log")
    yield node
    assert node.stop() == 0, node.log_tail()


def _options(bag, out, **kw):
    return ReplayOptions(bag=bag, mode="live", out=out, device="cpu", num_threads=1, progress=False, **kw)


def test_connected_as_fast_as_possible_every_frame_is_answered_and_scored(running_node, scored_bag, tmp_path):
    report = replay(_options(scored_bag, tmp_path / "r", connect=f"/{TARGET}", as_fast_as_possible=True))
    f, run = report["figures"], report["run"]
    assert run["input_topic"] == "/replay_test/image" and run["model"] == "ciae"
    assert run["input_reliability"] == "best_effort"  # a running node keeps its own (default) QoS
    assert f["frames_sent"] == 6 and f["frames_out"] + f["dropped"] == 6 and f["frames_out"] >= 1
    node = run["node_figures"]
    assert node["frames_processed"] == f["frames_out"] and node["frames_received"] <= 6
    assert f["model_ms"]["p50"] > 0 and 0 < f["latency_ms"]["p50"] <= f["latency_ms"]["p99"]
    topics, decoded = read_bag(tmp_path / "r" / "bag"), read_mcap(tmp_path / "r" / "bag")
    for name in OUTPUTS:
        assert len(topics[f"/{TARGET}/{name}"]) == len(decoded[f"/{TARGET}/{name}"]) == f["frames_out"], name
    ev, coco = report["evaluation"], report["coco"]
    assert ev["frames_evaluated"] == f["frames_out"]
    official = evaluate_coco_panoptic(coco["gt_json"], coco["gt_folder"], coco["pred_json"],
                                      coco["pred_folder"]).summarize()
    for group in ("All", "Things", "Stuff"):
        assert ev["pq"][group] == pytest.approx(official[group], abs=1e-12)


def test_started_node_at_the_recorded_rate_counts_drops_honestly(tmp_path, tiny):
    stamps = write_recorded_bag(tmp_path / "rec", [s.image for s in scenes(8)], storage="sqlite3", rate_hz=30.0)
    report = replay(_options(tmp_path / "rec", tmp_path / "r", model="ciae", weights=tiny["ciae"],
                             node_name="replay_spawned"))
    f, run = report["figures"], report["run"]
    assert run["input_type"] == "sensor_msgs/msg/CompressedImage" and run["node_exit_code"] == 0
    assert f["frames_sent"] == 8 and f["frames_out"] + f["dropped"] == 8 and f["frames_out"] >= 1
    node = run["node_figures"]
    # what the node received it processed, dropped in its one-frame slot or rejected
    assert node["frames_received"] == node["frames_processed"] + node["frames_dropped"] + node["frames_rejected"]
    assert node["frames_processed"] == f["frames_out"]
    assert sum(run["drops"].values()) == f["dropped"]  # every dropped frame accounted for
    # the started node listens reliably: frames are only ever replaced in its slot, never lost before it
    assert run["input_reliability"] == "reliable" and run["drops"]["lost_before_node"] == 0
    outputs = read_bag(tmp_path / "r" / "bag")["/replay_spawned/panoptic"]
    assert {s for _, s, _ in outputs} <= set(stamps) and len(outputs) == f["frames_out"]
    assert report["evaluation"] is None and "loaded ciae" in (tmp_path / "r" / "node.log").read_text()


def test_ctrl_c_closes_the_bag_and_writes_the_report(running_node, scored_bag, tmp_path):
    out = tmp_path / "r"

    def ctrl_c_after_the_first_frame(frames: int) -> None:
        if frames == 1:
            raise KeyboardInterrupt  # what Ctrl-C raises in the replay's main thread

    report = replay(_options(scored_bag, out, connect=f"/{TARGET}", on_frame=ctrl_c_after_the_first_frame))
    assert report["interrupted"] and report["figures"]["frames_sent"] == 1
    assert (out / "bag" / "metadata.yaml").is_file() and (out / "report.html").is_file()
    assert "interrupted" in (out / "report.html").read_text()
    assert read_bag(out / "bag")["/replay_test_node/label_info"]  # the bag was closed and reads back


def _enable(enabled: bool) -> None:
    from std_srvs.srv import SetBool

    context = rclpy.context.Context()
    rclpy.init(context=context)
    try:
        node = rclpy.create_node("replay_test_enabler", context=context)
        client = node.create_client(SetBool, f"/{TARGET}/enable")
        assert client.wait_for_service(timeout_sec=60)
        future = client.call_async(SetBool.Request(data=enabled))
        executor = rclpy.executors.SingleThreadedExecutor(context=context)
        executor.add_node(node)
        executor.spin_until_future_complete(future, timeout_sec=60)
        assert future.result().success
        executor.shutdown()
        node.destroy_node()
    finally:
        rclpy.try_shutdown(context=context)


def test_connecting_to_a_paused_node_fails_at_once_with_the_reason(running_node, scored_bag, tmp_path):
    _enable(False)
    try:
        with pytest.raises(NodeError, match=f"/{TARGET} is paused .*~/enable"):
            replay(_options(scored_bag, tmp_path / "r", connect=f"/{TARGET}", startup_timeout=60))
    finally:
        _enable(True)
