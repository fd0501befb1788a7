"""``launch/camera.launch.py`` run for real by launch_testing.

The launch file starts the node (tiny CIAE weights, CPU, its own namespace and image
topic); the active test waits until the node reports the ``active`` lifecycle state over
``get_state``, logs that it listens on the remapped topic and publishes its latched
``~/label_info``; the launch then shuts down and the node must exit with status 0.

Runs where ``launch_ros`` and ``launch_testing`` are installed (a ROS 2 install), skipped
where they are not: PyPI has no launch_ros, so the pip-built CI venv skips it (the argument
logic and the file's shape are tested without ROS in ``test/test_launch_config.py``).

Three ways run the same launch and test cases: ``launch_test test/ros/test_launch_file.py``;
pytest with launch_testing's plugin, which collects ``generate_test_description`` and owns
the module; and plain pytest (the plugin does not load under pytest 8 and later, whose
hook specs dropped the ``path`` argument it declares), where
:func:`test_camera_launch_file_under_launch_testing` hands the module to launch_testing's
runner. The ``unittest`` classes say ``__test__ = False`` so that plain pytest does not also
run them outside a launch.
"""
from __future__ import annotations

import os
import sys
import tempfile
import time
import unittest
from pathlib import Path

import pytest

pytest.importorskip("launch_ros", reason="launch_ros is not installed (PyPI has none; it comes with ROS 2)")
pytest.importorskip("launch_testing", reason="launch_testing is not installed (it comes with ROS 2)")

import launch  # noqa: E402
import launch.actions  # noqa: E402
import launch.launch_description_sources  # noqa: E402
import launch_testing  # noqa: E402
import launch_testing.actions  # noqa: E402
import launch_testing.asserts  # noqa: E402
from launch_testing.loader import LoadTestsFromPythonModule  # noqa: E402
from launch_testing.test_runner import LaunchTestRunner  # noqa: E402
import rclpy  # noqa: E402
from lifecycle_msgs.srv import GetState  # noqa: E402
from rclpy.executors import SingleThreadedExecutor  # noqa: E402
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy  # noqa: E402
from vision_msgs.msg import LabelInfo  # noqa: E402

from panoptic_ros.launch_config import NODE_NAME  # noqa: E402
from panoptic_ros.resources import REPOSITORY_ROOT  # noqa: E402
from panoptic_ros.tiny_models import write_tiny_checkpoint  # noqa: E402
from ros_helpers import ensure_ament_prefix  # noqa: E402

LAUNCH_FILE = REPOSITORY_ROOT / "launch" / "camera.launch.py"
NAMESPACE = "launch_file_test"
NODE = f"/{NAMESPACE}/{NODE_NAME}"
IMAGE_TOPIC = f"/{NAMESPACE}/camera/image_raw"
START_TIMEOUT_S = 120.0  # a new process imports torch and loads the model, on a busy machine perhaps
_WORKDIR = tempfile.TemporaryDirectory(prefix="panoptic_launch_test_")  # lives as long as the module


@pytest.mark.launch_test
def generate_test_description():
    workdir = Path(_WORKDIR.name)
    ensure_ament_prefix(workdir / "prefix")
    weights = write_tiny_checkpoint(workdir, "ciae")
    camera = launch.actions.IncludeLaunchDescription(
        launch.launch_description_sources.PythonLaunchDescriptionSource(str(LAUNCH_FILE)),
        launch_arguments={"model": "ciae", "weights": str(weights), "device": "cpu", "namespace": NAMESPACE,
                          "image_topic": IMAGE_TOPIC}.items())
    return launch.LaunchDescription([camera, launch_testing.actions.ReadyToTest()])


def test_camera_launch_file_under_launch_testing(monkeypatch):
    # generate_test_description may extend AMENT_PREFIX_PATH: restored afterwards
    monkeypatch.setenv("AMENT_PREFIX_PATH", os.environ.get("AMENT_PREFIX_PATH", ""))
    runner = LaunchTestRunner(test_runs=LoadTestsFromPythonModule(sys.modules[__name__], name=__name__))
    runner.validate()
    results = list(runner.run().values())
    failures = [f"{type(case).__name__}.{case._testMethodName}: {text}"
                for result in results for case, text in result.errors + result.failures]
    assert not failures, "\n".join(failures)
    assert results and all(r.wasSuccessful() and r.testsRun == 2 and not r.skipped for r in results)


class TestTheLaunchedNode(unittest.TestCase):
    """Runs while the launch is up."""

    __test__ = False  # launch_testing runs it (see the module docstring)

    @classmethod
    def setUpClass(cls):
        cls.context = rclpy.context.Context()
        rclpy.init(context=cls.context)
        cls.probe = rclpy.create_node("launch_file_test_probe", context=cls.context)
        cls.executor = SingleThreadedExecutor(context=cls.context)
        cls.executor.add_node(cls.probe)

    @classmethod
    def tearDownClass(cls):
        cls.executor.shutdown()
        cls.probe.destroy_node()
        rclpy.try_shutdown(context=cls.context)

    def _spin_until(self, done, what: str) -> None:
        deadline = time.monotonic() + START_TIMEOUT_S
        while not done():
            self.assertLess(time.monotonic(), deadline, f"timed out waiting for {what}")
            self.executor.spin_once(timeout_sec=0.1)

    def _spin_for(self, seconds: float) -> None:
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            self.executor.spin_once(timeout_sec=0.05)

    def _state(self, client) -> str:
        future = client.call_async(GetState.Request())
        self._spin_until(future.done, "the get_state reply")
        return future.result().current_state.label

    def test_the_node_comes_up_active_on_the_remapped_topic(self, proc_output):
        label_infos = []
        latched = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE,
                             durability=DurabilityPolicy.TRANSIENT_LOCAL)
        self.probe.create_subscription(LabelInfo, f"{NODE}/label_info", label_infos.append, latched)
        client = self.probe.create_client(GetState, f"{NODE}/get_state")
        self._spin_until(client.service_is_ready, f"{NODE}/get_state")
        deadline = time.monotonic() + START_TIMEOUT_S
        states = [self._state(client)]
        while states[-1] != "active":  # autostart: configure, then activate
            self.assertIn(states[-1], ("unconfigured", "configuring", "inactive", "activating"), states)
            self.assertLess(time.monotonic(), deadline, f"the node never became active: {states}")
            self._spin_for(0.5)
            states.append(self._state(client))
        proc_output.assertWaitFor(f"active: listening on {IMAGE_TOPIC}", timeout=START_TIMEOUT_S)
        self._spin_until(lambda: label_infos, f"{NODE}/label_info")
        self.assertTrue(label_infos[0].class_map)


@launch_testing.post_shutdown_test()
class TestTheNodeExitsCleanly(unittest.TestCase):
    """Runs after the launch has shut down."""

    __test__ = False

    def test_exit_status_is_zero(self, proc_info):
        launch_testing.asserts.assertExitCodes(proc_info)
