"""Launch arguments -> node parameters and remappings; the launch file's shape."""
import ast
from pathlib import Path

import pytest

from panoptic_ros import launch_config as lc
from panoptic_ros.resources import REPOSITORY_ROOT

LAUNCH_FILE = REPOSITORY_ROOT / "launch" / "camera.launch.py"


def _args(**changes) -> dict:
    values = {a.name: a.default for a in lc.LAUNCH_ARGUMENTS}
    values.update(changes)
    return values


def test_defaults_use_the_packaged_panonet_file_and_remap_both_image_topics():
    spec = lc.node_launch(_args())
    assert (spec.name, spec.namespace) == ("panoptic_node", "")
    params_file, overrides = spec.parameters
    assert Path(params_file) == REPOSITORY_ROOT / "config" / "panonet.yaml"
    assert overrides == {"compressed": False, "use_sim_time": False, "autostart": True}
    assert spec.remappings == [("image", "/camera/image_raw"), ("image/compressed", "/camera/image_raw/compressed")]


def test_model_argument_picks_its_file_and_non_empty_arguments_override_it():
    spec = lc.node_launch(_args(model="ciae", weights="/w/ciae_run", device="cuda:1", backend="onnxruntime",
                                compressed="True", use_sim_time="1", autostart="false", namespace="front",
                                image_topic="/front/image"))
    params_file, overrides = spec.parameters
    assert Path(params_file).name == "ciae.yaml"
    assert overrides == {"model": "ciae", "weights": "/w/ciae_run", "device": "cuda:1", "backend": "onnxruntime",
                         "compressed": True, "use_sim_time": True, "autostart": False}
    assert spec.namespace == "front"
    assert ("image/compressed", "/front/image/compressed") in spec.remappings


def test_an_explicit_params_file_is_used_as_given(tmp_path):
    custom = tmp_path / "mine.yaml"
    custom.write_text("/**:\n  ros__parameters:\n    model: ciae\n")
    params_file, overrides = lc.node_launch(_args(params_file=str(custom))).parameters
    assert params_file == str(custom) and "model" not in overrides


def test_cameras_argument_becomes_the_cameras_parameter():
    spec = lc.node_launch(_args(cameras="front, left,right:/right/image_raw/compressed"))
    assert spec.parameters[1]["cameras"] == ["front", "left", "right:/right/image_raw/compressed"]
    assert "cameras" not in lc.node_launch(_args()).parameters[1]   # empty: the single-camera node


@pytest.mark.parametrize("changes, match", [
    (dict(cameras="front,,left"), "cameras: 'front,,left' has an empty entry"),
    (dict(cameras="front,front"), "front named more than once"),
    (dict(cameras="9lives"), "the name must be"),
    (dict(cameras="front:not a topic"), "is not a topic name"),
    (dict(model="yolo"), "model: 'yolo' is not one of panonet, ciae"),
    (dict(compressed="maybe"), "compressed: expected true or false"),
    (dict(autostart=""), "autostart: expected true or false"),
    (dict(params_file="/does/not/exist.yaml"), "params_file: /does/not/exist.yaml does not exist"),
    (dict(image_topic=""), "image_topic"),
    (dict(image_topic="/camera/"), "image_topic"),
])
def test_bad_values_name_the_argument(changes, match):
    with pytest.raises(lc.LaunchArgumentError, match=match):
        lc.node_launch(_args(**changes))


def test_missing_or_unknown_arguments_are_errors():
    values = _args()
    del values["model"]
    with pytest.raises(lc.LaunchArgumentError, match=r"missing \['model'\]"):
        lc.node_launch(values)
    with pytest.raises(lc.LaunchArgumentError, match=r"unknown \['modle'\]"):
        lc.node_launch(_args(modle="ciae"))


def test_every_argument_is_described():
    names = [a.name for a in lc.LAUNCH_ARGUMENTS]
    assert set(names) == {"model", "weights", "params_file", "image_topic", "compressed", "cameras", "namespace",
                          "use_sim_time", "device", "backend", "autostart"}
    assert len(names) == len(set(names))
    assert all(len(a.description) > 20 for a in lc.LAUNCH_ARGUMENTS)


def test_argument_descriptions_and_defaults_agree_with_the_node_parameters():
    # the launch arguments that override a parameter name its choices and the parameter
    # file's default as the node declares them (from the config dataclasses)
    from panoptic_ros.ros.params import all_specs

    specs = {s.name: s for s in all_specs()}
    arguments = {a.name: a for a in lc.LAUNCH_ARGUMENTS}
    for name in ("model", "backend"):
        assert arguments[name].description.startswith(" or ".join(specs[name].choices)), name
    assert f"({specs['model'].default} when params_file is empty too)" in arguments["model"].description
    for name in ("device", "backend"):
        assert arguments[name].description.endswith(f"the params file's value ({specs[name].default})"), name
    for name in ("compressed", "autostart"):
        assert arguments[name].default == str(specs[name].default).lower(), name


def test_launch_file_is_thin_and_uses_the_standard_actions():
    tree = ast.parse(LAUNCH_FILE.read_text())
    imported = {(node.module, alias.name) for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)
                for alias in node.names}
    assert {("launch", "LaunchDescription"), ("launch.actions", "DeclareLaunchArgument"),
            ("launch.actions", "OpaqueFunction"), ("launch.substitutions", "LaunchConfiguration"),
            ("launch_ros.actions", "LifecycleNode"), ("panoptic_ros.launch_config", "node_launch")} <= imported
    functions = {node.name for node in tree.body if isinstance(node, ast.FunctionDef)}
    assert "generate_launch_description" in functions
    calls = {node.func.id for node in ast.walk(tree) if isinstance(node, ast.Call) and isinstance(node.func, ast.Name)}
    assert {"DeclareLaunchArgument", "LifecycleNode", "OpaqueFunction", "node_launch"} <= calls
    keywords = {kw.arg for node in ast.walk(tree) if isinstance(node, ast.Call) for kw in node.keywords}
    assert {"description", "default_value", "package", "executable", "name", "namespace", "parameters",
            "remappings"} <= keywords
