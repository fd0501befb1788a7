"""Reading what is left of a cut-off rosbag2 sqlite3 file.

SQLite refuses a whole database file that is shorter than its header says ("database disk
image is malformed"), so ``rosbags`` cannot open a bag whose recorder died or whose copy
was cut short. The pages before the cut are intact, though: on a private copy whose
header's page count is set to the pages actually present, SQLite reads every table row
whose pages all survived, and reports the others as malformed one by one.

The messages are rows ``(id, topic_id, timestamp, data)`` of the ``messages`` table; a row
is readable only if its b-tree leaf page and the overflow pages of its data lie before the
cut. Leaf pages are allocated as the table grows, so rows written shortly before a leaf
was allocated can be lost even though their data is present. Rows are looked up by id
(rosbag2 numbers them 1, 2, ...), each read whole once to find the readable ones, then
read again in log-time order; the scan stops after :data:`GIVE_UP` ids in a row that are
missing or unreadable.

The copy costs the file's size in temporary disk space, once, for a damaged bag only.
"""
from __future__ import annotations

import shutil
import sqlite3
import struct
import tempfile
from pathlib import Path
from typing import Iterator

GIVE_UP = 1000  # consecutive unreadable ids after which the rest is taken as gone
_HEADER = b"SQLite format 3\x00"


class SqliteSalvageError(ValueError):
    """Nothing of the file can be read as a rosbag2 sqlite3 bag."""


class SqliteSalvage:
    """The readable rows of a damaged rosbag2 sqlite3 file.

    Attributes:
        topics: topic name -> message type, from the ``topics`` table.
        counts: topic name -> readable messages.
        count: readable messages in all.
        lost: rows that exist (their ids lie between readable ones) but cannot be read.
    Raises:
        SqliteSalvageError: not a SQLite file, or its ``topics`` table is unreadable.
    """

    def __init__(self, file: Path):
        self.file = file
        self._tmp = tempfile.TemporaryDirectory(prefix="panoptic_salvage_")
        try:
            self._db = _open_copy(file, Path(self._tmp.name) / file.name)
            rows = self._db.execute("SELECT id, name, type FROM topics").fetchall()
        except (sqlite3.DatabaseError, OSError) as exc:
            self.close()
            raise SqliteSalvageError(f"{file}: not a readable sqlite3 bag ({exc})") from None
        self._names = {topic_id: name for topic_id, name, _ in rows}
        self.topics = {name: msgtype for _, name, msgtype in rows}
        self._index, self.lost = self._scan()
        self.count = len(self._index)
        self.counts = {name: sum(1 for _, t, _ in self._index if t == name) for name in self.topics}

    def _scan(self) -> tuple[list[tuple[int, str, int]], int]:
        """Readable rows as (log time, topic, id) in log-time order, and how many were lost."""
        found, lost, misses, row_id = [], 0, 0, 0
        while misses < GIVE_UP:
            row_id += 1
            try:
                # the data itself is read: its overflow pages may lie beyond the cut
                row = self._db.execute("SELECT topic_id, timestamp, data FROM messages WHERE id = ?",
                                       (row_id,)).fetchone()
            except sqlite3.DatabaseError:
                row = None
            if row is None or row[0] not in self._names:
                misses += 1
                continue
            lost += misses
            misses = 0
            found.append((row[1], self._names[row[0]], row_id))
        return sorted(found), lost

    def messages(self, wanted: set[str]) -> Iterator[tuple[str, int, bytes]]:
        """(topic, log time, CDR bytes) of the readable messages of ``wanted``, in log-time order."""
        for log_ns, topic, row_id in self._index:
            if topic in wanted:
                (data,) = self._db.execute("SELECT data FROM messages WHERE id = ?", (row_id,)).fetchone()
                yield topic, log_ns, bytes(data)

    def close(self) -> None:
        db = getattr(self, "_db", None)
        if db is not None:
            db.close()
            self._db = None
        self._tmp.cleanup()


def _open_copy(file: Path, copy: Path) -> sqlite3.Connection:
    """A read-only connection to a copy of ``file`` whose header counts only whole pages."""
    shutil.copyfile(file, copy)
    with copy.open("r+b") as stream:
        header = stream.read(100)
        if len(header) < 100 or not header.startswith(_HEADER):
            raise sqlite3.DatabaseError("no SQLite header")
        page_size = struct.unpack_from(">H", header, 16)[0]
        page_size = 65536 if page_size == 1 else page_size
        pages = copy.stat().st_size // page_size
        stream.seek(28)  # "database size in pages" (SQLite file format, section 1.3)
        stream.write(struct.pack(">I", pages))
        stream.truncate(pages * page_size)
    return sqlite3.connect(f"file:{copy}?mode=ro&immutable=1", uri=True)
