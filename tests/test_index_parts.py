"""The side indexes in parts (zexport.sources.archive.index_parts): however the archive
is cut into rowid ranges, a worker reading from every part reads exactly what one
whole index gives, on the app's real archives and on ours; with a part missing it
reads by column, never a conversation short; a cancelled part leaves no file."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Any

import apsw
import pytest
from corpora import APP_FIXTURES
from test_real_schema import app_archive

from zexport.model import Conversation
from zexport.sample import make_sample
from zexport.sources.archive import (
    BatchReader,
    IndexInterrupted,
    build_attachment_index,
    build_message_index,
    build_part,
    part_path,
    plan_parts,
)
from zexport.sources.archive import index_parts as index_parts_module


def everything(reader: BatchReader, db: Path) -> list[Any]:
    """Every conversation as read, messages and attachments with every field."""
    with apsw.Connection(str(db), flags=apsw.SQLITE_OPEN_READONLY) as conn:
        ids = [str(r[0]) for r in conn.execute("SELECT id FROM conversations ORDER BY id")]
    conversations: list[Conversation] = []
    for start in range(0, len(ids), 16):  # batches, as workers read them
        conversations += reader.read([(cid, cid) for cid in ids[start:start + 16]])
    return [(c.id, c.warnings, [(m.id, m.parts_raw, m.order_index, m.parent_id,
                                 [dataclasses.astuple(a) for a in m.attachments])
                                for m in c.messages]) for c in conversations]


def build_parts(db: Path, run_dir: Path, count: int) -> list[str]:
    planned = plan_parts(str(db), count)
    assert planned.errors.messages is None and planned.errors.attachments is None
    paths = [part_path(str(run_dir), part.number) for part in planned.parts]
    for part, path in zip(planned.parts, paths, strict=True):
        errors = build_part(str(db), path, part)
        assert (errors.messages, errors.attachments) == (None, None)
    return paths


@pytest.fixture(scope="module")
def archives(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    tmp = tmp_path_factory.mktemp("archives")
    sample = tmp / "sample.db"
    make_sample(sample, conversations=80, seed=5)
    together = app_archive(tmp / "together.db", [f"c{i}" for i in range(30)], per=7,
                           interleaved=False)
    with apsw.Connection(str(together)) as conn:  # gaps, and a message of no conversation
        conn.execute("DELETE FROM messages WHERE rowid IN (5, 6, 40)")
        conn.execute("INSERT INTO messages (id, conversation_id, role, parts, order_index)"
                     " VALUES ('lost', NULL, 'user', '[]', 0)")
    return {"realistic": APP_FIXTURES / "realistic.db", "table": APP_FIXTURES / "table.db",
            "sample": sample, "together": together,
            "interleaved-utf16": app_archive(tmp / "utf16.db", [f"c{i}" for i in range(9)],
                                             per=5, encoding="UTF-16le")}


@pytest.mark.parametrize("name", ["realistic", "table", "sample", "together",
                                  "interleaved-utf16"])
def test_any_number_of_parts_reads_what_one_whole_index_reads(
        archives: dict[str, Path], name: str, tmp_path: Path) -> None:
    db = archives[name]
    whole = [str(tmp_path / "messages.db"), str(tmp_path / "attachments.db")]
    assert build_message_index(str(db), whole[0])
    build_attachment_index(str(db), whole[1])
    one = BatchReader(str(db), whole)
    try:
        expected = everything(one, db)
        assert one.scanned_rowid is not None  # read through the runs, not by column
    finally:
        one.close()
    assert expected and sum(len(c[2]) for c in expected) > 0
    if name == "sample":  # the sample has attachments: they are compared too
        assert any(m[4] for c in expected for m in c[2])
    for count in (1, 2, 3, 7):
        run_dir = tmp_path / f"run-{count}"
        run_dir.mkdir()
        reader = BatchReader(str(db), build_parts(db, run_dir, count))
        try:
            assert everything(reader, db) == expected, f"{count} parts"
            assert reader.scanned_rowid == one.scanned_rowid
        finally:
            reader.close()
        assert sorted(os.listdir(run_dir)) == [f"index-{i}.db" for i in range(count)]


def test_with_a_part_missing_messages_are_read_by_column_and_attachments_not_at_all(
        archives: dict[str, Path], tmp_path: Path) -> None:
    db = archives["sample"]
    paths = build_parts(db, tmp_path, 3)
    complete = BatchReader(str(db), paths)
    try:
        expected = everything(complete, db)
    finally:
        complete.close()
    os.unlink(paths[1])
    reader = BatchReader(str(db), paths)
    try:
        got = everything(reader, db)
        assert reader.scanned_rowid is None  # the runs do not cover every rowid
    finally:
        reader.close()
    without_attachments = [(cid, warnings, [(*m[:4], []) for m in messages])
                           for cid, warnings, messages in expected]
    assert got == without_attachments


def test_a_cancelled_part_stops_and_leaves_no_file(archives: dict[str, Path], tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(index_parts_module, "INTERRUPT_STEPS", 100)
    db = archives["sample"]
    planned = plan_parts(str(db), 1)
    asked = []

    def stop() -> bool:
        asked.append(True)
        return len(asked) > 2

    with pytest.raises(IndexInterrupted):
        build_part(str(db), str(tmp_path / "index-0.db"), planned.parts[0], stop)
    assert len(asked) == 3
    assert os.listdir(tmp_path) == []


def test_no_runs_are_planned_for_an_archive_with_its_own_index(tmp_path: Path) -> None:
    db = app_archive(tmp_path / "app.db", ["a", "b"], per=2)
    with apsw.Connection(str(db)) as conn:
        conn.execute("CREATE INDEX conversation_id_idx ON messages(conversation_id)")
    planned = plan_parts(str(db), 2)
    assert [p.messages for p in planned.parts] == [None, None]
    assert [p.attachments is not None for p in planned.parts] == [True, True]
