"""A user's edit is never lost (BRIEF §4b): real `zexport run` processes re-run over notes
that were edited, with and without missing attachments, with and without a changed
archive row, a title change, and a `conversation.md` zexport never wrote."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import apsw
import pytest

from zexport.schema import DDL

pytestmark = pytest.mark.timeout(240)

# id -> (title, has an attachment on disk, has one missing)
CONVERSATIONS = {
    "a": ("Alpha", True, False),     # edited, row unchanged
    "b": ("Bravo", False, True),     # edited, row unchanged, attachment missing
    "c": ("Charlie", True, False),   # edited, row changed
    "d": ("Delta", False, True),     # edited, row changed, attachment missing
    "e": ("Echo", True, False),      # its attachment copy edited, row changed (the file not)
    "f": ("Foxtrot", True, True),    # edited, then retitled (folder must not move)
    "g": ("Golf", True, True),       # not edited, row changed: updated normally
    "h": ("Hotel", False, False),    # a conversation.md from the app's exporter was there
}


def make(db: Path, files: Path) -> None:
    con = apsw.Connection(str(db))
    con.execute(DDL)
    files.mkdir()
    for cid, (title, on_disk, missing) in CONVERSATIONS.items():
        con.execute("INSERT INTO conversations (id, title, provider, created_at, updated_at)"
                    " VALUES (?, ?, 'claude', 1700000000, 1700000000)", (cid, title))
        con.execute("INSERT INTO messages (id, conversation_id, role, parts, order_index)"
                    " VALUES (?, ?, 'user', '[{\"type\":\"text\",\"text\":\"hi\"}]', 0)",
                    (f"m-{cid}", cid))
        if on_disk:
            (files / f"{cid}.txt").write_text(f"file of {cid}")
            con.execute("INSERT INTO attachments (id, message_id, type, local_path, filename)"
                        " VALUES (?, ?, 'file', ?, ?)",
                        (f"att-{cid}", f"m-{cid}", str(files / f"{cid}.txt"), f"{cid}.txt"))
        if missing:
            con.execute("INSERT INTO attachments (id, message_id, type, local_path, filename)"
                        " VALUES (?, ?, 'file', '/nonexistent/gone.txt', 'gone.txt')",
                        (f"gone-{cid}", f"m-{cid}"))
    con.close()


def change_rows(db: Path, ids: list[str], retitle: dict[str, str] | None = None) -> None:
    con = apsw.Connection(str(db))
    for cid in ids:
        con.execute("UPDATE conversations SET updated_at = updated_at + 86400 WHERE id = ?",
                    (cid,))
    for cid, title in (retitle or {}).items():
        con.execute("UPDATE conversations SET title = ? WHERE id = ?", (title, cid))
    con.close()


def note(out: Path, title: str) -> Path:
    return out / f"2023-11-14 {title}" / "conversation.md"


def test_edited_and_foreign_files_are_never_replaced(cli: Any, tmp_path: Path) -> None:
    db = tmp_path / "a.db"
    make(db, tmp_path / "files")
    out = tmp_path / "out"
    foreign = b"# Hotel\n\nExported by the OwnYourChat app, then annotated by hand.\n"
    note(out, "Hotel").parent.mkdir(parents=True)
    note(out, "Hotel").write_bytes(foreign)
    args = ["--db", str(db), "--out", str(out), "--tz", "UTC", "--progress", "none",
            "--no-downloads"]

    first = cli("run", *args, timeout=60)
    assert first.returncode == 0, first.stderr  # missing attachments are warnings
    assert note(out, "Hotel").read_bytes() == foreign
    new_hotel = out / ".zexport" / "conflicts" / "2023-11-14 Hotel" / "conversation.md"
    assert new_hotel.read_bytes().startswith(b"---\n")
    assert "1 file was edited or not written by zexport and left as it was" in first.stdout

    edits: dict[Path, bytes] = {}
    for cid in "abcdf":
        path = note(out, CONVERSATIONS[cid][0])
        edits[path] = path.read_bytes() + f"\nMy own notes on {cid}: ünïcode, kept.\n".encode()
        path.write_bytes(edits[path])
    echo_copy = out / "2023-11-14 Echo" / "attachments" / "e.txt"
    edits[echo_copy] = b"I annotated this attachment copy"
    echo_copy.write_bytes(edits[echo_copy])
    golf = note(out, "Golf")
    golf_before = golf.read_bytes()

    change_rows(db, ["c", "d", "e", "g"], retitle={"f": "Foxtrot renamed"})
    second = cli("run", *args, timeout=60)
    assert second.returncode == 0, second.stderr
    for path, data in edits.items():
        assert path.read_bytes() == data, path  # byte for byte
    assert note(out, "Hotel").read_bytes() == foreign
    assert golf.read_bytes() != golf_before and b"2023-11-15" in golf.read_bytes()
    # The retitled conversation's edited folder stayed; it is rendered under its new name.
    assert note(out, "Foxtrot renamed").read_bytes().startswith(b"---\n")

    report = json.loads((out / ".zexport" / "report.json").read_text())
    conflicts = {c["path"]: c for c in report["conflicts"]}
    # Echo's edited attachment is no conflict: zexport has nothing new for that file.
    assert sorted(conflicts) == sorted([
        "2023-11-14 Charlie/conversation.md", "2023-11-14 Delta/conversation.md",
        "2023-11-14 Foxtrot/conversation.md", "2023-11-14 Hotel/conversation.md"])
    assert report["counts"]["conflicts"] == 4
    assert conflicts["2023-11-14 Hotel/conversation.md"]["reason"] == "not written by zexport"
    assert conflicts["2023-11-14 Charlie/conversation.md"]["reason"] == (
        "edited since zexport wrote it")
    assert "not renamed" in conflicts["2023-11-14 Foxtrot/conversation.md"]["reason"]
    assert "4 files were edited or not written by zexport" in second.stdout
    # The new versions sit in .zexport/conflicts under the same paths, ready to diff.
    for rel in ("2023-11-14 Charlie/conversation.md", "2023-11-14 Delta/conversation.md"):
        spare = out / ".zexport" / "conflicts" / rel
        assert conflicts[rel]["new_version"] == f".zexport/conflicts/{rel}"
        assert b"2023-11-15" in spare.read_bytes()  # the new updated time
    assert not (out / ".zexport/conflicts/2023-11-14 Echo").exists()
    charlie_spare = out / ".zexport/conflicts/2023-11-14 Charlie/conversation.md"
    charlie_new = charlie_spare.read_bytes()

    # A third run with nothing changed still leaves every edit alone.
    third = cli("run", *args, timeout=60)
    assert third.returncode == 0, third.stderr
    for path, data in edits.items():
        assert path.read_bytes() == data, path

    # --overwrite-edited replaces them with the new versions, and resolves the conflicts.
    forced = cli("run", *args, "--overwrite-edited", timeout=60)
    assert forced.returncode == 0, forced.stderr
    assert note(out, "Charlie").read_bytes() == charlie_new
    assert not charlie_spare.exists()  # resolved: its new version is in place
    assert note(out, "Hotel").read_bytes() != foreign
    report = json.loads((out / ".zexport" / "report.json").read_text())
    assert report["conflicts"] == []
    # Echo was not rendered (unchanged, no conflict): its edit stays until --force.
    assert echo_copy.read_bytes() == edits[echo_copy]
    restored = cli("run", *args, "--overwrite-edited", "--force", timeout=60)
    assert restored.returncode == 0, restored.stderr
    assert echo_copy.read_bytes() == b"file of e"


def test_strict_makes_conflicts_and_missing_attachments_fail(cli: Any, tmp_path: Path) -> None:
    db = tmp_path / "a.db"
    make(db, tmp_path / "files")
    out = tmp_path / "out"
    args = ["--db", str(db), "--out", str(out), "--tz", "UTC", "--progress", "none",
            "--no-downloads"]
    res = cli("run", *args, "--strict", timeout=60)
    assert res.returncode == 1, res.stderr
    assert "4 attachments unavailable: file not on disk (downloads off)" in res.stdout
    report = json.loads((out / ".zexport" / "report.json").read_text())
    assert report["status"] == "partial"
    assert report["attachment_failures_by_reason"] == {"file not on disk (downloads off)": 4}
    assert os.path.exists(note(out, "Alpha"))


def test_the_keeper_decides_per_file(tmp_path: Path) -> None:
    from zexport.core.edits import FileKeeper, digest_bytes
    from zexport.formats.base import RenderContext

    out = tmp_path / "out"
    (out / "c").mkdir(parents=True)
    target = out / "c" / "conversation.md"

    keeper = FileKeeper(str(out))
    assert keeper.write(str(target), b"v1")  # nothing there: written
    assert keeper.files == [("c/conversation.md", digest_bytes(b"v1"))]
    ino = target.stat().st_ino
    known = dict(keeper.files)

    keeper = FileKeeper(str(out), known)
    assert keeper.write(str(target), b"v1") and target.stat().st_ino == ino  # same: untouched
    assert keeper.write(str(target), b"v2") and target.read_bytes() == b"v2"  # ours: replaced

    target.write_bytes(b"my edit")
    keeper = FileKeeper(str(out), {"c/conversation.md": digest_bytes(b"v2")})
    assert keeper.write(str(target), b"v2")  # edited, nothing new from zexport: no conflict
    assert keeper.conflicts == [] and target.read_bytes() == b"my edit"
    assert not keeper.write(str(target), b"v3")  # edited, and zexport has news: a conflict
    assert target.read_bytes() == b"my edit"
    assert (out / ".zexport/conflicts/c/conversation.md").read_bytes() == b"v3"
    assert keeper.conflicts == [("c/conversation.md", "edited since zexport wrote it")]
    assert ("c/conversation.md", digest_bytes(b"v2")) in keeper.files  # still what we wrote

    elsewhere = tmp_path / "elsewhere.md"
    elsewhere.write_bytes(b"not yours")
    link = out / "c" / "linked.md"
    link.symlink_to(elsewhere)
    keeper = FileKeeper(str(out))
    assert not keeper.write(str(link), b"new")  # a symlink is never zexport's: not followed
    assert link.is_symlink() and elsewhere.read_bytes() == b"not yours"
    assert keeper.conflicts == [("c/linked.md", "not written by zexport")]

    keeper = FileKeeper(str(out), overwrite=True)
    assert keeper.write(str(target), b"v3") and target.read_bytes() == b"v3"

    # A format's own files (ctx.write) go through the same keeper.
    target.write_bytes(b"edited again")
    keeper = FileKeeper(str(out), {"c/conversation.md": digest_bytes(b"v3")})
    ctx = RenderContext(out_dir=str(out), folder=str(out / "c"), options={}, tz=None,  # type: ignore[arg-type]
                        branches="active", exported_at="", keeper=keeper)
    ctx.write("conversation.md", "v4")
    assert target.read_bytes() == b"edited again"
    assert keeper.conflicts == [("c/conversation.md", "edited since zexport wrote it")]
