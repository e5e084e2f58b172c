"""Archives in the app's real schema: no index on ``messages.conversation_id``.

The message index (:func:`zexport.sources.archive.build_message_index`) must give the
workers every message of a batch without scanning the messages table, never
write to the archive, follow what the app writes during a run, and change
nothing in the output. Claude's all-zero root parent is a root, not a
missing parent. The schema is the app's own (``app-empty-sqlite.db``) and
the Claude data the app's own transforms (``realistic.db``).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import apsw
import pytest
from conftest import tree_digest
from corpora import APP_FIXTURES

from zexport.model import CLAUDE_ROOT_PARENT, Conversation
from zexport.sample import make_sample
from zexport.sources.archive import BatchReader, build_attachment_index, build_message_index

APP = APP_FIXTURES
APP_SCHEMA = APP / "app-empty-sqlite.db"
REALISTIC = APP / "realistic.db"
CLAUDE_ID = "adc92776-9458-48d3-946e-1ab69e3516b4"

pytestmark = pytest.mark.skipif(not APP_SCHEMA.is_file(), reason="the app's fixtures are absent")


def app_archive(path: Path, conversations: list[str], per: int, encoding: str = "UTF-8",
                interleaved: bool = True) -> Path:
    """A copy of the app's empty schema holding ``per`` messages for each conversation,
    interleaved (message after message, conversation after conversation: no two of a
    conversation's rowids follow each other) or, as the app writes them, each
    conversation's messages together."""
    if encoding == "UTF-8":
        shutil.copyfile(APP_SCHEMA, path)
        os.chmod(path, 0o644)
        conn = apsw.Connection(str(path))
    else:  # the app's DDL, replayed in a database of another text encoding
        src = apsw.Connection(str(APP_SCHEMA), flags=apsw.SQLITE_OPEN_READONLY)
        ddl = [str(r[0]) for r in src.execute(
            "SELECT sql FROM sqlite_master WHERE sql IS NOT NULL ORDER BY rowid")]
        src.close()
        conn = apsw.Connection(str(path))
        conn.execute(f"PRAGMA encoding = '{encoding}'")
        for statement in ddl:
            conn.execute(statement)
    with conn:
        for i, cid in enumerate(conversations):
            conn.execute("INSERT INTO conversations (id, title, provider, created_at,"
                         " updated_at, current_node_id) VALUES (?, ?, 'claude', ?, ?, ?)",
                         (cid, f"Conversation {cid}", 1_700_000_000 + i, 1_700_000_100 + i,
                          f"{cid}-m{per - 1}"))
        order = ([(k, cid) for k in range(per) for cid in conversations] if interleaved
                 else [(k, cid) for cid in conversations for k in range(per)])
        for k, cid in order:
            parent = CLAUDE_ROOT_PARENT if k == 0 else f"{cid}-m{k - 1}"
            conn.execute(
                "INSERT INTO messages (id, conversation_id, role, parts, created_at,"
                " order_index, parent_id, sibling_ids, sibling_index)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, '[]', 0)",
                (f"{cid}-m{k}", cid, "user" if k % 2 == 0 else "assistant",
                 json.dumps([{"type": "text", "text": f"{cid} says {k} ✓"}]),
                 1_700_000_000 + k, k, parent))
    conn.close()
    return path


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@contextmanager
def statement_counters(conn: apsw.Connection) -> Iterator[dict[str, int]]:
    """Sum of SQLite's per-statement counters (full-scan steps, VM steps) while inside."""
    totals = {"SQLITE_STMTSTATUS_FULLSCAN_STEP": 0, "SQLITE_STMTSTATUS_VM_STEP": 0}

    def profile(event: dict[str, Any]) -> None:
        for key in totals:
            totals[key] += int(event["stmt_status"][key])

    conn.trace_v2(apsw.SQLITE_TRACE_PROFILE, profile, id="counters")
    try:
        yield totals
    finally:
        conn.trace_v2(0, None, id="counters")


def shape(conversations: list[Conversation]) -> list[tuple[str, list[tuple[str, str, int]]]]:
    """What a read produced: each conversation's messages (id, parts, order)."""
    return [(c.id, [(m.id, m.parts_raw, m.order_index) for m in c.messages])
            for c in conversations]


@pytest.mark.parametrize(("encoding", "interleaved"), [
    ("UTF-8", False), ("UTF-8", True), ("UTF-16le", True)])
def test_message_index_covers_every_message_in_runs_and_never_writes_the_archive(
        tmp_path: Path, encoding: str, interleaved: bool) -> None:
    archive_dir = tmp_path / "archive"
    archive_dir.mkdir()
    db = app_archive(archive_dir / "app.db", [f"c{i}" for i in range(7)], per=5,
                     encoding=encoding, interleaved=interleaved)
    with apsw.Connection(str(db)) as conn:  # a message of no conversation, and one dangling
        conn.execute("INSERT INTO messages (id, conversation_id, role, parts, order_index)"
                     " VALUES ('lost', NULL, 'user', '[]', 0), ('gone', 'c-x', 'user', '[]', 0)")
        conn.execute("DELETE FROM messages WHERE id = 'c3-m2'")  # a gap in the rowids
    before, listing = sha256(db), sorted(os.listdir(archive_dir))
    os.chmod(db, 0o444)  # read-only, as a running app's archive may be to us
    index = tmp_path / "run" / "messages.db"
    index.parent.mkdir()

    assert build_message_index(str(db), str(index)) is True

    assert sha256(db) == before and sorted(os.listdir(archive_dir)) == listing
    assert sorted(os.listdir(index.parent)) == ["messages.db"]  # no partial file left
    side = apsw.Connection(str(index), flags=apsw.SQLITE_OPEN_READONLY)
    side.execute("ATTACH DATABASE ? AS a", (str(db),))
    expected = sorted(side.execute(
        "SELECT conversation_id, rowid FROM a.messages WHERE conversation_id IS NOT NULL"))
    assert len(expected) == 7 * 5 - 1 + 1
    covered = sorted(side.execute(
        "SELECT s.conversation_id, m.rowid FROM runs s JOIN a.messages m"
        " ON m.rowid >= s.first AND m.rowid < s.stop"))
    assert covered == expected  # every message once, under its own conversation
    runs = side.execute("SELECT count(*) FROM runs").fetchall()[0][0]
    # together: a run per conversation, plus one where the deleted message left a gap
    assert runs == (len(expected) if interleaved else 7 + 1 + 1)
    assert side.execute("SELECT stop - 1 FROM built WHERE what = 'runs'").fetchall() == (
        side.execute("SELECT max(rowid) FROM a.messages").fetchall())
    assert side.execute("PRAGMA encoding").fetchall() == [(encoding,)]


def test_no_message_index_when_the_archive_has_its_own(tmp_path: Path) -> None:
    db = app_archive(tmp_path / "app.db", ["a", "b"], per=2)
    with apsw.Connection(str(db)) as conn:
        conn.execute("CREATE INDEX conversation_id_idx ON messages(conversation_id)")
    index = tmp_path / "messages.db"
    assert build_message_index(str(db), str(index)) is False
    assert not index.exists()


def read_with_counters(db: Path, index: Path | None,
                       ids: list[str]) -> tuple[list[Conversation], dict[str, int]]:
    reader = BatchReader(str(db), [str(index)] if index else [])
    try:
        reader.read([(ids[0], "warm-up")])  # attaches the index (outside the counted read)
        with statement_counters(reader.conn) as counters:
            conversations = reader.read([(cid, cid) for cid in ids])
        return conversations, counters
    finally:
        reader.close()


def test_a_batch_read_by_rowid_costs_the_same_however_large_the_archive(
        tmp_path: Path) -> None:
    """The work SQLite does for one batch (its VM steps) does not grow with the archive,
    and no statement scans a table; without the index, the same read scans the messages."""
    batch = [f"m{i}" for i in range(6)]

    def others(n: int) -> list[str]:  # conversations sorting before and after the batch
        return [f"{side}{i:04d}" for i in range(n) for side in "az"]

    small = app_archive(tmp_path / "small.db", others(5) + batch, per=4)
    large = app_archive(tmp_path / "large.db", others(500) + batch + others(600)[1000:],
                        per=4)
    results = {}
    for db in (small, large):
        index = tmp_path / f"{db.stem}-messages.db"
        assert build_message_index(str(db), str(index))
        results[db.stem] = read_with_counters(db, index, batch)
    (small_read, small_steps), (large_read, large_steps) = results["small"], results["large"]

    assert shape(small_read) == shape(large_read)
    assert [len(c.messages) for c in large_read] == [4] * 6
    assert small_steps["SQLITE_STMTSTATUS_FULLSCAN_STEP"] == 0
    assert large_steps["SQLITE_STMTSTATUS_FULLSCAN_STEP"] == 0
    # Not exactly equal: SQLite steps over a near key instead of seeking it (OP_SeekScan),
    # which depends on the b-tree's layout; a scan would add thousands of steps.
    small_vm, large_vm = (steps["SQLITE_STMTSTATUS_VM_STEP"] for steps in (small_steps,
                                                                            large_steps))
    assert abs(large_vm - small_vm) <= small_vm // 100
    by_column, scanned = read_with_counters(large, None, batch)
    assert shape(by_column) == shape(large_read)
    assert scanned["SQLITE_STMTSTATUS_FULLSCAN_STEP"] == 1206 * 4 - 1  # it sees a scan


def test_reads_follow_what_the_app_writes_during_the_run(tmp_path: Path) -> None:
    """The app keeps syncing while zexport runs (WAL): a message added after the index
    was made is read; a conversation re-synced (its messages deleted and inserted again,
    under new rowids) or with a message deleted is read as it is now."""
    ids = ["added", "resynced", "trimmed", "same"]
    db = app_archive(tmp_path / "app.db", ids, per=3)
    index = tmp_path / "messages.db"
    assert build_message_index(str(db), str(index))
    app = apsw.Connection(str(db))
    app.execute("PRAGMA journal_mode=WAL").fetchall()
    with app:
        app.execute("INSERT INTO messages (id, conversation_id, role, parts, order_index,"
                    " parent_id) VALUES ('added-m3', 'added', 'user', '[]', 3, 'added-m2')")
        rows = app.execute("SELECT * FROM messages WHERE conversation_id = 'resynced'"
                           " ORDER BY rowid").fetchall()
        app.execute("DELETE FROM messages WHERE conversation_id = 'resynced'")
        app.executemany("INSERT INTO messages VALUES (?,?,?,?,?,?,?,?,?,?)",
                        [(f"{r[0]}-again", *r[1:3], r[3].replace("says", "now says"),
                          *r[4:]) for r in rows])
        app.execute("DELETE FROM messages WHERE id = 'trimmed-m1'")
    try:
        through_index = BatchReader(str(db), [str(index)])
        by_column = BatchReader(str(db))
        items = [(cid, cid) for cid in ids]
        got, want = through_index.read(items), by_column.read(items)
        through_index.close()
        by_column.close()
    finally:
        app.close()
    assert shape(got) == shape(want)
    messages = {c.id: [m.id for m in c.messages] for c in got}
    assert messages["added"] == ["added-m0", "added-m1", "added-m2", "added-m3"]
    assert messages["resynced"] == ["resynced-m0-again", "resynced-m1-again",
                                    "resynced-m2-again"]
    assert messages["trimmed"] == ["trimmed-m0", "trimmed-m2"]
    assert "now says" in got[1].messages[0].parts[0]["text"]


def test_claude_all_zero_parent_is_a_root() -> None:
    """realistic.db's Claude conversation (made by the app's transforms) hangs its first
    message under the all-zero uuid: no warning, and the branch logic starts there."""
    reader = BatchReader(str(REALISTIC))
    try:
        (conv,) = reader.read([(CLAUDE_ID, "claude")])
    finally:
        reader.close()
    assert conv.messages[0].parent_id == CLAUDE_ROOT_PARENT  # kept as stored (json shows it)
    assert conv.warnings == []
    assert [m.order_index for m in conv.active_branch()] == list(range(8))
    order = conv.tree_order()
    assert [m.id for m, _, _ in order] == [m.id for m in conv.messages]
    assert {(n, count) for _, n, count in order} == {(1, 1)}


def make_pair(tmp_path: Path, conversations: int) -> tuple[Path, Path]:
    """``(real, indexed)``: one ``zexport sample``, without and with the messages index."""
    sample = tmp_path / "sample.db"
    make_sample(sample, conversations=conversations, seed=3)
    other = tmp_path / "other.db"
    shutil.copyfile(sample, other)
    conn = apsw.Connection(str(sample), flags=apsw.SQLITE_OPEN_READONLY)
    indexes = [str(r[1]) for r in conn.execute("PRAGMA index_list(messages)")
               if not str(r[1]).startswith("sqlite_autoindex")]
    conn.close()
    with apsw.Connection(str(other)) as copy:
        if indexes:  # today's sample has the index: the copy gets the real schema
            for name in indexes:
                copy.execute(f'DROP INDEX "{name}"')
            return other, sample
        copy.execute("CREATE INDEX conversation_id_idx ON messages(conversation_id)")
    return sample, other


def without_run_time(tree: Path) -> dict[str, Any]:
    """Every json file of an export, parsed, without the one run-time field."""
    out: dict[str, Any] = {}
    for path in sorted(tree.rglob("conversation.json")):
        doc = json.loads(path.read_text())
        doc.pop("exported_at", None)
        out[path.relative_to(tree).as_posix()] = doc
    return out


@pytest.mark.timeout(300)
def test_real_schema_exports_exactly_what_the_indexed_archive_does(
        tmp_path: Path, cli: Callable[..., Any]) -> None:
    """Real controller, workers, ZeroMQ and SQLite: the real schema (read through the
    message index) and the same archive with its index give the same bytes."""
    real, indexed = make_pair(tmp_path, 150)
    outputs = {}
    for name, db in (("real", real), ("indexed", indexed)):
        for fmt in ("markdown", "json"):
            out = tmp_path / f"out-{name}-{fmt}"
            proc = cli("run", "--db", str(db), "--out", str(out), "--format", fmt,
                       "--workers", "2", "--tz", "UTC", "--progress", "none", "--no-downloads")
            assert proc.returncode == 0, proc.stderr  # lost attachments are warnings
            report = json.loads((out / ".zexport" / "report.json").read_text())
            assert report["counts"]["exported"] == 150 and report["failures"] == []
            assert not [n for n in report["notes"] if "message index" in n]
            outputs[name, fmt] = out
    markdown = tree_digest(outputs["real", "markdown"])
    assert len([p for p in markdown if p.endswith("conversation.md")]) == 150
    assert markdown == tree_digest(outputs["indexed", "markdown"])
    assert without_run_time(outputs["real", "json"]) == without_run_time(
        outputs["indexed", "json"])


@pytest.mark.timeout(120)
def test_realistic_archive_exports_without_missing_parent_warnings(
        tmp_path: Path, cli: Callable[..., Any]) -> None:
    """The app's own archive, in its real schema, through real processes: the Claude
    conversation is exported whole, with no "missing parent" warning, and the same bytes
    as from a copy with the messages index."""
    indexed = tmp_path / "indexed.db"
    shutil.copyfile(REALISTIC, indexed)
    os.chmod(indexed, 0o644)
    with apsw.Connection(str(indexed)) as conn:
        conn.execute("CREATE INDEX conversation_id_idx ON messages(conversation_id)")
    trees = []
    for db in (REALISTIC, indexed):
        out = tmp_path / f"out-{db.stem}"
        proc = cli("run", "--db", str(db), "--out", str(out), "--tz", "UTC",
                   "--progress", "none", "--no-downloads")
        assert proc.returncode == 0, proc.stderr  # missing attachment files: warnings
        report = json.loads((out / ".zexport" / "report.json").read_text())
        assert report["counts"]["exported"] == 3
        assert [w for w in report["warnings"] if "is missing" in w["message"]] == []
        trees.append(tree_digest(out))
    assert trees[0] == trees[1]
    claude = [p for p in trees[0] if p.endswith("conversation.md")]
    assert len(claude) == 3


def test_side_files_keep_sqlite_memory_small_however_large_the_archive(tmp_path: Path) -> None:
    """The controller writes both side files while it plans; their page caches must not
    fill with the archive (the controller's peak memory would grow with it)."""
    db = app_archive(tmp_path / "app.db", [f"c{i}" for i in range(200)], per=20,
                     interleaved=False)
    with apsw.Connection(str(db)) as conn:  # 4,000 messages of 1.5 kB: 6 MB of pages
        conn.execute("UPDATE messages SET parts = json_array(json_object("
                     "'type', 'text', 'text', hex(zeroblob(750))))")
    base = apsw.status(apsw.SQLITE_STATUS_MEMORY_USED, True)[0]  # resets the high-water

    assert build_message_index(str(db), str(tmp_path / "messages.db")) is True
    build_attachment_index(str(db), str(tmp_path / "attachments.db"))

    peak = apsw.status(apsw.SQLITE_STATUS_MEMORY_USED)[1] - base
    assert peak < 1.5 * 2**20, f"{peak / 2**20:.1f} MiB of SQLite heap"
