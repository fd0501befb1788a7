"""The replay's core is pure: an offline replay, scored and reported, runs in a process
that never imports rclpy or a ROS message package (only the live runner talks DDS)."""
from __future__ import annotations

import json
import subprocess
import sys

SCRIPT = """
import json, sys
from pathlib import Path
from panoptic_ros.replay import cli
from panoptic_ros.replay.run import ReplayOptions, replay
bag, weights, out = sys.argv[1:4]
report = replay(ReplayOptions(bag=Path(bag), mode="offline", model="ciae", weights=Path(weights), out=Path(out),
                              device="cpu", progress=False, max_frames=2, samples=1))
ros = sorted(m for m in sys.modules if m.split(".")[0] == "rclpy" or m.split(".")[0].endswith("_msgs"))
print(json.dumps({"frames_out": report["figures"]["frames_out"], "scored": report["evaluation"] is not None,
                  "ros_modules": ros}))
"""


def test_an_offline_replay_never_imports_rclpy_or_message_packages(scored_bag, tiny, tmp_path):
    done = subprocess.run([sys.executable, "-c", SCRIPT, str(scored_bag), str(tiny["ciae"]), str(tmp_path / "r")],
                          capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result == {"frames_out": 2, "scored": True, "ros_modules": []}
