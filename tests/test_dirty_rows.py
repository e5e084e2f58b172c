"""Dirty rows that real archives can hold must neither stop a run nor lose a conversation.

SQLite stores what it is given: text in an INTEGER column, a BLOB (or bytes
that are not UTF-8, as TEXT) in a TEXT column, a REAL infinity. Each test
builds such an archive with apsw and runs zexport on it as a real process.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import apsw
import pytest

from zexport.schema import DDL


def make_archive(path: Path) -> apsw.Connection:
    con = apsw.Connection(str(path))
    con.execute(DDL)
    return con


def add(con: apsw.Connection, cid: str, title: Any, created: Any = 1700000000,
        updated: Any = 1700000100) -> None:
    con.execute("INSERT INTO conversations (id, title, provider, created_at, updated_at)"
                " VALUES (?, ?, 'chatgpt', ?, ?)", (cid, title, created, updated))
    con.execute("INSERT INTO messages (id, conversation_id, role, parts, order_index)"
                " VALUES (?, ?, 'user', ?, 0)",
                (f"m-{cid}", cid, json.dumps([{"type": "text", "text": f"hello {cid}"}])))


def report(out: Path) -> dict[str, Any]:
    return json.loads((out / ".zexport" / "report.json").read_text())  # type: ignore[no-any-return]


def export(cli: Any, db: Path, out: Path, *options: str) -> tuple[Any, dict[str, Any]]:
    """``zexport run`` on a dirty archive: it must end without a traceback. Returns the
    result and the run report (empty if the run wrote none)."""
    res = cli("run", "--db", str(db), "--out", str(out), "--tz", "UTC", *options, timeout=60)
    assert "Traceback" not in res.stderr, res.stderr
    has_report = (out / ".zexport" / "report.json").is_file()
    return res, report(out) if has_report else {}


def test_dirty_conversation_rows_are_listed_and_exported(cli: Any, tmp_path: Path) -> None:
    db = tmp_path / "dirty.db"
    con = make_archive(db)
    add(con, "text-time", "Text in created_at", created="not a time", updated="2024-01-01")
    add(con, "real-time", "REAL created_at", created=1700000000.7)
    add(con, "inf-time", "Infinite created_at", created=float("inf"))
    add(con, "blob-title", b"\xff\xfeBlob title\x80")
    add(con, "bad-utf8", "placeholder")
    con.execute("UPDATE conversations SET title = CAST(x'ff41' AS TEXT) WHERE id = 'bad-utf8'")
    add(con, "fine", "Fine")
    con.close()
    out = tmp_path / "out"

    res, rep = export(cli, db, out, "--workers", "2")
    assert res.returncode == 0, res.stderr
    assert rep["counts"]["exported"] == 6 and rep["failures"] == []
    files = sorted(p.parent.name for p in out.glob("*/conversation.md"))
    assert "2023-11-14 REAL created_at" in files
    assert "2023-11-14 \ufffd\ufffdBlob title\ufffd" in files
    assert "2023-11-14 \ufffdA" in files
    assert "Infinite created_at" in files  # no usable created_at: no date prefix
    assert "Text in created_at" in files
    blob = (out / "2023-11-14 \ufffd\ufffdBlob title\ufffd" / "conversation.md").read_text()
    assert 'title: "\ufffd\ufffdBlob title\ufffd"' in blob


def test_dirty_attachment_rows_do_not_kill_workers(cli: Any, tmp_path: Path) -> None:
    db = tmp_path / "dirty.db"
    con = make_archive(db)
    add(con, "att", "Attachments")
    add(con, "other", "Other")
    picture = tmp_path / "pic.png"
    picture.write_bytes(b"\x89PNG fake")
    con.execute(
        "INSERT INTO attachments (id, message_id, type, local_path, filename, mime_type, size)"
        " VALUES ('a1', 'm-att', 'image', ?, ?, ?, 'big')",
        (str(picture).encode(), b"\xffpic.png", b"image/png"))
    con.execute(
        "INSERT INTO attachments (id, message_id, type, local_path, filename, width)"
        " VALUES ('a2', 'm-att', 'file', CAST(x'2f746d702fff' AS TEXT), 'x.bin', 1e999)")
    con.close()
    out = tmp_path / "out"

    res, rep = export(cli, db, out, "--workers", "1", "--progress", "none")
    assert rep["worker_deaths"] == [] and rep["failures"] == []
    assert rep["counts"]["exported"] == 2
    folder = out / "2023-11-14 Attachments"
    assert (folder / "attachments" / "\ufffdpic.png").read_bytes() == b"\x89PNG fake"
    assert res.returncode == 0  # a2's file is not on disk: a warning
    assert [f["attachment_id"] for f in rep["attachment_failures"]] == ["a2"]


def test_messages_with_non_utf8_text_or_blob_parts_are_kept(cli: Any, tmp_path: Path) -> None:
    db = tmp_path / "dirty.db"
    con = make_archive(db)
    for cid in ("latin1", "blob", "fine"):
        con.execute("INSERT INTO conversations (id, title, provider, created_at)"
                    " VALUES (?, ?, 'claude', 1700000000)", (cid, f"T {cid}"))
    # Latin-1 bytes stored as TEXT (apsw cannot decode them), and valid JSON stored as a BLOB.
    con.execute("INSERT INTO messages (id, conversation_id, role, parts, order_index)"
                " VALUES ('m1', 'latin1', 'user', CAST(? AS TEXT), 0)",
                ('[{"type":"text","text":"caf\xe9 ok"}]'.encode("latin-1"),))
    con.execute("INSERT INTO messages (id, conversation_id, role, parts, order_index)"
                " VALUES ('m2', 'blob', 'user', ?, 0)",
                (b'[{"type":"text","text":"parts as a blob"}]',))
    con.execute("INSERT INTO messages (id, conversation_id, role, parts, order_index)"
                " VALUES ('m3', 'fine', 'user', '[{\"type\":\"text\",\"text\":\"fine\"}]', 0)")
    con.close()
    out = tmp_path / "out"

    res, rep = export(cli, db, out, "--workers", "1", "--batch-size", "3")
    assert rep["failures"] == [], rep["failures"]
    assert res.returncode == 0, res.stderr
    latin1 = (out / "2023-11-14 T latin1" / "conversation.md").read_text()
    assert "caf\ufffd ok" in latin1 and "not valid JSON" not in latin1
    blob = (out / "2023-11-14 T blob" / "conversation.md").read_text()
    assert "parts as a blob" in blob and "b'" not in blob and "not valid JSON" not in blob
    assert "fine" in (out / "2023-11-14 T fine" / "conversation.md").read_text()
    assert any(w["conversation_id"] == "latin1" and "not valid UTF-8" in w["message"]
               for w in rep["warnings"])


def test_attachment_text_that_is_not_utf8_but_typed_text_is_repaired(
        cli: Any, tmp_path: Path) -> None:
    """Every column has its declared type (so the index is copied in SQL), but one
    filename's bytes are not UTF-8: the copy is checked and the row repaired."""
    db = tmp_path / "dirty.db"
    con = make_archive(db)
    add(con, "att", "Attachments")
    picture = tmp_path / "pic.png"
    picture.write_bytes(b"\x89PNG fake")
    con.execute(
        "INSERT INTO attachments (id, message_id, type, local_path, filename, mime_type)"
        " VALUES ('a1', 'm-att', 'image', ?, CAST(x'ff7069632e706e67' AS TEXT), 'image/png')",
        (str(picture),))
    con.close()
    out = tmp_path / "out"

    res, rep = export(cli, db, out, "--workers", "1", "--progress", "none")
    assert rep["worker_deaths"] == [] and rep["failures"] == [], rep
    assert res.returncode == 0, res.stderr
    folder = out / "2023-11-14 Attachments"
    assert (folder / "attachments" / "\ufffdpic.png").read_bytes() == b"\x89PNG fake"


def test_conversation_rows_whose_id_is_null_or_a_blob_fail_alone(cli: Any,
                                                                  tmp_path: Path) -> None:
    """``id TEXT PRIMARY KEY`` admits NULL and BLOB ids (SQLite's rowid tables do), and
    text that is not UTF-8. Such a row cannot be addressed by id, so it cannot be
    exported: it must be reported as a failure, not stop the run (NULL: exit 2; not UTF-8:
    a traceback) or vanish from a run reported "ok" (BLOB)."""
    db = tmp_path / "ids.db"
    # The app's schema says NOT NULL; an archive written by an older app or another
    # tool may not (SQLite then takes NULL in a rowid table's TEXT PRIMARY KEY).
    con = apsw.Connection(str(db))
    con.execute(DDL.replace("`id` text PRIMARY KEY NOT NULL,\n\t`title`",
                            "`id` text PRIMARY KEY,\n\t`title`"))
    add(con, "fine", "Same title")
    con.execute("INSERT INTO conversations (id, title, provider, created_at)"
                " VALUES (NULL, 'Same title', 'claude', 1700000000)")
    con.execute("INSERT INTO conversations (id, title, provider, created_at)"
                " VALUES (x'626c6f62', 'Same title', 'claude', 1700000000)")
    con.execute("INSERT INTO conversations (id, title, provider, created_at, current_node_id)"
                " VALUES (CAST(x'ff41' AS TEXT), 'Same title', CAST(x'fe' AS TEXT), 1700000000,"
                " CAST(x'fd' AS TEXT))")
    add(con, "bad-provider", "Other title")  # addressable: exported despite its provider
    con.execute("UPDATE conversations SET provider = CAST(x'fe41' AS TEXT),"
                " current_node_id = CAST(x'fd' AS TEXT) WHERE id = 'bad-provider'")
    con.close()
    out = tmp_path / "out"
    said = cli("run", "--db", str(db), "--out", str(out), "--dry-run", "--progress", "json",
               timeout=60)
    assert said.returncode == 0, said.stderr
    plan = json.loads(said.stdout)  # the dry run counts them apart, not as "unchanged"
    assert (plan["selected"], plan["render"], plan["unexportable"], plan["unchanged"]) == (
        5, 2, 3, 0)

    res, rep = export(cli, db, out, "--workers", "2")
    assert res.returncode == 1, res.stderr  # some conversations failed, the rest exported
    assert rep["status"] == "partial"
    assert rep["counts"]["selected"] == 5 and rep["counts"]["exported"] == 2
    assert rep["counts"]["failed"] == 3 and rep["counts"]["not_reached"] == 0
    assert sorted(f["conversation_id"] for f in rep["failures"]) == [
        "NULL", "X'626C6F62'", "X'FF41'"]
    assert all("id" in f["reason"] for f in rep["failures"])
    assert sorted(p.parent.name for p in out.glob("*/conversation.md")) == [
        "2023-11-14 Other title", "2023-11-14 Same title"]


@pytest.mark.parametrize("encoding", ["UTF-16le", "UTF-16be"])
def test_a_utf16_archive_is_read_as_text_not_as_garbled_bytes(cli: Any, tmp_path: Path,
                                                              encoding: str) -> None:
    """SQLite databases may be UTF-16 (``PRAGMA encoding``). Text read as bytes (the
    repair path for bytes that are not UTF-8) comes in the database's encoding, so
    decoding it as UTF-8 garbled every title, message and attachment name, in a
    run reported "ok"."""
    db = tmp_path / "utf16.db"
    con = apsw.Connection(str(db))
    con.execute(f"PRAGMA encoding = '{encoding}'")
    con.execute(DDL)
    add(con, "c1", "Café 日本 🎉")
    (tmp_path / "pic.png").write_bytes(b"png")
    con.execute("INSERT INTO attachments (id, message_id, type, local_path, filename)"
                " VALUES ('a1', 'm-c1', 'image', ?, 'Été.png')", (str(tmp_path / "pic.png"),))
    # A BLOB name sends the attachment index down its repairing (per-row) path.
    con.execute("INSERT INTO attachments (id, message_id, type, local_path, filename)"
                " VALUES ('a2', 'm-c1', 'file', ?, x'6e616d65ff')", (str(tmp_path / "pic.png"),))
    con.close()
    out = tmp_path / "out"

    res, _ = export(cli, db, out, "--workers", "1", "--format", "json")

    assert res.returncode == 0, res.stderr
    doc = json.loads((out / "2023-11-14 Café 日本 🎉" / "conversation.json").read_text())
    assert doc["title"] == "Café 日本 🎉" and doc["provider"] == "chatgpt"
    assert doc["messages"][0]["content"] == "hello c1"
    assert [a["filename"] for a in doc["messages"][0]["attachments"]] == ["Été.png", "name\ufffd"]
    assert (out / "2023-11-14 Café 日本 🎉" / "attachments" / "Été.png").read_bytes() == b"png"
    assert [w["message"] for w in report(out)["warnings"]] == ["message m-c1: NULL created_at"]


def test_unreadable_attachments_table_makes_the_run_partial(cli: Any, tmp_path: Path) -> None:
    """A damaged attachments table must not stop the export, nor pass for success."""
    db = tmp_path / "damaged.db"
    res = cli("sample", str(db), "-n", "30", timeout=60)
    assert res.returncode == 0, res.stderr
    con = apsw.Connection(str(db))
    root = con.execute("SELECT rootpage FROM sqlite_master WHERE name='attachments'").fetchone()
    page = con.execute("PRAGMA page_size").fetchone()
    assert root and page
    con.close()
    with open(db, "r+b") as fh:  # the table's root page: reading any row fails
        fh.seek((root[0] - 1) * page[0])
        fh.write(b"\xff" * 64)
    out = tmp_path / "out"
    res, rep = export(cli, db, out, "--no-downloads", "--progress", "none")
    assert res.returncode == 1  # partial
    assert rep["status"] == "partial" and rep["counts"]["exported"] == 30
    assert any("attachments could not be read" in e for e in rep["run_errors"])
