"""Test-wide setup: keep ROS logs and DDS discovery private to this test run."""
import os
import tempfile

# Set before any rclpy context exists: logs under a temporary ROS_HOME, discovery on this
# host only, and a domain id derived from the pid so parallel runs do not see each other.
_ros_home = tempfile.mkdtemp(prefix="panoptic_ros_test_home_")
os.environ.setdefault("ROS_HOME", _ros_home)
os.environ.setdefault("ROS_LOG_DIR", os.path.join(_ros_home, "log"))
os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
os.environ.setdefault("ROS_DOMAIN_ID", str(1 + os.getpid() % 100))
