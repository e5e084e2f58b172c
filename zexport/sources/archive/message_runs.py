"""The side index of where each conversation's messages are, as runs of rowids.

Why: the app's schema has no index on ``messages.conversation_id``, so a
worker's ``WHERE conversation_id IN (...)`` would scan the whole table per
batch (quadratic in the archive). Each run writes it once, in parts
(:mod:`.index_parts`); workers join it to the archive and read by rowid range.
"""

from __future__ import annotations

import apsw


def has_conversation_index(conn: apsw.Connection) -> bool:
    """Whether the archive has its own index led by ``messages.conversation_id``
    (our older samples did; the app's migrations never create one)."""
    for row in conn.execute("PRAGMA index_list(messages)"):
        name = str(row[1]).replace('"', '""')
        first = conn.execute(f'PRAGMA index_info("{name}")').fetchone()
        if first is not None and first[2] == "conversation_id":
            return True
    return False


def write_runs(side: apsw.Connection, first: int, stop: int) -> None:
    """Write the runs of the messages whose rowids are in ``[first, stop)`` into ``side``
    (the archive attached as ``src``), all in SQL: no per-row Python.

    A run starts at each row whose predecessor (rowid - 1) is missing, another
    conversation's, or before ``first``; so ranges are independent and a
    conversation that crosses a range boundary has one run more. Runs cover
    rowids up to ``stop``; workers also read the rows above the last range by
    ``conversation_id``, so messages the app inserts during the run are seen.
    """
    side.execute(
        "CREATE TABLE runs (conversation_id TEXT NOT NULL, first INTEGER NOT NULL,"
        " stop INTEGER NOT NULL, PRIMARY KEY (conversation_id, first)) WITHOUT ROWID")
    side.execute("CREATE TABLE starts (first INTEGER PRIMARY KEY, conversation_id TEXT)")
    rowids = {"first": first, "stop": stop}
    with side:  # one transaction: one snapshot of the archive for both statements
        side.execute(_RUN_STARTS, rowids)
        side.execute(_RUNS, rowids)
        side.execute("DROP TABLE starts")


# A run starts at each row whose predecessor (rowid - 1) is missing or another
# conversation's; rows without a conversation are boundaries, and no run.
_RUN_STARTS = """
INSERT INTO starts SELECT m.rowid, m.conversation_id FROM src.messages m
LEFT JOIN src.messages p ON p.rowid = m.rowid - 1
WHERE m.rowid >= :first AND m.rowid < :stop
  AND (p.rowid IS NULL OR m.rowid = :first OR p.conversation_id IS NOT m.conversation_id)
"""
# A run stops where the next one starts (a rowid seek: no sort, memory stays flat), the
# last one at the range's end.
_RUNS = """
INSERT INTO runs SELECT s.conversation_id, s.first, ifnull(
    (SELECT n.first FROM starts n WHERE n.first > s.first ORDER BY n.first LIMIT 1), :stop)
FROM starts s WHERE s.conversation_id IS NOT NULL
"""
