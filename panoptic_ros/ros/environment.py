"""Keep a process's DDS traffic to itself; call before any rclpy context exists.

Importing this module imports no rclpy, so scripts call it before they import rclpy.
"""
from __future__ import annotations

import os
import tempfile


def private_dds_environment(ros_home_prefix: str | None = None) -> None:
    """Discovery on this host only, in a domain id derived from the pid (1..100), so
    parallel runs (tests, demo, benchmarks) neither see nor disturb each other or other
    ROS systems; with ``ros_home_prefix``, logs go under a new temporary ``ROS_HOME``.
    Variables already set in the environment win.
    """
    os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
    os.environ.setdefault("ROS_DOMAIN_ID", str(1 + os.getpid() % 100))
    if ros_home_prefix is not None:
        home = os.environ.setdefault("ROS_HOME", tempfile.mkdtemp(prefix=ros_home_prefix))
        os.environ.setdefault("ROS_LOG_DIR", os.path.join(home, "log"))
