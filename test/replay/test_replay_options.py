"""How a live replay starts its node (input QoS, parameters) and which options it refuses."""
from __future__ import annotations

from pathlib import Path

import pytest

from panoptic_ros.config import ConfigError
from panoptic_ros.replay import cli
from panoptic_ros.replay.nodeproc import RELIABLE_INPUT_DEPTH, NodeError, NodeSpec
from panoptic_ros.replay.report import drop_text
from panoptic_ros.replay.run import ReplayOptions


def _params(command: list[str]) -> dict[str, str]:
    return dict(command[i + 1].split(":=", 1) for i, arg in enumerate(command) if arg == "-p")


def _spec(**kw) -> NodeSpec:
    return NodeSpec(model="ciae", weights=Path("w"), name="n", input_topic="/cam", **kw)


def test_the_started_node_listens_reliably_unless_asked_for_best_effort():
    params = _params(_spec().command())
    assert (params["qos.reliability"], params["qos.depth"]) == ("reliable", str(RELIABLE_INPUT_DEPTH))
    params = _params(_spec(input_qos="best_effort").command())
    assert (params["qos.reliability"], params["qos.depth"]) == ("best_effort", "1")  # the node's own default
    command = _spec(params=("qos.depth:=4", "qos.output_depth:=6")).command()
    assert _params(command)["qos.depth"] == "4" and command.index("qos.depth:=4") > command.index("qos.depth:=10")
    with pytest.raises(NodeError, match="qos.reliability: choose .* with --qos"):
        _spec(params=("qos.reliability:=best_effort",))
    with pytest.raises(NodeError, match="reliable or best_effort"):
        _spec(input_qos="sometimes")


def test_the_cli_passes_qos_and_refuses_it_where_no_node_is_started(tmp_path, capsys):
    parsed = cli.build_parser().parse_args(["bag", "--live", "--model", "ciae", "--qos", "best_effort"])
    assert parsed.qos == "best_effort"
    assert "a replay must deliver every recorded frame" in " ".join(cli.build_parser().format_help().split())
    with pytest.raises(ConfigError, match="input_qos: only for a node the live replay starts"):
        ReplayOptions(bag=tmp_path, mode="live", connect="/n", input_qos="best_effort")
    with pytest.raises(ConfigError, match="input_qos: only for a node the live replay starts"):
        ReplayOptions(bag=tmp_path, mode="offline", model="ciae", input_qos="reliable")
    assert cli.main([str(tmp_path), "--offline", "--model", "ciae", "--qos", "reliable"]) == cli.EXIT_ERROR
    assert "input_qos" in capsys.readouterr().err


def test_drops_before_a_best_effort_node_point_at_the_qos():
    drops = {"lost_before_node": 3, "replaced_in_node_slot": 2, "rejected_by_node": 0, "node_errors": 0,
             "outputs_lost_after_node": 0}
    report = {"run": {"drops": drops, "input_reliability": "best_effort"}, "figures": {"dropped": 5}}
    assert drop_text(report) == ("5 dropped: 3 lost in DDS before the node (its input is best effort; a reliable "
                                 "input delivers every frame); 2 replaced in the node's one-frame slot by newer frames")
    report["run"]["input_reliability"] = "reliable"
    assert drop_text(report).startswith("5 dropped: 3 lost in DDS before the node; 2 replaced")


@pytest.mark.parametrize("bag, model, connect, mode, expected", [
    ("recordings/drive_1", "ciae", None, "offline", "replay_drive_1_ciae_offline"),        # a bag folder
    ("recordings/trunc.mcap", "panonet", None, "offline", "replay_trunc_panonet_offline"),  # one-file bags
    ("x/street.db3", "ciae", None, "offline", "replay_street_ciae_offline"),
    ("recordings/trunc.mcap", None, "/my_node", "live", "replay_trunc_my_node_live"),
])
def test_default_out_folder_is_replay_bag_model_mode(bag, model, connect, mode, expected):
    # docs/replay.md: replay_<bag>_<model>_<mode>, <bag> without the storage extension
    options = ReplayOptions(bag=Path(bag), mode=mode, model=model, connect=connect)
    assert options.out_dir == Path(expected)
    assert ReplayOptions(bag=Path(bag), mode=mode, model=model, connect=connect, out=Path("o")).out_dir == Path("o")
