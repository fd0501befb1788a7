"""Reading ROS 2 bags for replay: open, find the camera and ground-truth topics, iterate raw
messages in log-time order.

``rosbags`` reads rosbag2 folders (mcap or sqlite3) and bare ``.mcap`` files without a ROS
installation. A damaged bag must still give the results up to the damage:

- an mcap file without its summary (cut off, or its recorder was killed) cannot be
  opened by ``rosbags``; it is *salvaged* with the ``mcap`` stream reader, which reads the
  records front to back until the first incomplete one;
- a sqlite3 file that is shorter than its header says (cut off) cannot be opened by SQLite
  at all; it is salvaged from a private copy (:mod:`.sqlite_salvage`): every message whose
  pages survived is read, in log-time order;
- a read error in the middle (a corrupt chunk, a malformed sqlite page) ends the iteration
  at the last good message.

Either way :attr:`BagSource.damage` holds a message naming the file, and the caller reports
it after writing what it has. Messages stay serialized (CDR bytes); the header stamp is
read straight from the bytes (:func:`cdr_stamp`), so nothing is deserialized twice.
"""
from __future__ import annotations

import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator

from rosbags.rosbag2 import Reader
from rosbags.typesys import Stores, get_typestore

from panoptic_ros.replay.sqlite_salvage import SqliteSalvage, SqliteSalvageError
from panoptic_ros.serialized.image import COMPRESSED_TYPE, IMAGE_TYPE, PICTURE_ENCODINGS

GT_ENCODING = "32SC1"
BAG_FILE_SUFFIXES = (".mcap", ".db3")
"""Storage files of a bag (a bag is one of them, or a folder holding them)."""


class BagError(ValueError):
    """A bag that cannot be replayed as asked; the message names the file or topic."""


@dataclass(frozen=True)
class TopicInfo:
    """One topic of a bag.

    Attributes:
        name: topic name.
        msgtype: ``pkg/msg/Type``.
        count: messages in the bag (None when unknown, e.g. a salvaged file).
        encoding: Image encoding or CompressedImage format of the first message (None for
            other types or an empty topic).
    """

    name: str
    msgtype: str
    count: int | None
    encoding: str | None = None


@dataclass(frozen=True)
class RawMessage:
    """One serialized message: topic, log time (ns since the epoch) and CDR bytes."""

    topic: str
    log_ns: int
    data: bytes


def cdr_stamp(data: bytes) -> int:
    """Header stamp in ns of a CDR message whose first field is a ``std_msgs/Header``.

    The 4-byte encapsulation header says the byte order (low bit set: little endian);
    ``stamp.sec`` (int32) and ``stamp.nanosec`` (uint32) follow it.
    """
    if len(data) < 12:
        raise BagError(f"message of {len(data)} bytes is too short to hold a header stamp")
    sec, nanosec = struct.unpack_from("<iI" if data[1] & 1 else ">iI", data, 4)
    return sec * 1_000_000_000 + nanosec


def stamp_text(stamp_ns: int) -> str:
    """``sec.nanosec`` as ROS tools print stamps."""
    return f"{stamp_ns // 1_000_000_000}.{stamp_ns % 1_000_000_000:09d}"


class BagSource:
    """A bag opened for reading; use as a context manager.

    Args:
        path: a rosbag2 folder (with ``metadata.yaml``), a folder holding one ``.mcap``
            file, or an ``.mcap`` file.
    Raises:
        BagError: the path is not a readable bag.
    """

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.damage: str | None = None
        self._store = get_typestore(Stores.ROS2_JAZZY)
        self._reader: Reader | None = None
        self._salvage: _McapSalvage | SqliteSalvage | None = None
        self.file = _bag_file(self.path)
        try:
            self._reader = Reader(self.path if (self.path / "metadata.yaml").is_file() else self.file)
            self._reader.open()
        except Exception as exc:  # rosbags raises several types for unreadable files
            self._reader = None
            self._salvage_after(exc)
        self.topics = self._topic_infos()

    def _salvage_after(self, exc: Exception) -> None:
        """Read what is left of a file ``rosbags`` cannot open, or raise ``BagError``."""
        metadata = self.path / "metadata.yaml"
        if metadata.is_file() and _unusable_metadata(metadata):
            if self.file.suffix != ".mcap":  # rosbags reads sqlite3 only through metadata.yaml
                raise BagError(f"{metadata}: {_unusable_metadata(metadata)}; the bag cannot be opened") from None
            try:  # an mcap file holds its own index: read it without the metadata
                self._reader = Reader(self.file)
                self._reader.open()
            except Exception:  # noqa: BLE001 - the file is damaged too: salvage it below
                self._reader = None
            else:
                self.damage = f"{metadata}: {_unusable_metadata(metadata)}; read {self.file} without it"
                return
        if self.file.suffix == ".mcap":
            self._salvage = _McapSalvage(self.file)
            self.damage = (f"{self.file}: damaged or truncated mcap ({_reason(exc)}); read "
                           f"{self._salvage.count} messages up to the last complete record")
            return
        if self.file.suffix != ".db3":
            raise BagError(f"{self.file}: not a readable ROS 2 bag ({_reason(exc)})") from None
        try:
            self._salvage = SqliteSalvage(self.file)
        except SqliteSalvageError as salvage_error:
            raise BagError(f"{salvage_error} after {_reason(exc)}") from None
        if not self._salvage.count:
            self.close()
            raise BagError(f"{self.file}: damaged or truncated sqlite3 bag ({_reason(exc)}); no message is "
                           "readable before the damage")
        lost = f", {self._salvage.lost} unreadable" if self._salvage.lost else ""
        self.damage = (f"{self.file}: damaged or truncated sqlite3 bag ({_reason(exc)}); read "
                       f"{self._salvage.count} messages whose pages survived{lost}")

    def __enter__(self) -> "BagSource":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        if self._reader is not None:
            self._reader.close()
            self._reader = None
        if isinstance(self._salvage, SqliteSalvage):
            self._salvage.close()

    def messages(self, topics: Iterable[str]) -> Iterator[RawMessage]:
        """Messages of ``topics`` in log-time order (file order for a salvaged mcap).

        A read error ends the iteration; :attr:`damage` then says where and why.
        """
        wanted = set(topics)
        if self._salvage is not None:
            for topic, log_ns, data in self._salvage.messages(wanted):
                yield RawMessage(topic, log_ns, data)
            return
        connections = [c for c in self._reader.connections if c.topic in wanted]
        if not connections:
            return
        count = 0
        try:
            for connection, log_ns, data in self._reader.messages(connections=connections):
                count += 1
                yield RawMessage(connection.topic, log_ns, bytes(data))
        except Exception as exc:  # a corrupt chunk or page: keep what was read
            self.damage = f"{self.file}: read error after {count} messages of {sorted(wanted)} ({_reason(exc)})"

    def deserialize(self, message: RawMessage):
        """The message as a ``rosbags`` object (for peeking at fields; sensor_msgs etc.)."""
        return self._store.deserialize_cdr(message.data, self.topics[message.topic].msgtype)

    def _topic_infos(self) -> dict[str, TopicInfo]:
        if self._salvage is not None:
            pairs = [(t, m, self._salvage.counts.get(t, 0)) for t, m in self._salvage.topics.items()]
        else:
            pairs = [(c.topic, c.msgtype, c.msgcount) for c in self._reader.connections]
        infos = {}
        for topic, msgtype, count in pairs:
            infos[topic] = TopicInfo(topic, msgtype, count, self._peek_encoding(topic, msgtype))
        return infos

    def _peek_encoding(self, topic: str, msgtype: str) -> str | None:
        if msgtype not in (IMAGE_TYPE, COMPRESSED_TYPE):
            return None
        damage = self.damage
        first = next(iter(self.messages([topic])), None)
        self.damage = damage  # peeking does not judge the rest of the file
        if first is None:
            return None
        try:
            msg = self._store.deserialize_cdr(first.data, msgtype)
        except Exception as exc:  # a malformed first message
            raise BagError(f"{self.file}: first message of {topic} is not a valid {msgtype} ({_reason(exc)})") \
                from None
        return msg.encoding if msgtype == IMAGE_TYPE else msg.format


def _bag_file(path: Path) -> Path:
    """The storage file of a bag path (named in error messages)."""
    if path.is_file():
        return path
    if not path.is_dir():
        raise BagError(f"{path}: no such bag (expected a rosbag2 folder or an .mcap file)")
    files = sorted(p for p in path.iterdir() if p.suffix in BAG_FILE_SUFFIXES)
    if not files:
        raise BagError(f"{path}: folder holds no .mcap or .db3 bag file")
    if not (path / "metadata.yaml").is_file() and len(files) != 1:
        raise BagError(f"{path}: no metadata.yaml and {len(files)} bag files; name one file")
    return files[0]


def _unusable_metadata(metadata: Path) -> str | None:
    """Why ``metadata`` is not a rosbag2 metadata file, or None if it looks like one."""
    import yaml

    try:
        data = yaml.safe_load(metadata.read_bytes())
    except (yaml.YAMLError, OSError) as exc:
        return f"unreadable ({type(exc).__name__})"
    if not isinstance(data, dict) or "rosbag2_bagfile_information" not in data:
        return "not a rosbag2 metadata file (no rosbag2_bagfile_information)"
    return None


def _reason(exc: BaseException) -> str:
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


class _McapSalvage:
    """Front-to-back reading of an mcap file that has no usable summary."""

    def __init__(self, file: Path):
        self.file = file
        self.topics: dict[str, str] = {}
        self.counts: dict[str, int] = {}
        self.count = 0
        for topic, _, _ in self._records(set(), index=True):
            self.counts[topic] = self.counts.get(topic, 0) + 1
            self.count += 1
        if not self.topics:
            raise BagError(f"{file}: damaged or truncated mcap with no complete channel record (cut inside its "
                           "first chunk?); no message can be read")

    def messages(self, wanted: set[str]) -> Iterator[tuple[str, int, bytes]]:
        yield from self._records(wanted)

    def _records(self, wanted: set[str], index: bool = False) -> Iterator[tuple[str, int, bytes]]:
        from mcap.records import Channel, Message, Schema
        from mcap.stream_reader import StreamReader

        schemas: dict[int, str] = {}
        channels: dict[int, str] = {}
        try:
            with self.file.open("rb") as stream:
                for record in StreamReader(stream, skip_magic=False).records:
                    if isinstance(record, Schema):
                        schemas[record.id] = record.name
                    elif isinstance(record, Channel):
                        channels[record.id] = record.topic
                        if index:
                            self.topics[record.topic] = schemas.get(record.schema_id, "")
                    elif isinstance(record, Message) and record.channel_id in channels:
                        topic = channels[record.channel_id]
                        if index or topic in wanted:
                            yield topic, record.log_time, record.data
        except Exception:  # the damage itself: everything before it has been yielded
            return


@dataclass(frozen=True)
class ReplayTopics:
    """What a replay reads: the camera topic and, if any, the ground-truth topic."""

    image: TopicInfo
    gt: TopicInfo | None


def camera_topics(topics: dict[str, TopicInfo]) -> list[TopicInfo]:
    """Topics that carry camera pictures: CompressedImage (not depth) or a picture Image."""
    found = []
    for info in topics.values():
        if info.msgtype == COMPRESSED_TYPE and "compresseddepth" not in f"{info.name} {info.encoding}".lower():
            found.append(info)
        elif info.msgtype == IMAGE_TYPE and info.encoding in PICTURE_ENCODINGS:
            found.append(info)
    return found


def select_topics(source: BagSource, *, image_topic: str | None = None, gt_topic: str | None = None,
                  use_gt: bool = True) -> ReplayTopics:
    """The camera and ground-truth topics of a bag, auto-detected unless named.

    Args:
        source: the open bag.
        image_topic: the camera topic; None picks the only camera topic.
        gt_topic: the 32SC1 panoptic ground truth; None picks the only 32SC1 Image topic
            (several: the one named ``*gt*``), if any.
        use_gt: False ignores any ground truth.
    Raises:
        BagError: a named topic is absent or of the wrong type; no camera topic; several
            candidates where one must be named.
    """
    topics = source.topics
    cameras = camera_topics(topics)
    if image_topic is not None:
        image = _named(source, image_topic, "--image-topic")
        if image not in cameras:
            raise BagError(f"{source.file}: {image_topic} ({image.msgtype}, {image.encoding or 'empty'}) is not a "
                           f"camera topic (sensor_msgs Image with a picture encoding or CompressedImage)")
    elif len(cameras) == 1:
        image = cameras[0]
    elif not cameras:
        listing = ", ".join(f"{t.name} ({t.msgtype})" for t in topics.values()) or "none"
        raise BagError(f"{source.file}: no camera topic (sensor_msgs Image or CompressedImage); topics: {listing}")
    else:
        raise BagError(f"{source.file}: several camera topics ({', '.join(t.name for t in cameras)}); "
                       f"choose one with --image-topic")
    if not use_gt:
        return ReplayTopics(image, None)
    if gt_topic is not None:
        gt = _named(source, gt_topic, "--gt-topic")
        if gt.msgtype != IMAGE_TYPE or gt.encoding != GT_ENCODING:
            raise BagError(f"{source.file}: ground truth {gt_topic} must be a {GT_ENCODING} sensor_msgs/Image "
                           f"of panoptic ids, found {gt.msgtype} {gt.encoding or '(no messages)'}")
        return ReplayTopics(image, gt)
    candidates = [t for t in topics.values() if t.msgtype == IMAGE_TYPE and t.encoding == GT_ENCODING]
    if len(candidates) > 1:
        candidates = [t for t in candidates if "gt" in t.name.lower().replace("/", "_").split("_")] or candidates
    if len(candidates) > 1:
        raise BagError(f"{source.file}: several {GT_ENCODING} topics ({', '.join(t.name for t in candidates)}); "
                       f"name the ground truth with --gt-topic (or --no-gt)")
    return ReplayTopics(image, candidates[0] if candidates else None)


def _named(source: BagSource, topic: str, option: str) -> TopicInfo:
    if topic not in source.topics:
        raise BagError(f"{source.file}: {option} {topic} is not in the bag (topics: {', '.join(source.topics)})")
    return source.topics[topic]
