"""The ``panoptic_node`` process a live replay starts, as ``ros2 run`` would start it.

Pure process handling (no rclpy): the command line (the model's parameter file from
``config/`` plus overrides and remappings), start in its own session so a Ctrl-C in the
terminal reaches the replay and not the node (the replay stops the node itself, after its
outputs are in), stderr to a log file, and an orderly stop (SIGINT, then SIGTERM, then
SIGKILL).
"""
from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from panoptic_ros.resources import default_params_file

EXECUTABLE = "panoptic_node"
# Reliable input queue of a started node: frames wait there (not in DDS) while the executor
# is busy, and reach the node's slot, where a newer frame replaces them and is counted.
RELIABLE_INPUT_DEPTH = 10


class NodeError(RuntimeError):
    """The node did not start, configure or answer; the message says why."""


@dataclass(frozen=True)
class NodeSpec:
    """How to start the node.

    Attributes:
        model: ``panonet`` or ``ciae``.
        weights: checkpoint path.
        name: node name; namespace ``/``.
        input_topic: the camera topic to subscribe to.
        compressed: subscribe to CompressedImage instead of Image.
        backend, device, precision, num_threads: the node's parameters of those names.
        diagnostics_period: seconds between ``/diagnostics`` messages.
        input_qos: the camera subscription's reliability. ``reliable`` (the default here,
            with a queue of :data:`RELIABLE_INPUT_DEPTH`): every frame the replay sends
            reaches the node, so frames are dropped only by its one-frame slot. The
            node's own default, ``best_effort`` depth 1 (sensor data), loses large raw
            frames inside Fast DDS when the receiving process is busy: a frame bigger than
            the 512 KB shared-memory segment travels as 64 KB fragments, and a fragment
            lost is a frame lost, with nothing to repair it.
        params: further ``name:=value`` parameters (e.g. ``qos.depth:=3``); they win over
            the settings above (``qos.reliability`` is refused: that is ``input_qos``).
        cameras: the node's ``cameras`` parameter (``name:topic`` entries) for a
            multi-camera node; empty: one camera on ``input_topic``.
    """

    model: str
    weights: Path
    name: str
    input_topic: str
    compressed: bool = False
    backend: str = "auto"
    device: str = "auto"
    precision: str = "fp32"
    num_threads: int = 0
    diagnostics_period: float = 0.5
    input_qos: Literal["reliable", "best_effort"] = "reliable"
    params: tuple[str, ...] = ()
    cameras: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.input_qos not in ("reliable", "best_effort"):
            raise NodeError(f"input QoS must be reliable or best_effort, got {self.input_qos!r}")
        bad = [p for p in self.params if ":=" not in p or not p.split(":=", 1)[0]]
        if bad:
            raise NodeError(f"node parameter {bad[0]!r} is not name:=value")
        if any(p.split(":=", 1)[0].strip() == "qos.reliability" for p in self.params):
            raise NodeError("qos.reliability: choose the started node's input reliability with --qos "
                            "(input_qos), not as a parameter")

    def command(self) -> list[str]:
        """The node's command line."""
        params = {"model": self.model, "weights": str(self.weights), "backend": self.backend,
                  "device": self.device, "precision": self.precision, "num_threads": str(self.num_threads),
                  "compressed": "true" if self.compressed else "false",
                  "diagnostics_period": str(self.diagnostics_period), "qos.reliability": self.input_qos,
                  "qos.depth": str(RELIABLE_INPUT_DEPTH if self.input_qos == "reliable" else 1)}
        args = [node_executable(), "--ros-args", "--params-file", str(default_params_file(self.model))]
        if self.cameras:  # quoted: YAML reads an unquoted name:topic in a list as a mapping
            params["cameras"] = "[" + ", ".join(f"'{c}'" for c in self.cameras) + "]"
        for item in [f"{k}:={v}" for k, v in params.items()] + list(self.params):
            args += ["-p", item]
        return args + ["-r", f"__node:={self.name}", "-r", f"image:={self.input_topic}",
                       "-r", f"image/compressed:={self.input_topic}"]


def node_executable() -> str:
    """The ``panoptic_node`` console script beside this Python, else the one on PATH."""
    beside = Path(sys.executable).parent / EXECUTABLE
    if beside.is_file():
        return str(beside)
    found = shutil.which(EXECUTABLE)
    if found is None:
        raise NodeError(f"{EXECUTABLE} executable not found (install the package: pip install -e .)")
    return found


class NodeProcess:
    """A running node; stderr goes to ``log_path``."""

    def __init__(self, spec: NodeSpec, log_path: Path):
        self.spec = spec
        self.log_path = Path(log_path)
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self._log = self.log_path.open("w")
        self.process = subprocess.Popen(spec.command(), stdout=self._log, stderr=subprocess.STDOUT,
                                        stdin=subprocess.DEVNULL, start_new_session=True, env=os.environ.copy())

    def check_alive(self) -> None:
        """Raise NodeError (with the end of its log) if the process has exited."""
        code = self.process.poll()
        if code is not None:
            raise NodeError(f"{EXECUTABLE} exited with code {code} before the replay finished:\n{self.log_tail()}")

    def log_tail(self, lines: int = 15) -> str:
        self._log.flush()
        try:
            text = self.log_path.read_text(errors="replace").splitlines()
        except OSError:
            return ""
        return "\n".join(text[-lines:])

    def stop(self, timeout: float = 20.0) -> int | None:
        """Stop the node (SIGINT, as Ctrl-C; escalate if it hangs); returns its exit code."""
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGKILL):
            if self.process.poll() is not None:
                break
            try:
                self.process.send_signal(sig)
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                continue
            except ProcessLookupError:
                break
        self._log.close()
        return self.process.poll()
