"""panoptic_ros: real-time panoptic segmentation (PanoNet, CIAE) for ROS 2.

Everything outside ``panoptic_ros.ros`` runs without ROS.
"""

__version__ = "0.1.0"
