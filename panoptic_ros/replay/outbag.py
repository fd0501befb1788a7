"""The replay's output bag: the node's outputs as a rosbag2 mcap folder any ROS tool plays.

Messages arrive serialized (CDR bytes as received over DDS, or as rclpy serialized them)
and are written unchanged. The mcap file carries each type's full message definition, so
``ros2 bag play``, Foxglove and the ``mcap`` readers decode it without our packages;
``vision_msgs`` definitions are taken from the installed interface package (or this
repository's copy of it) and registered with ``rosbags``. Chunks are zstd-compressed
(label images shrink ~50x). Every output is logged at the log time of the input frame it
belongs to, so the output bag lines up with the input bag on one timeline.
"""
from __future__ import annotations

import shutil
from pathlib import Path

from rosbags.interfaces import Qos, QosDurability, QosHistory, QosLiveliness, QosReliability, QosTime
from rosbags.rosbag2 import CompressionFormat, CompressionMode, StoragePlugin, Writer
from rosbags.typesys import Stores, get_types_from_msg, get_typestore
from rosbags.typesys.store import Typestore

from panoptic_ros.resources import REPOSITORY_ROOT

_INFINITE = QosTime(sec=9223372036, nsec=854775807)


def output_qos(*, latched: bool = False) -> Qos:
    """The node's output QoS (reliable, keep last 1; ``latched``: transient local)."""
    return Qos(history=QosHistory.KEEP_LAST, depth=1, reliability=QosReliability.RELIABLE,
               durability=QosDurability.TRANSIENT_LOCAL if latched else QosDurability.VOLATILE,
               deadline=_INFINITE, lifespan=_INFINITE, liveliness=QosLiveliness.AUTOMATIC,
               liveliness_lease_duration=_INFINITE, avoid_ros_namespace_conventions=False)


def vision_msgs_dir() -> Path:
    """Folder of the ``vision_msgs`` ``.msg`` files: the installed package's, else ours."""
    try:
        from ament_index_python.packages import get_package_share_directory

        installed = Path(get_package_share_directory("vision_msgs")) / "msg"
        if installed.is_dir():
            return installed
    except Exception:  # not installed, or no ament index at all: use the repository copy
        pass
    return REPOSITORY_ROOT / "interfaces" / "vision_msgs" / "msg"


def replay_typestore() -> Typestore:
    """The ROS 2 Jazzy type store plus ``vision_msgs``."""
    store = get_typestore(Stores.ROS2_JAZZY)
    folder = vision_msgs_dir()
    types = {}
    for path in sorted(folder.glob("*.msg")):
        types.update(get_types_from_msg(path.read_text(), f"vision_msgs/msg/{path.stem}"))
    if not types:
        raise FileNotFoundError(f"{folder}: no vision_msgs .msg files to describe the detections topic")
    store.register(types)
    return store


class OutputBag:
    """A new mcap bag with a fixed set of topics; use as a context manager.

    Args:
        path: the bag folder to create (replaced if ``overwrite``).
        topics: topic -> message type (``pkg/msg/Type``).
        latched: topics recorded with transient-local QoS (e.g. ``~/label_info``).
        overwrite: remove an existing bag at ``path`` first.
    Raises:
        FileExistsError: ``path`` exists and ``overwrite`` is False.
    """

    def __init__(self, path: str | Path, topics: dict[str, str], *, latched: tuple[str, ...] = (),
                 overwrite: bool = False):
        self.path = Path(path)
        if self.path.exists():
            if not overwrite:
                raise FileExistsError(f"{self.path}: already exists (use another --out or --force)")
            shutil.rmtree(self.path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        store = replay_typestore()
        self._writer = Writer(self.path, version=Writer.VERSION_LATEST, storage_plugin=StoragePlugin.MCAP)
        self._writer.set_compression(CompressionMode.STORAGE, CompressionFormat.ZSTD)
        self._writer.open()
        self._connections = {
            topic: self._writer.add_connection(topic, msgtype, typestore=store,
                                               offered_qos_profiles=[output_qos(latched=topic in latched)])
            for topic, msgtype in topics.items()}
        self.counts = {topic: 0 for topic in topics}
        self.closed = False

    def __enter__(self) -> "OutputBag":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def write(self, topic: str, log_ns: int, data: bytes) -> None:
        """Append one serialized message of ``topic`` logged at ``log_ns``."""
        self._writer.write(self._connections[topic], log_ns, data)
        self.counts[topic] += 1

    def close(self) -> None:
        """Finish the file and write ``metadata.yaml`` (idempotent)."""
        if not self.closed:
            self.closed = True
            self._writer.close()
