"""Multi-camera replay: a bag of three cameras written with rosbags directly (not the
project's writer; raw rgb8, raw bgr8 and JPEG cameras, each with ground truth in its
namespace) replays through one model offline and through one node live, scored per
camera and overall."""
from __future__ import annotations

import json

import numpy as np
import pytest
from rosbags.rosbag2 import StoragePlugin, Writer

from panoptic_ros.replay.bag import BagSource
from panoptic_ros.replay.multicamera import camera_namespace, replay_cameras
from panoptic_ros.replay.run import ReplayOptions, replay
from replay_helpers import RECORDED_QOS, START_NS, STORE, _header, camera_message, read_bag, scored_samples

# camera -> (image topic, encoding, ground-truth topic)
RIG = {"front": ("/rig/front/image_raw", "rgb8", "/rig/front/panoptic_gt"),
       "left": ("/rig/left/image_color", "bgr8", "/rig/left/gt_panoptic"),
       "right": ("/rig/right/image_raw/compressed", "jpeg", "/rig/right/panoptic_gt")}
FRAMES = 4


def _gt_message(panoptic: np.ndarray, stamp: int, frame_id: str):
    data = np.ascontiguousarray(panoptic.astype("<i4")).view(np.uint8).reshape(-1)
    return STORE.types["sensor_msgs/msg/Image"](header=_header(stamp, frame_id), height=panoptic.shape[0],
                                                width=panoptic.shape[1], encoding="32SC1", is_bigendian=0,
                                                step=panoptic.shape[1] * 4, data=data)


@pytest.fixture(scope="module")
def rig_bag(tmp_path_factory, tiny):
    """Each camera its own frames (camera c: scenes c, c + 3, ...), logged a few ms apart
    as a recording of a real rig is; sqlite3 storage."""
    samples = scored_samples(tiny["ciae"], FRAMES * len(RIG))
    path = tmp_path_factory.mktemp("rig") / "rig_bag"
    with Writer(path, version=Writer.VERSION_LATEST, storage_plugin=StoragePlugin.SQLITE3) as writer:
        conns = {}
        for name, (topic, encoding, gt) in RIG.items():
            msgtype = "sensor_msgs/msg/CompressedImage" if encoding == "jpeg" else "sensor_msgs/msg/Image"
            conns[name] = (writer.add_connection(topic, msgtype, typestore=STORE, offered_qos_profiles=[RECORDED_QOS]),
                           writer.add_connection(gt, "sensor_msgs/msg/Image", typestore=STORE,
                                                 offered_qos_profiles=[RECORDED_QOS]))
        for k in range(FRAMES):
            stamp = START_NS + k * 100_000_000
            for c, (name, (_, encoding, _)) in enumerate(RIG.items()):
                sample = samples[k * len(RIG) + c]
                image = camera_message(sample.image, encoding, stamp)
                image.header.frame_id = name
                log = stamp + (c + 1) * 2_000_000
                writer.write(conns[name][0], log, bytes(STORE.serialize_cdr(image, image.__msgtype__)))
                gt = _gt_message(sample.target.panoptic, stamp, name)
                writer.write(conns[name][1], log + 1_000_000, bytes(STORE.serialize_cdr(gt, gt.__msgtype__)))
    return path


def test_cameras_are_named_by_namespace_and_paired_with_their_ground_truth(rig_bag):
    assert camera_namespace("/rig/right/image_raw/compressed") == "/rig/right"
    with BagSource(rig_bag) as source:
        cameras = {c.name: (c.topics.image.name, c.topics.gt.name) for c in replay_cameras(source)}
    assert cameras == {name: (topic, gt) for name, (topic, _, gt) in RIG.items()}


def _check_report(report, out):
    assert set(report["cameras"]) == set(RIG)
    evaluated = 0
    for name, camera in report["cameras"].items():
        assert camera["figures"]["frames_out"] == FRAMES, name
        pq = camera["evaluation"]["pq"]["All"]["pq"]
        assert 0.0 < pq < 1.0, name   # ground truth is half the model's own prediction
        evaluated += camera["evaluation"]["frames_evaluated"]
    overall = report["overall"]
    assert overall["frames_out"] == FRAMES * len(RIG)
    assert overall["evaluation"]["frames_evaluated"] == evaluated == FRAMES * len(RIG)
    assert json.loads((out / "report.json").read_text())["overall"]["frames_out"] == FRAMES * len(RIG)
    recorded = read_bag(out / "bag")
    for name, (_, _, _) in RIG.items():
        frames = recorded[f"/panoptic_node/{name}/panoptic"]
        assert [msg.header.frame_id for _, _, msg in frames] == [name] * FRAMES   # each its own header
    return {name: c["evaluation"]["pq"]["All"]["pq"] for name, c in report["cameras"].items()}


def test_offline_replay_runs_every_camera_in_batches_and_scores_each(rig_bag, tiny, tmp_path):
    report = replay(ReplayOptions(bag=rig_bag, mode="offline", model="ciae", weights=tiny["ciae"],
                                  out=tmp_path / "offline", device="cpu", num_threads=1, progress=False))
    _check_report(report, tmp_path / "offline")
    assert report["errors"] == [] and not report["interrupted"]


@pytest.mark.ros
def test_live_replay_runs_every_camera_through_one_node(rig_bag, tiny, tmp_path):
    live = replay(ReplayOptions(bag=rig_bag, mode="live", model="ciae", weights=tiny["ciae"], out=tmp_path / "live",
                                device="cpu", num_threads=1, as_fast_as_possible=True, progress=False))
    scores = _check_report(live, tmp_path / "live")
    assert live["run"]["mode"] == "live" and live["run"]["drops"]["lost_before_node"] == 0
    offline = replay(ReplayOptions(bag=rig_bag, mode="offline", model="ciae", weights=tiny["ciae"],
                                   out=tmp_path / "offline", device="cpu", num_threads=1, progress=False))
    # the same model on the same frames: batches of other sizes change float rounding only
    assert scores == pytest.approx({n: c["evaluation"]["pq"]["All"]["pq"] for n, c in offline["cameras"].items()},
                                   abs=0.02)
