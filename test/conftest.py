"""Test-wide setup: keep ROS logs, DDS discovery and the ONNX export cache private to this
test run."""
import os
import tempfile

from panoptic_ros.ros.environment import private_dds_environment

# Set before any rclpy context exists: logs under a temporary ROS_HOME, discovery on this
# host only, and a domain id derived from the pid so parallel runs do not see each other.
private_dds_environment("panoptic_ros_test_home_")
# backend: auto (the default) exports ONNX files into $XDG_CACHE_HOME/panoptic_ros on first
# use: a cache of this run's own, never the user's (started nodes inherit it).
os.environ["XDG_CACHE_HOME"] = tempfile.mkdtemp(prefix="panoptic_ros_test_cache_")
