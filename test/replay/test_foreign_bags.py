"""Bags this project did not write: laid out as ``ros2 bag record`` writes them (sqlite3 and
mcap, recorded QoS metadata, unrelated /tf, no ground truth) and with the camera encodings
drivers publish (JPEG CompressedImage, bgr8, mono8, Bayer)."""
from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
from replay_helpers import STORE, camera_message, read_bag, scenes, write_recorded_bag

from panoptic_ros.replay.bag import BagError, BagSource, cdr_stamp, select_topics
from panoptic_ros.replay.evaluate import coco_image_id
from panoptic_ros.replay.messages import decode_camera
from panoptic_ros.replay.run import ReplayOptions, replay

FRAMES = [s.image for s in scenes(3)]


def _replay(bag, out, weights, **options):
    return replay(ReplayOptions(bag=bag, mode="offline", model="ciae", weights=weights, out=out, device="cpu",
                                progress=False, samples=1, **options))


def test_a_recorded_compressed_bag_replays_without_ground_truth(tmp_path, tiny):
    # mcap here; test_live replays the same layout in sqlite3 storage through the node
    stamps = write_recorded_bag(tmp_path / "rec", FRAMES, storage="mcap")
    report = _replay(tmp_path / "rec", tmp_path / "out", tiny["ciae"])
    assert report["image_topic"] == "/camera/image_raw/compressed"
    assert report["image_type"] == "sensor_msgs/msg/CompressedImage"
    assert report["gt_topic"] is None and report["evaluation"] is None
    # predictions are still exported in COCO format, named by stamp, to score against one's own labels
    pred = json.loads(Path(report["coco"]["pred_json"]).read_text())
    assert sorted(report["coco"]) == ["pred_folder", "pred_json"]
    assert [a["image_id"] for a in pred["annotations"]] == [coco_image_id(s) for s in stamps]
    assert report["figures"]["frames_out"] == 3 and report["errors"] == []
    outputs = read_bag(tmp_path / "out" / "bag")["/panoptic_node/panoptic"]
    assert [stamp for _, stamp, _ in outputs] == stamps
    assert [log for log, _, _ in outputs] == [s + 3_000_000 for s in stamps]  # the input's log times
    assert "no ground-truth topic" in (tmp_path / "out" / "report.html").read_text()


def test_topic_detection_ignores_other_topics_and_asks_when_it_cannot_choose(tmp_path):
    write_recorded_bag(tmp_path / "two", FRAMES[:1], extra_camera_topic="/camera/image_raw")
    with BagSource(tmp_path / "two") as source:
        assert set(source.topics) == {"/camera/image_raw/compressed", "/tf", "/camera/image_raw"}
        with pytest.raises(BagError, match="several camera topics .*--image-topic"):
            select_topics(source)
        chosen = select_topics(source, image_topic="/camera/image_raw")
        assert (chosen.image.name, chosen.image.encoding, chosen.gt) == ("/camera/image_raw", "rgb8", None)
        with pytest.raises(BagError, match="/tf .* is not a camera topic"):
            select_topics(source, image_topic="/tf")
        with pytest.raises(BagError, match="--gt-topic /nope is not in the bag"):
            select_topics(source, image_topic="/camera/image_raw", gt_topic="/nope")


@pytest.mark.parametrize("storage", ["sqlite3", "mcap"])
def test_recorded_bags_of_either_storage_list_their_topics(tmp_path, storage):
    stamps = write_recorded_bag(tmp_path / "rec", FRAMES, storage=storage)
    with BagSource(tmp_path / "rec") as source:
        assert {t.name: (t.msgtype, t.count, t.encoding) for t in source.topics.values()} == {
            "/camera/image_raw/compressed": ("sensor_msgs/msg/CompressedImage", 3, "jpeg"),
            "/tf": ("tf2_msgs/msg/TFMessage", 6, None)}
        assert [cdr_stamp(m.data) for m in source.messages(["/camera/image_raw/compressed"])] == stamps


def test_bag_paths_a_folder_without_metadata_and_a_bare_mcap_file(tmp_path):
    write_recorded_bag(tmp_path / "rec", FRAMES[:2])
    (tmp_path / "rec" / "metadata.yaml").unlink()
    mcap_file = next((tmp_path / "rec").glob("*.mcap"))
    for path in (tmp_path / "rec", mcap_file):
        with BagSource(path) as source:
            assert source.file == mcap_file and source.damage is None
            assert len(list(source.messages(["/camera/image_raw/compressed"]))) == 2
    (tmp_path / "empty").mkdir()
    with pytest.raises(BagError, match="holds no .mcap or .db3"):
        BagSource(tmp_path / "empty")
    (tmp_path / "junk.mcap").write_bytes(b"not an mcap file at all")
    with pytest.raises(BagError, match="junk.mcap: damaged or truncated mcap with no complete channel record"):
        BagSource(tmp_path / "junk.mcap")


def _data(msg) -> bytes:
    return bytes(STORE.serialize_cdr(msg, msg.__msgtype__))


def test_camera_encodings_decode_to_the_picture():
    rgb = FRAMES[0]
    assert np.array_equal(decode_camera(_data(camera_message(rgb, "bgr8", 5)), "sensor_msgs/msg/Image")[0], rgb)
    grey = decode_camera(_data(camera_message(rgb, "mono8", 5)), "sensor_msgs/msg/Image")[0]
    assert np.array_equal(grey, cv2.cvtColor(cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY), cv2.COLOR_GRAY2RGB))
    flat = np.zeros((16, 16, 3), np.uint8)
    flat[:] = (200, 100, 30)
    demosaiced, header = decode_camera(_data(camera_message(flat, "bayer_rggb8", 1_000_000_007)),
                                       "sensor_msgs/msg/Image")
    assert tuple(demosaiced[8, 8]) == (200, 100, 30)  # an rggb mosaic of a flat colour gives it back
    assert (header.stamp.sec, header.stamp.nanosec) == (1, 7)
    jpeg, _ = decode_camera(_data(camera_message(rgb, "jpeg", 5)), "sensor_msgs/msg/CompressedImage")
    assert jpeg.shape == rgb.shape and np.abs(jpeg.astype(int) - rgb).mean() < 12


@pytest.mark.parametrize("encoding", ["bgr8", "mono8", "bayer_rggb8", "rgb8"])
def test_raw_camera_encodings_are_detected_as_the_camera_topic(tmp_path, encoding):
    write_recorded_bag(tmp_path / "rec", FRAMES[:1], encoding=encoding, topic="/camera/image_raw")
    with BagSource(tmp_path / "rec") as source:
        assert select_topics(source).image.encoding == encoding


def test_a_bayer_bag_replays(tmp_path, tiny):
    stamps = write_recorded_bag(tmp_path / "rec", FRAMES[:2], encoding="bayer_rggb8", topic="/camera/image_raw")
    report = _replay(tmp_path / "rec", tmp_path / "out", tiny["ciae"])
    assert report["image_topic"] == "/camera/image_raw" and report["figures"]["frames_out"] == 2
    assert [s for _, s, _ in read_bag(tmp_path / "out" / "bag")["/panoptic_node/overlay"]] == stamps


def test_cdr_stamp_reads_either_byte_order():
    little = bytes([0, 1, 0, 0]) + (12).to_bytes(4, "little") + (345).to_bytes(4, "little")
    big = bytes([0, 0, 0, 0]) + (12).to_bytes(4, "big") + (345).to_bytes(4, "big")
    assert cdr_stamp(little) == cdr_stamp(big) == 12_000_000_345
    with pytest.raises(BagError, match="too short"):
        cdr_stamp(b"\x00\x01\x00\x00")
