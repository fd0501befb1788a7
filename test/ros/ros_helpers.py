"""Helpers for the ROS tests: an executor driven from
the test thread (spin until a condition holds; never sleep for correctness), camera frames,
a node factory, a probe node that publishes frames and records the outputs, and an ament
prefix for a pip-installed package."""
from __future__ import annotations

import os
import sys
import time
from collections import defaultdict
from contextlib import contextmanager
from pathlib import Path
from typing import Callable

import numpy as np
import rclpy
from rclpy.executors import SingleThreadedExecutor
from rclpy.parameter import Parameter
from rclpy.qos import QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import Image
from std_msgs.msg import Header
from vision_msgs.msg import Detection2DArray

from panoptic_ros.launch_config import EXECUTABLE
from panoptic_ros.resources import REPOSITORY_ROOT
from panoptic_ros.ros.image_messages import numpy_to_image
from panoptic_ros.ros.node import PanopticNode

WAIT_S = 60.0


class Spinner:
    """An executor driven from the test thread: ``until(predicate)`` spins until it holds."""

    def __init__(self, context):
        self.executor = SingleThreadedExecutor(context=context)

    def add(self, node):
        self.executor.add_node(node)
        return node

    def remove(self, node):
        self.executor.remove_node(node)

    def until(self, predicate: Callable[[], bool], timeout: float = WAIT_S, what: str = "condition") -> None:
        deadline = time.monotonic() + timeout
        while not predicate():
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
            self.executor.spin_once(timeout_sec=0.05)

    def future(self, future, timeout: float = WAIT_S):
        self.until(future.done, timeout, "a service response")
        return future.result()

    def shutdown(self):
        self.executor.shutdown(timeout_sec=5.0)


@contextmanager
def running(spinner: Spinner, *nodes):
    """Spin ``nodes`` for the block; remove and destroy them afterwards."""
    for node in nodes:
        spinner.add(node)
    try:
        yield nodes
    finally:
        for node in nodes:
            spinner.remove(node)
            node.destroy_node()


def camera_image(seq: int, height: int = 48, width: int = 64, frame_id: str = "camera") -> Image:
    """A seeded rgb8 frame whose stamp encodes ``seq`` (sec = 100, nanosec = seq)."""
    rgb = np.random.default_rng(seq).integers(0, 256, (height, width, 3), dtype=np.uint8)
    header = Header(frame_id=frame_id)
    header.stamp.sec, header.stamp.nanosec = 100, seq
    return numpy_to_image(rgb, "rgb8", header)


NAME = "panoptic_under_test"
INPUT = "/node_test/image"
OUTPUTS = {"panoptic": Image, "semantic": Image, "instances": Image, "overlay": Image,
           "detections": Detection2DArray}
RELIABLE = QoSProfile(depth=50, reliability=ReliabilityPolicy.RELIABLE)


def make_node(context, weights, name=NAME, topic=INPUT, record_starts=False, **overrides) -> PanopticNode:
    values = {"model": "ciae", "weights": str(weights), "device": "cpu", "num_threads": 1, **overrides}
    return PanopticNode(name, record_starts=record_starts, context=context,
                        cli_args=["--ros-args", "-r", f"image:={topic}",
                                  "-r", f"image/compressed:={topic}/compressed"],
                        parameter_overrides=[Parameter(k, value=v) for k, v in values.items()])


class Probe:
    """Publishes camera frames and records every output by the frame's stamp."""

    def __init__(self, context, spinner, name=NAME, topic=INPUT, msg_type=Image):
        self.node = spinner.add(rclpy.create_node(f"probe_for_{name}", context=context))
        self.pub = self.node.create_publisher(msg_type, topic, RELIABLE)
        self.got: dict[str, dict[int, object]] = defaultdict(dict)
        for output, out_type in OUTPUTS.items():
            self.node.create_subscription(out_type, f"/{name}/{output}", self._recorder(output), RELIABLE)
        self.spinner = spinner

    def _recorder(self, output):
        return lambda msg: self.got[output].__setitem__(msg.header.stamp.nanosec, msg)

    def connect(self, node: PanopticNode):
        """Wait until the node sees our subscriptions and we see its input subscription."""
        self.spinner.until(lambda: self.pub.get_subscription_count() > 0
                           and all(node.count_subscribers(f"/{node.get_name()}/{o}") > 0 for o in OUTPUTS),
                           what="discovery")

    def send(self, msg, outputs=tuple(OUTPUTS)):
        self.pub.publish(msg)
        seq = msg.header.stamp.nanosec
        self.spinner.until(lambda: all(seq in self.got[o] for o in outputs), what=f"outputs of frame {seq}")
        return {o: self.got[o][seq] for o in outputs}


def ensure_ament_prefix(directory: Path) -> str:
    """Make ``panoptic_ros`` findable the way ``ros2 run`` and launch_ros find packages
    (``<prefix>/share/ament_index/resource_index/packages/<package>`` and
    ``<prefix>/lib/<package>/<executable>``) where it was pip-installed rather than built by
    colcon: a prefix in ``directory`` holding the index entry, the share directory with
    ``package.xml`` and a link to the console script next to this Python, put first in
    ``AMENT_PREFIX_PATH``. Returns the package's
    prefix (an existing one when the package is already indexed)."""
    from ament_index_python.packages import PackageNotFoundError, get_package_prefix
    try:
        return get_package_prefix("panoptic_ros")
    except (PackageNotFoundError, OSError):  # OSError: AMENT_PREFIX_PATH is not set
        pass
    index = directory / "share" / "ament_index" / "resource_index" / "packages"
    index.mkdir(parents=True, exist_ok=True)
    (index / "panoptic_ros").touch()
    share = directory / "share" / "panoptic_ros"
    share.mkdir(exist_ok=True)
    if not (share / "package.xml").exists():
        (share / "package.xml").symlink_to(REPOSITORY_ROOT / "package.xml")
    lib = directory / "lib" / "panoptic_ros"
    lib.mkdir(parents=True, exist_ok=True)
    if not (lib / EXECUTABLE).exists():
        (lib / EXECUTABLE).symlink_to(Path(sys.executable).parent / EXECUTABLE)
    os.environ["AMENT_PREFIX_PATH"] = os.pathsep.join(filter(None, (str(directory),
                                                                    os.environ.get("AMENT_PREFIX_PATH"))))
    return get_package_prefix("panoptic_ros")
