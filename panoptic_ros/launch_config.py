"""Launch arguments -> the node's parameters and remappings (pure; no ROS imports).

``launch/camera.launch.py`` declares :data:`LAUNCH_ARGUMENTS` and hands their values to
:func:`node_launch`; keeping the logic here makes it testable without ``launch_ros``.

Precedence: the parameter file (``params_file``, or ``config/<model>.yaml`` of this
package) gives every setting; the launch arguments that are not empty override it.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

from panoptic_ros.cameras import parse_cameras
from panoptic_ros.resources import SHIPPED_KINDS, default_params_file

NODE_NAME = "panoptic_node"
EXECUTABLE = "panoptic_node"


class LaunchArgumentError(ValueError):
    """A launch argument value that cannot be used; the message names the argument."""


@dataclass(frozen=True)
class LaunchArgument:
    name: str
    default: str
    description: str


LAUNCH_ARGUMENTS: tuple[LaunchArgument, ...] = (
    LaunchArgument("model", "", "panonet or ciae; empty = the model of params_file "
                                "(panonet when params_file is empty too)"),
    LaunchArgument("weights", "", "checkpoint (.safetensors, .json or their stem); empty = the params file's "
                                  "value, which defaults to the shipped demo weights"),
    LaunchArgument("params_file", "", "ROS parameter file; empty = this package's config/<model>.yaml"),
    LaunchArgument("image_topic", "/camera/image_raw", "camera image topic (sensor_msgs/Image); with "
                                                       "compressed:=true its '/compressed' topic is used"),
    LaunchArgument("compressed", "false", "subscribe to <image_topic>/compressed (sensor_msgs/CompressedImage)"),
    LaunchArgument("cameras", "", "several cameras in one node, one model, batched: comma-separated 'name' "
                                  "(input <name>/image, or <name>/image/compressed with compressed:=true) or "
                                  "'name:topic' (a topic ending in /compressed is CompressedImage), e.g. "
                                  "front,left,right; outputs ~/<name>/panoptic, ...; image_topic is then unused; "
                                  "empty = one camera on image_topic"),
    LaunchArgument("namespace", "", "namespace of the node (and of its output topics)"),
    LaunchArgument("use_sim_time", "false", "follow /clock (set true when replaying a bag with --clock)"),
    LaunchArgument("device", "", "auto, cpu, cuda or cuda:N; empty = the params file's value (auto)"),
    LaunchArgument("backend", "", "auto or torch or onnxruntime (auto: the backend measured fastest on "
                                  "the device); empty = the params file's value (auto)"),
    LaunchArgument("autostart", "true", "configure and activate the lifecycle node by itself; false = wait "
                                        "for lifecycle transitions"),
)
_NAMES = tuple(a.name for a in LAUNCH_ARGUMENTS)


@dataclass(frozen=True)
class NodeLaunch:
    """What the launch file passes to ``launch_ros.actions.LifecycleNode``."""

    name: str
    namespace: str
    parameters: list[Any]
    remappings: list[tuple[str, str]]


def parse_bool(name: str, text: str) -> bool:
    """``true``/``false`` (any case, also ``1``/``0``, ``yes``/``no``) as a bool."""
    value = text.strip().lower()
    if value in ("true", "1", "yes", "on"):
        return True
    if value in ("false", "0", "no", "off"):
        return False
    raise LaunchArgumentError(f"{name}: expected true or false, got {text!r}")


def parse_camera_list(text: str) -> list[str]:
    """``front,left:/left/image_raw`` -> the ``cameras`` parameter's entries (checked).

    Raises:
        LaunchArgumentError: an empty entry, a malformed one, or a name given twice.
    """
    entries = [entry.strip() for entry in text.split(",")]
    if not all(entries):
        raise LaunchArgumentError(f"cameras: {text!r} has an empty entry")
    try:
        parse_cameras(entries)
    except ValueError as exc:
        raise LaunchArgumentError(str(exc)) from None
    return entries


def node_launch(arguments: Mapping[str, str]) -> NodeLaunch:
    """The node's name, namespace, parameters and remappings for these argument values.

    Args:
        arguments: launch argument name -> value (every name of :data:`LAUNCH_ARGUMENTS`).
    Raises:
        LaunchArgumentError: a missing or unknown argument, or an unusable value.
    """
    missing = [n for n in _NAMES if n not in arguments]
    unknown = sorted(set(arguments) - set(_NAMES))
    if missing or unknown:
        raise LaunchArgumentError(f"launch arguments missing {missing}, unknown {unknown}")
    args = {k: str(v).strip() for k, v in arguments.items()}
    model = args["model"]
    if model and model not in SHIPPED_KINDS:
        raise LaunchArgumentError(f"model: {model!r} is not one of {', '.join(SHIPPED_KINDS)}")
    params_file = Path(args["params_file"]).expanduser() if args["params_file"] else default_params_file(model or SHIPPED_KINDS[0])
    if not params_file.is_file():
        raise LaunchArgumentError(f"params_file: {params_file} does not exist")
    topic = args["image_topic"]
    if not topic or topic.endswith("/") or " " in topic:
        raise LaunchArgumentError(f"image_topic: {topic!r} is not a topic name")
    overrides: dict[str, Any] = {
        "compressed": parse_bool("compressed", args["compressed"]),
        "use_sim_time": parse_bool("use_sim_time", args["use_sim_time"]),
        "autostart": parse_bool("autostart", args["autostart"]),
    }
    for name in ("model", "device", "backend"):
        if args[name]:
            overrides[name] = args[name]
    if args["cameras"]:
        overrides["cameras"] = parse_camera_list(args["cameras"])
    if args["weights"]:
        overrides["weights"] = str(Path(args["weights"]).expanduser())
    remappings = [("image", topic), ("image/compressed", f"{topic}/compressed")]
    return NodeLaunch(NODE_NAME, args["namespace"], [str(params_file), overrides], remappings)
