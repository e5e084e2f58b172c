"""The side index of where each conversation's messages are, as runs of rowids.

Why: the app's schema has no index on ``messages.conversation_id``, so a
worker's ``WHERE conversation_id IN (...)`` would scan the whole table per
batch (quadratic in the archive). The controller writes this once per run
(one scan); workers join it to the archive and read by rowid range.
"""

from __future__ import annotations

import contextlib
import os

import apsw

from zexport.sources.archive.opening import open_archive
from zexport.sources.archive.side_file import open_side_file


def has_conversation_index(conn: apsw.Connection) -> bool:
    """Whether the archive has its own index led by ``messages.conversation_id``
    (our older samples did; the app's migrations never create one)."""
    for row in conn.execute("PRAGMA index_list(messages)"):
        name = str(row[1]).replace('"', '""')
        first = conn.execute(f'PRAGMA index_info("{name}")').fetchone()
        if first is not None and first[2] == "conversation_id":
            return True
    return False


MESSAGE_INDEX = "messages.db"  # the message index's name in the run folder


def build_message_index(archive_path: str, target: str) -> bool:
    """Write where each conversation's messages are, as runs of rowids, to ``target``.

    Why: without an index on ``messages.conversation_id`` (the app's schema),
    a worker's ``WHERE conversation_id IN (...)`` scans the whole table per
    batch. The app inserts a conversation's messages together, so in rowid
    order they form a few runs (one, until a re-sync appends more). One scan
    here finds where runs start (a row whose rowid-1 belongs to another
    conversation, or is gone); workers then read each run as a rowid range: a
    batch costs what it costs with an index. All in SQL, no per-row Python: the
    controller runs it in a thread, without the GIL, while it plans; the file
    holds a row per run (a few megabytes for 100,000 conversations).

    Runs cover rowids up to the highest one seen (kept, read in the same
    snapshot); workers also read the rows above it by ``conversation_id``, so
    the messages the app inserts during the run are seen too.

    The file is written beside ``target`` and renamed into place when
    complete: a worker finds the whole index or none (then it reads by
    ``conversation_id``). Returns False, and writes nothing, when the archive
    has its own index: then workers use it.
    """
    conn = open_archive(archive_path)
    try:
        if has_conversation_index(conn):
            return False
    finally:
        conn.close()
    partial = target + ".partial"
    side, _ = open_side_file(archive_path, partial)
    try:
        side.execute(
            "CREATE TABLE runs (conversation_id TEXT NOT NULL, first INTEGER NOT NULL,"
            " stop INTEGER NOT NULL, PRIMARY KEY (conversation_id, first)) WITHOUT ROWID")
        side.execute("CREATE TABLE scanned (max_rid INTEGER)")
        side.execute("CREATE TABLE starts (first INTEGER PRIMARY KEY, conversation_id TEXT)")
        with side:  # one transaction: one snapshot of the archive for every statement
            side.execute("INSERT INTO scanned SELECT max(rowid) FROM src.messages")
            side.execute(_RUN_STARTS)
            side.execute(_RUNS)
            side.execute("DROP TABLE starts")
        side.execute("DETACH DATABASE src")
    except BaseException:
        side.close()
        with contextlib.suppress(OSError):
            os.unlink(partial)
        raise
    side.close()
    os.replace(partial, target)
    return True


# A run starts at each row whose predecessor (rowid - 1) is missing or another
# conversation's; rows without a conversation are boundaries, and no run.
_RUN_STARTS = """
INSERT INTO starts SELECT m.rowid, m.conversation_id FROM src.messages m
LEFT JOIN src.messages p ON p.rowid = m.rowid - 1
WHERE p.rowid IS NULL OR p.conversation_id IS NOT m.conversation_id
"""
# A run stops where the next one starts (a rowid seek: no sort, memory stays flat), the
# last one past the highest rowid seen.
_RUNS = """
INSERT INTO runs SELECT s.conversation_id, s.first, ifnull(
    (SELECT n.first FROM starts n WHERE n.first > s.first ORDER BY n.first LIMIT 1),
    (SELECT ifnull(max_rid, 0) + 1 FROM scanned))
FROM starts s WHERE s.conversation_id IS NOT NULL
"""
