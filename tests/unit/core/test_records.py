"""The record store on its own: a batch's records replace the kept ones, read back in
plan order; a store an earlier zexport made (a WITHOUT ROWID table) keeps working."""

from __future__ import annotations

from pathlib import Path

import apsw
import pytest

from zexport.core.records import RecordStore, iter_kept
from zexport.core.runfiles import PlanWriter, write_shard


def plan(tmp_path: Path, ids: list[str]) -> str:
    path = str(tmp_path / "plan.jsonl")
    writer = PlanWriter(path)
    for cid in ids:
        writer.add(cid, cid.upper(), "chatgpt", 1, 2, 3, cid)
    writer.close()
    return path


@pytest.mark.parametrize("older_table", [False, True])
def test_batches_replace_kept_records_read_back_in_plan_order(
        tmp_path: Path, older_table: bool) -> None:
    path = tmp_path / "records" / "html.db"
    if older_table:
        path.parent.mkdir()
        con = apsw.Connection(str(path))
        con.execute("CREATE TABLE records (conversation_id TEXT NOT NULL, seq INTEGER NOT NULL,"
                    " data BLOB NOT NULL, PRIMARY KEY (conversation_id, seq)) WITHOUT ROWID")
        con.close()
    store = RecordStore(str(path))
    first, second = str(tmp_path / "1.msgpack"), str(tmp_path / "2.msgpack")
    write_shard(first, [("b", b"b0"), ("a", b"a0"), ("b", b"b1"), ("c", b"c0")])
    store.replace(["a", "b", "c"], first, keep={"a", "b", "c"})
    # A re-run renders b again (one record now) and c fails: c's records go, a's stay.
    write_shard(second, [("b", b"b-new"), ("c", b"c-new")])
    store.replace(["b", "c"], second, keep={"b"})
    store.close()
    kept = [(r.conversation_id, r.data) for r in iter_kept(
        str(path), plan(tmp_path, ["c", "b", "a"]), failures={})]
    assert kept == [("b", b"b-new"), ("a", b"a0")]
    con = apsw.Connection(str(path), flags=apsw.SQLITE_OPEN_READONLY)
    sql = con.execute("SELECT sql FROM sqlite_master WHERE name = 'records'").fetchone()[0]
    con.close()
    assert sql.rstrip().endswith("WITHOUT ROWID") is older_table
