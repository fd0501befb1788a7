"""Test-wide setup: keep ROS logs and DDS discovery private to this test run."""
from panoptic_ros.ros.environment import private_dds_environment

# Set before any rclpy context exists: logs under a temporary ROS_HOME, discovery on this
# host only, and a domain id derived from the pid so parallel runs do not see each other.
private_dds_environment("panoptic_ros_test_home_")
