"""Re-runs after a title change move the conversation's folder, even when an attachment
was missing last time (such a conversation is rendered again, but its folder is known)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import apsw
from conftest import tree_digest

from zexport.schema import DDL


def make(db: Path, files: Path) -> None:
    con = apsw.Connection(str(db))
    con.execute(DDL)
    files.mkdir()
    for cid, title in (("a", "Alpha"), ("b", "Beta")):
        con.execute("INSERT INTO conversations (id, title, provider, created_at, updated_at)"
                    " VALUES (?, ?, 'claude', 1700000000, 1700000000)", (cid, title))
        con.execute("INSERT INTO messages (id, conversation_id, role, parts, order_index)"
                    " VALUES (?, ?, 'user', '[{\"type\":\"text\",\"text\":\"hi\"}]', 0)",
                    (f"m-{cid}", cid))
        (files / f"{cid}.txt").write_text(f"file of {cid}")
        con.execute("INSERT INTO attachments (id, message_id, type, local_path, filename)"
                    " VALUES (?, ?, 'file', ?, ?)",
                    (f"att-{cid}", f"m-{cid}", str(files / f"{cid}.txt"), f"{cid}.txt"))
    # 'a' also has an attachment that cannot be had: it is exported, but not "done".
    con.execute("INSERT INTO attachments (id, message_id, type, local_path, filename)"
                " VALUES ('gone', 'm-a', 'file', '/nonexistent/gone.txt', 'gone.txt')")
    con.close()


def retitle(db: Path, titles: dict[str, str]) -> None:
    con = apsw.Connection(str(db))
    for cid, title in titles.items():
        con.execute("UPDATE conversations SET title = ? WHERE id = ?", (title, cid))
    con.close()


def test_title_changes_move_folders_of_conversations_with_missing_attachments(
        cli: Any, tmp_path: Path) -> None:
    db = tmp_path / "a.db"
    make(db, tmp_path / "files")
    out = tmp_path / "out"
    args = ["--db", str(db), "--out", str(out), "--tz", "UTC", "--progress", "none"]
    assert cli("run", *args, timeout=60).returncode == 0  # 'gone' is unavailable: a warning

    retitle(db, {"a": "Beta", "b": "Alpha"})  # a swap: each takes the other's folder name
    res = cli("run", *args, timeout=60)
    assert res.returncode == 0, res.stderr
    fresh = tmp_path / "fresh"
    assert cli("run", "--db", str(db), "--out", str(fresh), "--tz", "UTC",
               timeout=60).returncode == 0
    assert tree_digest(out) == tree_digest(fresh)

    retitle(db, {"a": "Gamma"})  # a plain rename: the old folder must not stay behind
    assert cli("run", *args, timeout=60).returncode == 0
    fresh2 = tmp_path / "fresh2"
    assert cli("run", "--db", str(db), "--out", str(fresh2), "--tz", "UTC",
               timeout=60).returncode == 0
    assert tree_digest(out) == tree_digest(fresh2)
    report = json.loads((out / ".zexport" / "report.json").read_text())
    assert report["counts"]["exported"] == 1 and report["counts"]["skipped"] == 1


def test_force_still_moves_folders_whose_name_changed(cli: Any, tmp_path: Path) -> None:
    db = tmp_path / "a.db"
    make(db, tmp_path / "files")
    out = tmp_path / "out"
    args = ["--db", str(db), "--out", str(out), "--progress", "none"]
    assert cli("run", *args, "--tz", "UTC", timeout=60).returncode == 0

    retitle(db, {"b": "Beta renamed"})
    # A title change, and a zone where 2023-11-14 22:13 UTC is already the 15th.
    res = cli("run", *args, "--tz", "Asia/Tokyo", "--force", timeout=60)
    assert res.returncode == 0, res.stderr

    fresh = tmp_path / "fresh"
    assert cli("run", "--db", str(db), "--out", str(fresh), "--tz", "Asia/Tokyo",
               timeout=60).returncode == 0
    assert sorted(p.name for p in out.iterdir() if p.name != ".zexport") == [
        "2023-11-15 Alpha", "2023-11-15 Beta renamed"]
    assert tree_digest(out) == tree_digest(fresh)
