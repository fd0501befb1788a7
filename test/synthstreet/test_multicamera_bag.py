"""``panoptic-synth --format bag --cameras N``: one scene stream and ground truth per camera."""
from __future__ import annotations

import numpy as np
import pytest
from rosbags.rosbag2 import Reader
from rosbags.typesys import Stores, get_typestore

from panoptic_ros.synthstreet import cli as synth_cli
from panoptic_ros.synthstreet.bag import BagWriteError, camera_names
from panoptic_ros.synthstreet.scene import generate_scene

STORE = get_typestore(Stores.ROS2_JAZZY)


def _read(path) -> dict[str, list]:
    out: dict[str, list] = {}
    with Reader(path) as reader:
        for conn, log_ns, raw in reader.messages():
            out.setdefault(conn.topic, []).append((log_ns, STORE.deserialize_cdr(raw, conn.msgtype)))
    return out


def test_three_cameras_have_their_own_streams_ground_truth_and_headers(tmp_path, capsys):
    out = tmp_path / "rig"
    assert synth_cli.main(["--out", str(out), "--format", "bag", "--count", "2", "--seed", "3", "--size", "64x128",
                           "--cameras", "3", "--start-index", "10"]) == 0
    assert "cameras front, left, right" in capsys.readouterr().out
    topics = _read(out)
    assert set(topics) == {f"/{c}/{t}" for c in ("front", "left", "right")
                           for t in ("image_raw", "camera_info", "panoptic_gt")}
    for c, camera in enumerate(("front", "left", "right")):
        images, truths = topics[f"/{camera}/image_raw"], topics[f"/{camera}/panoptic_gt"]
        assert len(images) == len(truths) == 2
        for k, ((log_ns, image), (_, gt)) in enumerate(zip(images, truths)):
            scene = generate_scene(3, 10 + 3 * k + c, height=64, width=128)   # camera c of 3: scene 3k + c
            assert np.array_equal(image.data.reshape(64, 128, 3), scene.image)
            assert np.array_equal(gt.data.view("<i4").reshape(64, 128), scene.target.panoptic)
            assert image.header.frame_id == gt.header.frame_id == camera
            assert log_ns == images[k][0] == topics["/front/image_raw"][k][0]   # one stamp per time step
    assert not np.array_equal(topics["/front/image_raw"][0][1].data, topics["/left/image_raw"][0][1].data)


def test_camera_count_is_checked():
    assert camera_names(2) == ("front", "left")
    with pytest.raises(BagWriteError, match="1 to 8"):
        camera_names(9)
