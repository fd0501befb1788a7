"""The cameras one node serves: the ``cameras`` parameter -> input topics and output names.

Pure (no ROS). An entry of ``cameras`` is ``name`` or ``name:topic``:

- ``front``: subscribe to ``front/image`` (``sensor_msgs/Image``), or with ``compressed:
  true`` to ``front/image/compressed`` (``sensor_msgs/CompressedImage``);
- ``front:/front/image_raw``: subscribe to that topic; a topic ending in ``/compressed``
  is a ``CompressedImage`` topic, any other an ``Image`` topic, so raw and compressed
  cameras mix in one node.

Each camera publishes under its own name: ``~/front/panoptic``, ``~/front/semantic``, ...
With no entries (the default) the node has one camera without a name: input ``image`` (or
``image/compressed``) and outputs ``~/panoptic``, ..., exactly the single-camera node.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Sequence

_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_]*$")
_TOPIC = re.compile(r"^[~/]?[A-Za-z_][A-Za-z0-9_]*(/[A-Za-z_][A-Za-z0-9_]*)*$")
COMPRESSED_SUFFIX = "/compressed"


@dataclass(frozen=True)
class CameraInput:
    """One camera of a node.

    Attributes:
        name: the camera's name ("" for the single unnamed camera).
        topic: the input topic (relative names resolve in the node's namespace).
        compressed: the topic carries ``CompressedImage`` rather than ``Image``.
    """

    name: str
    topic: str
    compressed: bool

    def output(self, output: str) -> str:
        """The key of one of its outputs: ``panoptic`` or ``front/panoptic``."""
        return f"{self.name}/{output}" if self.name else output

    def output_topic(self, output: str) -> str:
        """The private topic of one of its outputs: ``~/panoptic`` or ``~/front/panoptic``."""
        return f"~/{self.output(output)}"


def parse_cameras(entries: Sequence[str], *, compressed: bool = False) -> tuple[CameraInput, ...]:
    """The cameras the ``cameras`` parameter describes (see the module docstring).

    Args:
        entries: ``name`` or ``name:topic`` strings; empty = one unnamed camera.
        compressed: bare names (and the unnamed camera) subscribe to ``.../compressed``.
    Raises:
        ValueError: a malformed name or topic, or a name given twice.
    """
    suffix = COMPRESSED_SUFFIX if compressed else ""
    if not entries:
        return (CameraInput("", f"image{suffix}", compressed),)
    cameras = []
    for entry in entries:
        name, sep, topic = (part.strip() for part in str(entry).partition(":"))
        if not _NAME.match(name):
            raise ValueError(f"cameras: {entry!r}: the name must be letters, digits and _ (starting with a "
                             f"letter), optionally followed by :topic")
        if sep and not _TOPIC.match(topic):
            raise ValueError(f"cameras: {entry!r}: {topic!r} is not a topic name")
        cameras.append(CameraInput(name, topic, topic.endswith(COMPRESSED_SUFFIX)) if sep
                       else CameraInput(name, f"{name}/image{suffix}", compressed))
    names = [c.name for c in cameras]
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise ValueError(f"cameras: {', '.join(repeated)} named more than once")
    return tuple(cameras)
