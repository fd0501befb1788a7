"""A cut-off sqlite3 bag keeps its results as a cut-off mcap does: the readable messages are
replayed and scored, the report names the file and the damage, exit code 2. Bags that give
nothing (cut inside an mcap's only chunk, unusable metadata.yaml) are one clear line."""
from __future__ import annotations

import json
import os
import shutil
import sqlite3

import pytest
from replay_helpers import scenes

from panoptic_ros.replay import cli
from panoptic_ros.replay.bag import BagError, BagSource
from panoptic_ros.synthstreet.bag import GT_TOPIC, IMAGE_TOPIC, write_bag

FRAMES = 16


@pytest.fixture(scope="module")
def sqlite_bag(tmp_path_factory):
    path = tmp_path_factory.mktemp("sqlite_damaged") / "whole"
    write_bag(path, scenes(FRAMES, 64, 128), rate_hz=10.0, storage="sqlite3")
    return path


def _cut(bag, tmp_path, fraction):
    copy = tmp_path / f"cut{round(fraction * 100)}"  # the caller may overwrite the file
    shutil.copytree(bag, copy)
    db = next(copy.glob("*.db3"))
    os.truncate(db, int(db.stat().st_size * fraction))
    return copy, db


def _readable_rows(db):
    """Independent count: the rows SQLite itself reads from a page-aligned copy of the file
    whose header page count is fixed up (what the salvage promises to read)."""
    fixed = db.with_name("fixed.sqlite")
    data = bytearray(db.read_bytes())
    page = int.from_bytes(data[16:18], "big")
    pages = len(data) // page
    data[28:32] = pages.to_bytes(4, "big")
    fixed.write_bytes(bytes(data[: pages * page]))
    con = sqlite3.connect(f"file:{fixed}?mode=ro", uri=True)
    topics = dict(con.execute("SELECT id, name FROM topics"))
    readable = []
    for row_id in range(1, 4 * FRAMES):
        try:
            row = con.execute("SELECT topic_id, timestamp, data FROM messages WHERE id = ?", (row_id,)).fetchone()
        except sqlite3.DatabaseError:
            continue
        if row is not None:
            readable.append((topics[row[0]], row[1]))
    con.close()
    fixed.unlink()
    return readable


@pytest.mark.parametrize("fraction", [0.3, 0.6, 0.9])
def test_a_cut_sqlite3_bag_is_replayed_and_scored_up_to_the_damage(sqlite_bag, tmp_path, tiny, capsys, fraction):
    path, db = _cut(sqlite_bag, tmp_path, fraction)
    readable = _readable_rows(db)
    images = sorted(t for topic, t in readable if topic == IMAGE_TOPIC)
    assert 0 < len(images) < FRAMES
    with BagSource(path) as source:
        assert source.damage.startswith(f"{db}: damaged or truncated sqlite3 bag")
        got = list(source.messages([IMAGE_TOPIC, GT_TOPIC]))
        assert [m.log_ns for m in got if m.topic == IMAGE_TOPIC] == images
        assert [m.log_ns for m in got] == sorted(m.log_ns for m in got)
    out = tmp_path / "r"
    code = cli.main([str(path), "--offline", "--model", "ciae", "--weights", str(tiny["ciae"]), "--out", str(out),
                     "--device", "cpu", "--samples", "1", "--no-progress"])
    printed = capsys.readouterr().out
    assert code == cli.EXIT_PARTIAL
    assert f"warning: {db}: damaged or truncated sqlite3 bag" in printed
    report = json.loads((out / "report.json").read_text())
    assert report["figures"]["frames_in"] == report["figures"]["frames_out"] == len(images)
    assert report["evaluation"]["frames_evaluated"] >= 1
    assert any(str(db) in error for error in report["errors"])


@pytest.mark.parametrize("pages, message", [
    (8, "damaged or truncated sqlite3 bag .*no message is readable"),  # tables, but no message row
    (4, "not a readable sqlite3 bag"),  # not even the table definitions
])
def test_a_sqlite3_bag_cut_before_any_message_is_one_line(sqlite_bag, tmp_path, pages, message):
    path, db = _cut(sqlite_bag, tmp_path, 0.0)
    whole = next(sqlite_bag.glob("*.db3")).read_bytes()
    db.write_bytes(whole[: pages * int.from_bytes(whole[16:18], "big")])  # the header's page size
    with pytest.raises(BagError, match=f"{db}: {message}") as caught:
        BagSource(path)
    assert "\n" not in str(caught.value)


def test_garbage_metadata_is_blamed_on_metadata_yaml(sqlite_bag, tmp_path, tiny):
    copy = tmp_path / "garbage_meta"
    shutil.copytree(sqlite_bag, copy)
    (copy / "metadata.yaml").write_text("{{{ not: [yaml")
    with pytest.raises(BagError, match=f"{copy / 'metadata.yaml'}: unreadable"):
        BagSource(copy)
    mcap = tmp_path / "mcap_meta"
    write_bag(mcap, scenes(2, 64, 128), rate_hz=10.0)
    (mcap / "metadata.yaml").write_text("just a string")
    with BagSource(mcap) as source:  # the mcap holds its own index: read, with the damage named
        assert source.damage.startswith(f"{mcap / 'metadata.yaml'}: not a rosbag2 metadata file")
        assert len(list(source.messages([IMAGE_TOPIC]))) == 2


def test_an_mcap_cut_inside_its_only_chunk_is_one_line(tmp_path, tiny, capsys):
    path = tmp_path / "one_chunk"
    write_bag(path, scenes(2, 64, 128), rate_hz=10.0)
    mcap = next(path.glob("*.mcap"))
    os.truncate(mcap, mcap.stat().st_size // 2)
    code = cli.main([str(path), "--offline", "--model", "ciae", "--weights", str(tiny["ciae"]), "--out",
                     str(tmp_path / "r"), "--device", "cpu", "--no-progress"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == cli.EXIT_ERROR and "Traceback" not in "\n".join(err)
    assert err[-1].startswith(f"panoptic-replay: error: {mcap}: damaged or truncated mcap")
