"""Records kept across runs, so ``finish`` sees those of conversations a re-run skipped.

An index format emits a record per conversation (``ctx.emit``) and writes
its index from ``run.records()`` in ``finish``. An incremental re-run
renders only what changed, so the workers' shards of that run hold the
records of a few conversations, and an index written from them alone would
lose every other entry. So, for a format that can skip conversations (it has
files per conversation) and has a ``finish`` step, the controller keeps
every record in ``<out>/.zexport/records/<format>.db`` (SQLite): a batch's
records replace the kept ones of its conversations as soon as the batch is
accepted, *before* the manifest marks them done. A run killed in between
renders them again next time; the store never lags the manifest.

``run.records()`` then walks the plan (every selected conversation, in
export order) and yields the kept records of each exported one: those
rendered now and those skipped alike. Memory stays flat: one conversation's
records at a time.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator, Mapping

import apsw

from zexport.core.output import ensure_dir
from zexport.core.runfiles import Record, iter_plan, iter_records
from zexport.core.statedir import STATE_DIR

RECORDS_DIR = "records"
# A rowid table with its key in an index, not a WITHOUT ROWID table: records are
# kilobytes (an HTML page's search words), and a B-tree ordered by conversation id
# moved them around on every insert (10,000 records of ~1 KB: 0.15 s to write against
# 0.04 s). A store made with the older table works as well; it is kept as it is.
_SCHEMA = """
CREATE TABLE IF NOT EXISTS records (
    conversation_id TEXT NOT NULL,
    seq INTEGER NOT NULL,
    data BLOB NOT NULL,
    PRIMARY KEY (conversation_id, seq)
);
"""


def store_path(out_dir: str, format_name: str) -> str:
    """Where a format's kept records live."""
    return os.path.join(out_dir, STATE_DIR, RECORDS_DIR, f"{format_name}.db")


class RecordStore:
    """The kept records of one format in one output folder (the controller writes it)."""

    def __init__(self, path: str) -> None:
        self.path = path
        ensure_dir(os.path.dirname(path))  # in the state folder, which exists by now
        flags = apsw.SQLITE_OPEN_READWRITE | apsw.SQLITE_OPEN_CREATE | apsw.SQLITE_OPEN_NOFOLLOW
        self.conn = apsw.Connection(path, flags=flags)
        self.conn.execute("PRAGMA journal_mode=WAL")
        self.conn.execute("PRAGMA synchronous=NORMAL")
        self.conn.execute(_SCHEMA)

    def replace(self, conversation_ids: Iterable[str], shard: str, keep: set[str]) -> None:
        """Forget the kept records of ``conversation_ids``; keep the shard's records of
        those in ``keep`` (the ones exported), all in one transaction."""
        with self.conn:
            self.conn.executemany("DELETE FROM records WHERE conversation_id = ?",
                                  ((cid,) for cid in conversation_ids))
            seq: dict[str, int] = {}
            rows = []
            for record in iter_records([shard]):
                if record.conversation_id in keep:
                    n = seq[record.conversation_id] = seq.get(record.conversation_id, -1) + 1
                    rows.append((record.conversation_id, n, record.data))
            self.conn.executemany("INSERT INTO records VALUES (?, ?, ?)", rows)

    def close(self) -> None:
        """Close the connection (and checkpoint the WAL)."""
        self.conn.close()


def iter_kept(path: str, plan_path: str, failures: Mapping[str, str]) -> Iterator[Record]:
    """The kept records of every exported conversation of the plan, in export order."""
    if not os.path.exists(path):
        return
    conn = apsw.Connection(path, flags=apsw.SQLITE_OPEN_READONLY)
    try:
        cursor = conn.cursor()
        for entry in iter_plan(plan_path, failures):
            if not entry.exported:
                continue
            for (data,) in cursor.execute(
                    "SELECT data FROM records WHERE conversation_id = ? ORDER BY seq",
                    (entry.id,)):
                yield Record(entry.id, bytes(data))
    finally:
        conn.close()
