"""Helpers for the replay tests: bags with known ground truth, bags written the way
``ros2 bag record`` writes them, and readers of the output bag."""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
from rosbags.interfaces import Qos, QosDurability, QosHistory, QosLiveliness, QosReliability, QosTime
from rosbags.rosbag2 import Reader, StoragePlugin, Writer
from rosbags.typesys import Stores, get_typestore

from panoptic_ros.inference.predictor import Predictor
from panoptic_ros.labels import CITYSCAPES
from panoptic_ros.replay.bag import cdr_stamp
from panoptic_ros.replay.outbag import replay_typestore
from panoptic_ros.sample import Sample
from panoptic_ros.synthstreet.scene import generate_scene
from panoptic_ros.types import PanopticResult

START_NS = 1_650_000_000_123_000_000
STORE = get_typestore(Stores.ROS2_JAZZY)
_INFINITE = QosTime(sec=2147483647, nsec=4294967295)
# What `ros2 bag record` stores for a default (reliable, volatile) publisher on Jazzy.
RECORDED_QOS = Qos(history=QosHistory.UNKNOWN, depth=0, reliability=QosReliability.RELIABLE,
                   durability=QosDurability.VOLATILE, deadline=_INFINITE, lifespan=_INFINITE,
                   liveliness=QosLiveliness.AUTOMATIC, liveliness_lease_duration=_INFINITE,
                   avoid_ros_namespace_conventions=False)


def scenes(count: int, height: int = 64, width: int = 128, seed: int = 5) -> list[Sample]:
    return [generate_scene(seed, i, height=height, width=width) for i in range(count)]


def scored_samples(weights: Path, count: int) -> list[Sample]:
    """SynthStreet frames whose ground truth is the model's own prediction on even frames
    and the true scene on odd ones: the model's PQ then lies strictly between 0 and 1."""
    predictor = Predictor.from_checkpoint(weights, device="cpu")
    out = []
    for i, sample in enumerate(scenes(count)):
        target = sample.target
        if i % 2 == 0:
            target = PanopticResult.from_panoptic_map(predictor.predict(sample.image).panoptic, CITYSCAPES)
        out.append(Sample(sample.image, target, sample.image_id))
    predictor.close()
    return out


def _header(stamp_ns: int, frame_id: str = "camera"):
    types = STORE.types
    stamp = types["builtin_interfaces/msg/Time"](sec=stamp_ns // 1_000_000_000, nanosec=stamp_ns % 1_000_000_000)
    return types["std_msgs/msg/Header"](stamp=stamp, frame_id=frame_id)


def camera_message(rgb: np.ndarray, encoding: str, stamp_ns: int):
    """A rosbags camera message: ``jpeg`` (CompressedImage) or an Image encoding."""
    types = STORE.types
    header = _header(stamp_ns)
    if encoding == "jpeg":
        ok, data = cv2.imencode(".jpg", rgb[..., ::-1])
        assert ok
        return types["sensor_msgs/msg/CompressedImage"](header=header, format="jpeg", data=data.reshape(-1))
    if encoding == "bgr8":
        pixels = rgb[..., ::-1]
    elif encoding == "mono8":
        pixels = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
    elif encoding == "bayer_rggb8":
        pixels = np.zeros(rgb.shape[:2], np.uint8)
        for dy, dx, channel in ((0, 0, 0), (0, 1, 1), (1, 0, 1), (1, 1, 2)):
            pixels[dy::2, dx::2] = rgb[dy::2, dx::2, channel]
    else:
        pixels = rgb
    data = np.ascontiguousarray(pixels).reshape(-1)
    return types["sensor_msgs/msg/Image"](header=header, height=rgb.shape[0], width=rgb.shape[1], encoding=encoding,
                                          is_bigendian=0, step=data.size // rgb.shape[0], data=data)


def tf_message(stamp_ns: int):
    types = STORE.types
    vector = types["geometry_msgs/msg/Vector3"](x=1.0, y=0.0, z=0.5)
    rotation = types["geometry_msgs/msg/Quaternion"](x=0.0, y=0.0, z=0.0, w=1.0)
    transform = types["geometry_msgs/msg/TransformStamped"](
        header=_header(stamp_ns, "base_link"), child_frame_id="camera",
        transform=types["geometry_msgs/msg/Transform"](translation=vector, rotation=rotation))
    return types["tf2_msgs/msg/TFMessage"](transforms=[transform])


def write_recorded_bag(path: Path, frames: list[np.ndarray], *, storage: str = "mcap", encoding: str = "jpeg",
                       topic: str = "/camera/image_raw/compressed", rate_hz: float = 15.0,
                       extra_camera_topic: str | None = None) -> list[int]:
    """A bag laid out as ``ros2 bag record`` writes one: camera frames, /tf at twice the
    rate, recorded QoS metadata, no ground truth. Log times trail the stamps by 3 ms (the
    transport delay of a real recording). Returns the frames' stamps."""
    plugin = {"mcap": StoragePlugin.MCAP, "sqlite3": StoragePlugin.SQLITE3}[storage]
    stamps = []
    with Writer(path, version=Writer.VERSION_LATEST, storage_plugin=plugin) as writer:
        first = camera_message(frames[0], encoding, 0)
        conn = writer.add_connection(topic, first.__msgtype__, typestore=STORE, offered_qos_profiles=[RECORDED_QOS])
        tf = writer.add_connection("/tf", "tf2_msgs/msg/TFMessage", typestore=STORE,
                                   offered_qos_profiles=[RECORDED_QOS])
        extra = (writer.add_connection(extra_camera_topic, "sensor_msgs/msg/Image", typestore=STORE,
                                       offered_qos_profiles=[RECORDED_QOS]) if extra_camera_topic else None)
        for k, rgb in enumerate(frames):
            stamp = START_NS + round(k * 1e9 / rate_hz)
            stamps.append(stamp)
            for half in (0, 1):
                t = stamp + half * round(0.5e9 / rate_hz)
                writer.write(tf, t + 1_000_000, bytes(STORE.serialize_cdr(tf_message(t), "tf2_msgs/msg/TFMessage")))
            msg = camera_message(rgb, encoding, stamp)
            writer.write(conn, stamp + 3_000_000, bytes(STORE.serialize_cdr(msg, msg.__msgtype__)))
            if extra is not None:
                side = camera_message(rgb, "rgb8", stamp)
                writer.write(extra, stamp + 3_000_000, bytes(STORE.serialize_cdr(side, side.__msgtype__)))
    return stamps


def read_bag(path: Path) -> dict[str, list[tuple[int, int, object]]]:
    """topic -> [(log time, header stamp, rosbags message)] of a bag (vision_msgs known)."""
    store = replay_typestore()
    out: dict[str, list] = {}
    with Reader(path) as reader:
        for conn, log_ns, raw in reader.messages():
            msg = store.deserialize_cdr(raw, conn.msgtype)
            stamp = cdr_stamp(bytes(raw)) if hasattr(msg, "header") else None
            out.setdefault(conn.topic, []).append((log_ns, stamp, msg))
    return out


def read_mcap(bag: Path) -> dict[str, list]:
    """topic -> decoded messages of a bag's mcap file, read with ``mcap`` + ``mcap_ros2``
    (the message definitions come from the file alone)."""
    from mcap.reader import make_reader
    from mcap_ros2.decoder import DecoderFactory

    out: dict[str, list] = {}
    with open(next(Path(bag).glob("*.mcap")), "rb") as stream:
        for _, channel, _, decoded in make_reader(stream, decoder_factories=[DecoderFactory()]).iter_decoded_messages():
            out.setdefault(channel.topic, []).append(decoded)
    return out
