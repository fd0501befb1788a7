"""Fixtures for the ROS tests (helpers live in ros_helpers.py)."""
import pytest
import rclpy

from ros_helpers import Spinner
from panoptic_ros.tiny_models import TINY_MODELS, write_tiny_checkpoint


@pytest.fixture(scope="session")
def tiny_weights(tmp_path_factory):
    directory = tmp_path_factory.mktemp("weights")
    return {kind: write_tiny_checkpoint(directory, kind) for kind in TINY_MODELS}


@pytest.fixture(scope="module")
def ros_context():
    context = rclpy.context.Context()
    rclpy.init(context=context)
    yield context
    rclpy.try_shutdown(context=context)


@pytest.fixture(scope="module")
def spinner(ros_context):
    spin = Spinner(ros_context)
    yield spin
    spin.shutdown()
