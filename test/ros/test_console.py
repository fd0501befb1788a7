"""``panoptic_node`` as ``ros2 run`` starts it: a separate process talked to over DDS."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from panoptic_ros.resources import REPOSITORY_ROOT
from panoptic_ros.ros.params import all_specs
from ros_helpers import Probe, camera_image, ensure_ament_prefix

pytestmark = pytest.mark.ros

EXECUTABLE = Path(sys.executable).parent / "panoptic_node"


def _start(*ros_args: str) -> subprocess.Popen:
    return subprocess.Popen([str(EXECUTABLE), "--ros-args", *ros_args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def _stop(process: subprocess.Popen) -> tuple[int, str]:
    if process.poll() is None:
        process.send_signal(signal.SIGINT)
    try:
        _, err = process.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        process.kill()
        _, err = process.communicate()
    return process.returncode, err


def test_console_node_with_a_params_file_answers_over_dds(ros_context, spinner, tiny_weights):
    # what `ros2 run panoptic_ros panoptic_node --ros-args ...` executes
    process = _start("--params-file", str(REPOSITORY_ROOT / "config" / "panonet.yaml"),
                     "-p", f"weights:={tiny_weights['panonet']}", "-p", "device:=cpu", "-p", "num_threads:=1",
                     "-r", "image:=/console_test/image_raw", "-r", "__node:=console_node")
    try:
        probe = Probe(ros_context, spinner, name="console_node", topic="/console_test/image_raw")
        deadline = time.monotonic() + 120
        seq = 0
        # the node subscribes best effort (sensor data): resend until one frame gets through
        while not probe.got["panoptic"]:
            assert process.poll() is None, process.communicate()[1][-3000:]
            assert time.monotonic() < deadline, "no output from the console node"
            seq += 1
            probe.pub.publish(camera_image(seq))
            _spin_for(spinner, 0.5)
        stamp, msg = next(iter(probe.got["panoptic"].items()))
        assert msg.header.frame_id == "camera" and 1 <= stamp <= seq and msg.encoding == "32SC1"
    finally:
        code, err = _stop(process)
    assert code == 0, err[-3000:]
    assert "Traceback" not in err and "loaded panonet" in err
    assert "input_size [128, 192]" in err   # [H, W] like configs and docs (the tiny model is 128 x 192)


def _spin_for(spinner, seconds: float) -> None:
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        spinner.executor.spin_once(timeout_sec=0.05)


def test_console_node_refuses_bad_parameters_without_a_traceback():
    process = _start("-p", "overlay_alpha:=3.0", "-p", "autostart:=false")
    _, err = process.communicate(timeout=120)
    assert process.returncode == 2
    assert "overlay_alpha" in err and "Traceback" not in err


def test_the_node_is_found_through_the_ament_index_as_launch_files_find_it(tmp_path, monkeypatch):
    # what launch_ros' Node(package="panoptic_ros", executable="panoptic_node") resolves
    # (test_launch_file.py relies on it where launch_ros is installed)
    monkeypatch.setenv("AMENT_PREFIX_PATH", os.environ.get("AMENT_PREFIX_PATH", ""))
    prefix = Path(ensure_ament_prefix(tmp_path))
    out = subprocess.run([str(prefix / "lib" / "panoptic_ros" / "panoptic_node"), "--help"], capture_output=True,
                         text=True, timeout=120)
    assert out.returncode == 0 and "usage: panoptic_node" in out.stdout


def test_console_node_answers_help_and_refuses_stray_arguments():
    out = subprocess.run([str(EXECUTABLE), "--help"], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and "usage: panoptic_node" in out.stdout and "--ros-args" in out.stdout
    # every parameter is listed with its default and constraints, from the same specs as the descriptors
    text = " ".join(out.stdout.split())
    for spec in all_specs():
        assert f"{spec.name} ({spec.type.name.lower()}," in text, spec.name
    assert "ciae.score_threshold (double, unset): ciae post-processing: minimum sqrt(cls * centerness)" in text
    assert "must be in [0, 1]" in text and "qos.depth (integer, 1)" in text
    out = subprocess.run([str(EXECUTABLE), "--frobnicate"], capture_output=True, text=True, timeout=120)
    assert out.returncode == 2 and "unrecognized arguments: --frobnicate" in out.stderr
    out = subprocess.run([str(EXECUTABLE), "--ros-args", "-p"], capture_output=True, text=True, timeout=120)
    assert out.returncode == 2 and "panoptic_node:" in out.stderr and "Traceback" not in out.stderr


@pytest.mark.parametrize("environment, expected", [({}, "ASYNCHRONOUS"), ({"RMW_FASTRTPS_PUBLICATION_MODE": "SYNCHRONOUS"},
                                                                        "SYNCHRONOUS")])
def test_the_node_publishes_asynchronously_unless_the_environment_says_otherwise(environment, expected):
    script = ("import os\nfrom panoptic_ros.ros.node import main\ntry:\n    main(['--help'])\nexcept SystemExit:\n"
              "    pass\nprint(os.environ['RMW_FASTRTPS_PUBLICATION_MODE'])")
    env = {k: v for k, v in os.environ.items() if k != "RMW_FASTRTPS_PUBLICATION_MODE"}
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60,
                          env={**env, **environment})
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().splitlines()[-1] == expected
