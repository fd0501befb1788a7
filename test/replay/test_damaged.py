"""A bag cut off in the middle (a recorder that died): a clear error naming the file, and the
results up to the last complete record are written."""
from __future__ import annotations

import json
import os

import pytest
from replay_helpers import read_bag, scenes

from panoptic_ros.replay import cli
from panoptic_ros.replay.bag import BagSource
from panoptic_ros.synthstreet.bag import GT_TOPIC, IMAGE_TOPIC, write_bag


@pytest.fixture(scope="module")
def truncated(tmp_path_factory):
    """Eight 256x512 frames (several 1 MB mcap chunks), the file cut at half its size."""
    path = tmp_path_factory.mktemp("damaged") / "cut"
    write_bag(path, scenes(8, 256, 512), rate_hz=10.0)
    mcap = next(path.glob("*.mcap"))
    os.truncate(mcap, mcap.stat().st_size // 2)
    return path, mcap


def test_a_truncated_mcap_is_salvaged_up_to_the_last_complete_record(truncated):
    path, mcap = truncated
    with BagSource(path) as source:
        assert source.damage.startswith(f"{mcap}: damaged or truncated mcap")
        frames = list(source.messages([IMAGE_TOPIC]))
        assert 1 <= len(frames) < 8 and source.topics[GT_TOPIC].encoding == "32SC1"
        assert [m.log_ns for m in frames] == sorted(m.log_ns for m in frames)


def test_replay_of_a_truncated_bag_reports_the_damage_and_writes_partial_results(truncated, tmp_path, tiny,
                                                                                  capsys):
    path, mcap = truncated
    code = cli.main([str(path), "--offline", "--model", "ciae", "--weights", str(tiny["ciae"]), "--out",
                     str(tmp_path / "r"), "--device", "cpu", "--samples", "2"])
    printed = capsys.readouterr().out
    assert code == cli.EXIT_PARTIAL
    assert f"warning: {mcap}: damaged or truncated mcap" in printed
    report = json.loads((tmp_path / "r" / "report.json").read_text())
    with BagSource(path) as source:
        readable = len(list(source.messages([IMAGE_TOPIC])))
    figures, evaluation = report["figures"], report["evaluation"]
    assert figures["frames_in"] == figures["frames_out"] == readable
    assert evaluation["frames_evaluated"] + evaluation["frames_without_gt"] == readable
    assert evaluation["frames_evaluated"] >= 1
    assert len(read_bag(tmp_path / "r" / "bag")["/panoptic_node/panoptic"]) == readable
    assert str(mcap) in (tmp_path / "r" / "report.html").read_text()
