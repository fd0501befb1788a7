"""SynthStreet bags: read back with rosbags and with the mcap readers; stamps, rate, data."""
from pathlib import Path

import cv2
import numpy as np
import pytest
import yaml
from mcap.reader import make_reader
from mcap_ros2.decoder import DecoderFactory
from rosbags.rosbag2 import Reader
from rosbags.typesys import Stores, get_typestore

from panoptic_ros.synthstreet import cli as synth_cli
from panoptic_ros.synthstreet.bag import (
    CAMERA_INFO_TOPIC, COMPRESSED_TOPIC, DEFAULT_START_NS, GT_TOPIC, IMAGE_TOPIC, BagWriteError, write_bag)
from panoptic_ros.synthstreet.scene import generate_scene

STORE = get_typestore(Stores.ROS2_JAZZY)


def _samples(n=4):
    return [generate_scene(3, i, height=64, width=128) for i in range(n)]


def _read_rosbags(path: Path) -> dict[str, list]:
    out: dict[str, list] = {}
    with Reader(path) as reader:
        for conn, t, raw in reader.messages():
            out.setdefault(conn.topic, []).append((t, STORE.deserialize_cdr(raw, conn.msgtype)))
    return out


def _stamp(msg) -> int:
    return msg.header.stamp.sec * 1_000_000_000 + msg.header.stamp.nanosec


@pytest.mark.parametrize("storage", ["mcap", "sqlite3"])
def test_raw_bag_reads_back_with_rosbags(tmp_path, storage):
    samples = _samples()
    assert write_bag(tmp_path / "bag", samples, rate_hz=20.0, storage=storage) == 4
    meta = yaml.safe_load((tmp_path / "bag" / "metadata.yaml").read_text())["rosbag2_bagfile_information"]
    assert meta["storage_identifier"] == storage and meta["message_count"] == 12
    topics = _read_rosbags(tmp_path / "bag")
    assert sorted(topics) == sorted([IMAGE_TOPIC, CAMERA_INFO_TOPIC, GT_TOPIC])
    expected = [DEFAULT_START_NS + k * 50_000_000 for k in range(4)]
    for topic, msgs in topics.items():
        assert [t for t, _ in msgs] == expected, topic
        assert [_stamp(m) for _, m in msgs] == expected, topic
        assert {m.header.frame_id for _, m in msgs} == {"camera"}
    for k, sample in enumerate(samples):
        img = topics[IMAGE_TOPIC][k][1]
        assert (img.encoding, img.height, img.width, img.step) == ("rgb8", 64, 128, 384)
        assert np.array_equal(img.data.reshape(64, 128, 3), sample.image)
        gt = topics[GT_TOPIC][k][1]
        assert (gt.encoding, gt.is_bigendian, gt.step) == ("32SC1", 0, 512)
        assert np.array_equal(gt.data.view("<i4").reshape(64, 128), sample.target.panoptic)
        info = topics[CAMERA_INFO_TOPIC][k][1]
        assert (info.height, info.width, info.distortion_model) == (64, 128, "plumb_bob")
        fx, cx, fy, cy = info.k[0], info.k[2], info.k[4], info.k[5]
        assert fx > 0 and fy > 0 and 0 < cx < 128 and 0 < cy < 64 and info.p[0] == fx


def test_compressed_mcap_bag_reads_with_mcap_ros2(tmp_path):
    samples = _samples(3)
    write_bag(tmp_path / "bag", samples, rate_hz=10.0, compressed=True)
    files = list((tmp_path / "bag").glob("*.mcap"))
    assert len(files) == 1
    seen: dict[str, list] = {}
    with open(files[0], "rb") as f:
        reader = make_reader(f, decoder_factories=[DecoderFactory()])
        for schema, channel, message, msg in reader.iter_decoded_messages():
            assert schema.encoding == "ros2msg"
            seen.setdefault(channel.topic, []).append((message.log_time, msg))
    assert sorted(seen) == sorted([COMPRESSED_TOPIC, CAMERA_INFO_TOPIC, GT_TOPIC])
    stamps = {topic: [_stamp(m) for _, m in msgs] for topic, msgs in seen.items()}
    assert stamps[COMPRESSED_TOPIC] == stamps[GT_TOPIC] == stamps[CAMERA_INFO_TOPIC]
    assert np.diff(stamps[GT_TOPIC]).tolist() == [100_000_000] * 2
    assert [t for t, _ in seen[GT_TOPIC]] == stamps[GT_TOPIC]
    for (_, msg), sample in zip(seen[COMPRESSED_TOPIC], samples):
        assert "jpeg" in msg.format
        decoded = cv2.imdecode(np.frombuffer(bytes(msg.data), np.uint8), cv2.IMREAD_COLOR)[..., ::-1]
        assert np.abs(decoded.astype(int) - sample.image).mean() < 8
    gt = seen[GT_TOPIC][1][1]
    assert np.array_equal(np.frombuffer(bytes(gt.data), "<i4").reshape(64, 128), samples[1].target.panoptic)


def test_bag_options_are_checked(tmp_path):
    with pytest.raises(BagWriteError, match="storage"):
        write_bag(tmp_path / "a", [], storage="rosbag1")
    with pytest.raises(BagWriteError, match="rate"):
        write_bag(tmp_path / "a", [], rate_hz=0.0)
    (tmp_path / "b").mkdir()
    with pytest.raises(BagWriteError, match="already exists"):
        write_bag(tmp_path / "b", [])


def test_cli_bag_frame_count_and_rate(tmp_path, capsys):
    out = tmp_path / "bag"
    assert synth_cli.main(["--out", str(out), "--format", "bag", "--count", "5", "--seed", "2", "--size", "64x128",
                           "--rate", "4", "--storage", "sqlite3", "--workers", "2"]) == 0
    assert "5 frames at 4 Hz" in capsys.readouterr().out
    topics = _read_rosbags(out)
    stamps = [t for t, _ in topics[GT_TOPIC]]
    assert len(stamps) == 5 and np.diff(stamps).tolist() == [250_000_000] * 4
    ref = generate_scene(2, 4, height=64, width=128)
    assert np.array_equal(topics[IMAGE_TOPIC][4][1].data.reshape(64, 128, 3), ref.image)
