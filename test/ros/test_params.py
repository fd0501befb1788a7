"""Parameter declarations, their translation to settings, and the shipped parameter files."""
from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from rcl_interfaces.msg import ParameterType

from panoptic_ros.resources import REPOSITORY_ROOT, default_weights
from panoptic_ros.ros import params
from panoptic_ros.ros.node import PanopticNode

CONFIGS = sorted((REPOSITORY_ROOT / "config").glob("*.yaml"))


def _flatten(tree: dict, prefix: str = "") -> dict:
    flat = {}
    for key, value in tree.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(_flatten(value, f"{name}."))
        else:
            flat[name] = value
    return flat


def test_both_models_have_a_parameter_file():
    assert [p.name for p in CONFIGS] == ["ciae.yaml", "panonet.yaml"]


@pytest.mark.ros
@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_parameter_files_load_through_rclpy_and_name_only_declared_parameters(ros_context, path: Path):
    data = yaml.safe_load(path.read_text())
    assert list(data) == ["/**"] and list(data["/**"]) == ["ros__parameters"]
    expected = _flatten(data["/**"]["ros__parameters"])
    assert expected["model"] == path.stem
    node = PanopticNode(f"yaml_{path.stem}", context=ros_context,
                        cli_args=["--ros-args", "--params-file", str(path), "-p", "autostart:=false"])
    try:
        unknown = [name for name in expected if not node.has_parameter(name)]
        assert not unknown, f"{path.name} sets undeclared parameters {unknown}"
        for name, value in expected.items():
            if name != "autostart":
                assert params.plain(node.get_parameter(name).value) == value, name
        values = params.parameter_values(node)
        config = params.predictor_config(values)
        assert config.model == path.stem and config.weights == default_weights(path.stem)
        params.io_settings(values)
    finally:
        node.destroy_node()


def test_every_parameter_is_described_and_numbers_have_ranges():
    for spec in params.all_specs():
        desc = spec.descriptor()
        assert desc.description and desc.type == spec.type.value, spec.name
        if spec.type.value in (ParameterType.PARAMETER_DOUBLE, ParameterType.PARAMETER_INTEGER) and \
                not spec.name.startswith(("panonet.", "ciae.")):
            assert desc.floating_point_range or desc.integer_range, spec.name
    assert params.NODE_PARAMETERS[0].descriptor().additional_constraints.startswith("one of: panonet, ciae")


def test_post_processing_parameters_follow_the_config_dataclass():
    specs = {s.name: s for s in params.postprocess_specs("ciae")}
    assert specs["ciae.score_threshold"].type.value == ParameterType.PARAMETER_DOUBLE
    assert specs["ciae.max_instances"].type.value == ParameterType.PARAMETER_INTEGER
    assert specs["ciae.area_reference"].type.value == ParameterType.PARAMETER_INTEGER_ARRAY
    assert specs["ciae.resolution"].type.value == ParameterType.PARAMETER_STRING
    assert "minimum sqrt(cls * centerness)" in specs["ciae.score_threshold"].description
    assert all(s.runtime and s.default is None for s in specs.values())
    assert params.postprocess_specs("panonet")


def _values(**changes) -> dict:
    values = {s.name: s.default for s in params.all_specs()}
    values.update(changes)
    return values


def test_parameters_become_predictor_and_node_settings():
    config = params.predictor_config(_values(model="ciae", device="cpu", input_size=[96, 128],
                                             **{"onnx.providers": ["cpu"], "ciae.score_threshold": 0.2}))
    assert config.weights == default_weights("ciae") and config.input_size == (96, 128)
    assert config.onnx_providers == ("cpu",) and config.postprocess == {"score_threshold": 0.2}
    assert params.predictor_config(_values(weights="/x/y")).weights == Path("/x/y")
    io = params.io_settings(_values(**{"qos.depth": 3, "publish.overlay": False}))
    assert (io.depth, io.publish_overlay, io.reliability, io.compressed) == (3, False, "best_effort", False)


@pytest.mark.parametrize("changes, configured, reason", [
    ({"model": "ciae"}, True, "model: read at configure"),
    ({"device": "gpu"}, False, "device must be auto, cpu, cuda or cuda:N"),
    ({"backend": "tensorflow"}, False, "backend"),
    ({"input_size": [8, 8]}, False, "input_size"),
    ({"qos.reliability": "sometimes"}, False, "reliability"),
    ({"ciae.nms_threshold": 3.0}, True, "nms_threshold"),
    ({"ciae.resolution": "eighth"}, True, "resolution"),
])
def test_changes_are_checked_with_a_reason(changes, configured, reason):
    assert reason in params.check_changes(_values(), changes, configured=configured)


def test_valid_changes_pass():
    assert params.check_changes(_values(), {"ciae.score_threshold": 0.5, "overlay_alpha": 0.2}, configured=True) is None
    assert params.check_changes(_values(), {"model": "ciae", "device": "cuda:1"}, configured=False) is None


@pytest.mark.ros
def test_per_class_bandwidths_are_name_value_entries_checked_against_the_model(ros_context, spinner, tiny_weights):
    from rclpy.parameter import Parameter

    from ros_helpers import camera_image, make_node, running

    with running(spinner, make_node(ros_context, tiny_weights["panonet"], name="bandwidth_node", model="panonet",
                                    **{"panonet.bandwidths": ["car:0.7"]})) as (node,):
        assert node.state_label == "active", node.configure_error
        assert node.predictor.postprocess_config.bandwidths == {"car": 0.7}
        from panoptic_ros.serialized.image import to_rgb8
        node.predictor.predict(to_rgb8(camera_image(1)))  # a frame, so new settings get a dry run

        def set_(value):
            return node.set_parameters([Parameter("panonet.bandwidths", value=value)])[0]

        assert not set_(["car:0.4", "traffic light:0.3"]).successful  # a stuff class has no instances
        result = set_(["car:0.4", "person: 0.5"])
        assert result.successful, result.reason
        assert node.predictor.postprocess_config.bandwidths == {"car": 0.4, "person": 0.5}
        for bad, reason in ((["car=0.4"], "is not 'name:value'"), (["dragon:0.5"], "dragon"),
                            (["car:-1"], "must be > 0"), (["car:wide"], "bandwidths")):
            result = set_(bad)
            assert not result.successful and reason in result.reason, (bad, result.reason)
        assert node.predictor.postprocess_config.bandwidths == {"car": 0.4, "person": 0.5}
