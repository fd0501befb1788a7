"""Parameter declarations, their translation to settings, and the shipped parameter files."""
from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from rcl_interfaces.msg import ParameterType

from panoptic_ros.config import to_dict
from panoptic_ros.kinds import model_kind
from panoptic_ros.resources import REPOSITORY_ROOT, default_weights
from panoptic_ros.ros import params
from panoptic_ros.ros.node import PanopticNode

CONFIGS = sorted((REPOSITORY_ROOT / "config").glob("*.yaml"))
NUMBER_ARRAYS = (ParameterType.PARAMETER_INTEGER_ARRAY, ParameterType.PARAMETER_DOUBLE_ARRAY)


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
        params.node_settings(values)
    finally:
        node.destroy_node()


def _commented_postprocess_block(path: Path, kind: str) -> dict:
    """The ``# <kind>:`` block of a parameter file's comments, read as YAML."""
    lines = path.read_text().splitlines()
    start = lines.index(f"    # {kind}:")
    block = []
    for line in lines[start + 1:]:
        if not line.startswith("    #   "):
            break
        block.append(line[len("    #   "):])
    return yaml.safe_load("\n".join(block))


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_parameter_files_hold_the_declared_defaults(path: Path):
    # the files set every node parameter to its declared default (model: the file's own);
    # their commented post-processing examples show the post-processing config's defaults
    values = _flatten(yaml.safe_load(path.read_text())["/**"]["ros__parameters"])
    specs = {s.name: s for s in params.all_specs()}
    defaults = {name: specs[name].default for name in values if name != "model"}
    assert {name: value for name, value in values.items() if name != "model"} == defaults
    assert set(specs) - set(values) - {"input_size", "fp16"} == \
        {name for name in specs if name.startswith(("panonet.", "ciae."))}
    config_cls = model_kind(path.stem).postprocess_config
    example = _commented_postprocess_block(path, path.stem)
    shipped = {name: value for name, value in to_dict(config_cls()).items() if name in example}
    assert {name: value for name, value in example.items() if shipped[name] != {}} == \
        {name: value for name, value in shipped.items() if value != {}}
    assert len(example) >= 5


def test_every_parameter_is_described_and_numbers_have_ranges():
    for spec in params.all_specs():
        desc = spec.descriptor()
        assert desc.description and desc.type == spec.type.value, spec.name
        if spec.type.value in (ParameterType.PARAMETER_DOUBLE, ParameterType.PARAMETER_INTEGER):
            assert desc.floating_point_range or desc.integer_range, spec.name
            assert "must be " in desc.additional_constraints, spec.name
        if spec.type.value in NUMBER_ARRAYS or spec.name == "panonet.bandwidths":
            assert spec.range is not None and "each must be " in desc.additional_constraints, spec.name
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
    io = params.node_settings(_values(**{"qos.depth": 3, "publish.overlay": False}))
    assert (io.depth, io.publish_overlay, io.reliability, io.compressed) == (3, False, "best_effort", False)


@pytest.mark.parametrize("changes, configured, reason", [
    ({"model": "ciae"}, True, "model: read at configure"),
    ({"device": "gpu"}, False, "device must be auto, cpu, cuda or cuda:N"),
    ({"backend": "tensorflow"}, False, "backend"),
    ({"input_size": [8, 8]}, False, "input_size"),
    ({"qos.reliability": "sometimes"}, False, "reliability"),
    ({"ciae.nms_threshold": 3.0}, True, "nms_threshold"),
    ({"ciae.resolution": "eighth"}, True, "resolution"),
    ({"panonet.default_bandwidth": 0.0}, True, "default_bandwidth: must be > 0, got 0.0"),
    ({"panonet.min_area": -1}, True, "min_area: must be >= 0, got -1"),
    ({"panonet.bandwidths": ["car:0"]}, True, "bandwidths: must be > 0, got {'car': 0.0}"),
    ({"ciae.area_reference": [0, 10]}, True, "area_reference: must be >= 1, got (0, 10)"),
    ({"ciae.score_threshold": 1.5}, True, "score_threshold: must be in [0, 1], got 1.5"),
    ({"qos.depth": 0}, False, "depth: must be in [1, 1000], got 0"),
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
        # numbers out of a parameter's range: rclpy refuses them by the descriptor, and an
        # open bound (bandwidth > 0) is refused by the config class
        for name, value, reason in (("panonet.min_area", -1, "out of range"),
                                    ("panonet.default_bandwidth", 0.0, "must be > 0"),
                                    ("panonet.cluster_stride", 0, "out of range")):
            result = node.set_parameters([Parameter(name, value=value)])[0]
            assert not result.successful and reason in result.reason, (name, result.reason)
        for bad, reason in ((["car=0.4"], "is not 'name:value'"), (["dragon:0.5"], "dragon"),
                            (["car:-1"], "must be > 0"), (["car:wide"], "bandwidths")):
            result = set_(bad)
            assert not result.successful and reason in result.reason, (bad, result.reason)
        assert node.predictor.postprocess_config.bandwidths == {"car": 0.4, "person": 0.5}
