"""Where attachment files are copied from (issues 17.2 and 12.4), with real runs.

17.2: an archive row's ``local_path`` is not trusted. A file is copied only
from the archive's folder, the app's attachments folders, zexport's cache and
``--attachment-root`` folders, on its real path (symlinks resolved); others
get a placeholder saying why; a copy is never more open than its source.

12.4: a row whose ``local_path`` is ``''`` or stale finds the file where the
app keeps it, ``<userData>/attachments/<conversationId>/<fileId>_<name>``
(beside the archive, and at the app's per-OS folder); a file there that
cannot be read is reported as unreadable, with the OS error.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import sqlite3
import stat
import subprocess
import sys
from pathlib import Path
from typing import Any

import apsw
import pytest
from corpora import APP_FIXTURES

from zexport.schema import DDL

REALISTIC = APP_FIXTURES / "realistic.db"
SECRET = b"SECRET-7c2e: a file no row may export\n"


def _report(out: Path) -> dict[str, Any]:
    doc: dict[str, Any] = json.loads((out / ".zexport" / "report.json").read_text())
    return doc


def _failures(out: Path) -> dict[str, str]:
    return {f["attachment_id"]: f["reason"] for f in _report(out)["attachment_failures"]}


def _outputs(out: Path) -> list[Path]:
    return [p for p in out.rglob("*") if p.is_file() and not p.is_symlink()]


def _archive(db: Path, rows: dict[str, str]) -> None:
    """One conversation with an attachment per ``rows`` item (id -> local_path)."""
    con = apsw.Connection(str(db))
    con.execute(DDL)
    con.execute("INSERT INTO conversations (id, title, provider, created_at, updated_at)"
                " VALUES ('c1', 'Files', 'claude', 1700000000, 1700000000)")
    con.execute("INSERT INTO messages (id, conversation_id, role, parts, order_index)"
                " VALUES ('m1', 'c1', 'user', '[{\"type\":\"text\",\"text\":\"see\"}]', 0)")
    for aid, local in rows.items():
        con.execute("INSERT INTO attachments (id, message_id, type, local_path, filename)"
                    " VALUES (?, 'm1', 'file', ?, ?)", (aid, local, f"{aid}.txt"))
    con.close()


# -- 17.2 ----------------------------------------------------------------------------------

@pytest.mark.timeout(120)
def test_local_path_outside_the_allowed_folders_is_refused_not_copied(
        cli: Any, tmp_path: Path) -> None:
    arch = tmp_path / "arch"
    files = arch / "files"
    files.mkdir(parents=True)
    outside = tmp_path / "outside"
    outside.mkdir()
    secret = outside / "secret.txt"
    secret.write_bytes(SECRET)
    secret.chmod(0o600)
    os.symlink(secret, files / "innocent.txt")  # inside the archive's folder, pointing out
    (files / "private.txt").write_bytes(b"private\n")
    (files / "private.txt").chmod(0o600)
    (files / "tool.sh").write_bytes(b"#!/bin/sh\n")
    (files / "tool.sh").chmod(0o777)
    extra = tmp_path / "extra"
    extra.mkdir()
    (extra / "mine.txt").write_bytes(b"from a folder the user named\n")
    rows = {
        "abs": str(secret),
        "dotdot": "../" * 30 + str(secret).lstrip("/"),
        "link": str(files / "innocent.txt"),
        "passwd": "../" * 30 + "etc/passwd",
        "private": "files/private.txt",  # relative to the archive's folder
        "tool": str(files / "tool.sh"),
        "extra": str(extra / "mine.txt"),
    }
    if os.geteuid() == 0 and os.path.exists("/etc/shadow"):
        rows["shadow"] = "/etc/shadow"
    db = arch / "archive.db"
    _archive(db, rows)
    out = tmp_path / "out"
    refused = {k for k in rows if k not in ("private", "tool")}

    # The dry run decides as the run does: refused files are not "on disk".
    res = cli("run", "--db", str(db), "--out", str(out), "--no-downloads", "--dry-run",
              "--progress", "json", timeout=60)
    assert res.returncode == 0, res.stderr
    said = json.loads(res.stdout)
    assert (said["on_disk"], said["unavailable"], said["unavailable_not_copied"]) == \
        (2, len(refused), len(refused))
    assert not out.exists()

    res = cli("run", "--db", str(db), "--out", str(out), "--no-downloads",
              "--progress", "none", "--tz", "UTC", timeout=90)

    assert res.returncode == 0, res.stderr  # refused attachments are warnings
    failures = _failures(out)
    assert set(failures) == refused
    for aid in refused:
        assert "is outside the archive's folder" in failures[aid], (aid, failures[aid])
        assert "--attachment-root" in failures[aid]
    assert str(secret) in failures["link"]  # says where the link really goes
    folder = out / "2023-11-14 Files"
    md = (folder / "conversation.md").read_text()
    assert "abs.txt: not copied:" in md and "shadow.txt: not copied:" in md \
        if "shadow" in rows else "abs.txt: not copied:" in md
    assert sorted(p.name for p in (folder / "attachments").iterdir()) == [
        "private.txt", "tool.txt"]
    forbidden = [SECRET, Path("/etc/passwd").read_bytes()]
    if "shadow" in rows:
        forbidden.append(Path("/etc/shadow").read_bytes())
    for path in _outputs(out):
        data = path.read_bytes()
        assert not any(f in data for f in forbidden), path
    # Never wider than the source, never executable.
    assert stat.S_IMODE((folder / "attachments" / "private.txt").stat().st_mode) == 0o600
    assert stat.S_IMODE((folder / "attachments" / "tool.txt").stat().st_mode) & 0o133 == 0
    assert secret.read_bytes() == SECRET

    # The user names a folder: its files are copied, the rest still refused.
    out2 = tmp_path / "out2"
    res = cli("run", "--db", str(db), "--out", str(out2), "--no-downloads",
              "--attachment-root", str(extra), "--progress", "none", "--tz", "UTC",
              "--attachments", "link", timeout=90)
    assert res.returncode == 0, res.stderr
    assert set(_failures(out2)) == refused - {"extra"}
    attached = out2 / "2023-11-14 Files" / "attachments"
    assert (attached / "extra.txt").read_bytes() == b"from a folder the user named\n"
    # --attachments link: a hard link where the source's bits are already safe; a copy
    # (not executable) where a link would share an executable inode.
    assert (attached / "private.txt").stat().st_ino == (files / "private.txt").stat().st_ino
    assert (attached / "tool.txt").stat().st_ino != (files / "tool.sh").stat().st_ino
    assert stat.S_IMODE((attached / "tool.txt").stat().st_mode) & 0o133 == 0
    assert _report(out2)["options"]["attachment_roots"] == [str(extra)]


def test_attachment_root_must_be_a_folder(cli: Any, tmp_path: Path, sample_db: Path) -> None:
    res = cli("run", "--db", str(sample_db), "--out", str(tmp_path / "out"),
              "--attachment-root", str(tmp_path / "nope"), timeout=60)
    assert res.returncode == 2, res.stderr
    assert "--attachment-root" in res.stderr and "does not exist" in res.stderr
    assert not (tmp_path / "out").exists()


# -- 12.4 ----------------------------------------------------------------------------------

def _app_rows() -> list[tuple[str, str, str, str | None, str]]:
    """``(conversation id, attachment id, file id, filename, provider)`` of realistic.db."""
    con = sqlite3.connect(f"file:{REALISTIC}?mode=ro", uri=True)
    try:
        return con.execute(
            "SELECT m.conversation_id, a.id, a.file_id, a.filename, c.provider"
            " FROM attachments a JOIN messages m ON m.id = a.message_id"
            " JOIN conversations c ON c.id = m.conversation_id ORDER BY a.id").fetchall()
    finally:
        con.close()


def _lay_out_like_the_app(user_data: Path) -> dict[str, bytes]:
    """Put each realistic.db attachment where the app downloads it; {attachment id: bytes}."""
    placed = {}
    for cid, aid, file_id, filename, _ in _app_rows():
        folder = user_data / "attachments" / cid
        folder.mkdir(parents=True, exist_ok=True)
        # The app names a file <fileId>_<name>; for a row without a filename, the name
        # it derived (zexport finds it by the id prefix, as the app does).
        data = f"bytes of {aid}\n".encode()
        (folder / f"{file_id}_{filename or 'image.jpg'}").write_bytes(data)
        placed[aid] = data
    return placed


@pytest.mark.timeout(120)
def test_files_the_app_has_are_found_beside_the_archive(cli: Any, tmp_path: Path) -> None:
    user_data = tmp_path / "ownyourchat"  # a copy of the app's whole userData folder
    user_data.mkdir()
    shutil.copy(REALISTIC, user_data / "ownyourchat.db")
    placed = _lay_out_like_the_app(user_data)
    rows = _app_rows()
    assert {p for *_, p in rows} == {"chatgpt", "claude", "perplexity"}
    out = tmp_path / "out"

    res = cli("run", "--db", str(user_data / "ownyourchat.db"), "--out", str(out),
              "--no-downloads", "--format", "json", "--progress", "none", "--tz", "UTC",
              timeout=90)

    assert res.returncode == 0, res.stderr + json.dumps(_report(out)["attachment_failures"])
    assert _report(out)["counts"]["attachments_exported"] == len(placed)
    copied = {p.read_bytes() for p in out.rglob("attachments/*")}
    assert copied == set(placed.values())
    # Every row's local_path is '' or names the app's machine: none of them was usable.
    con = sqlite3.connect(f"file:{REALISTIC}?mode=ro", uri=True)
    stored = [r[0] for r in con.execute("SELECT local_path FROM attachments")]
    con.close()
    assert all(p == "" or not os.path.exists(p) for p in stored)


@pytest.mark.timeout(120)
def test_files_the_app_has_are_found_at_its_per_os_folder(
        cli: Any, tmp_path: Path, isolated_env: dict[str, str]) -> None:
    elsewhere = tmp_path / "copy"  # the archive copied away from the app's folder
    elsewhere.mkdir()
    shutil.copy(REALISTIC, elsewhere / "archive.db")
    user_data = Path(isolated_env["XDG_CONFIG_HOME"]) / "ownyourchat"
    placed = _lay_out_like_the_app(user_data)
    out = tmp_path / "out"

    res = cli("run", "--db", str(elsewhere / "archive.db"), "--out", str(out),
              "--no-downloads", "--progress", "none", "--tz", "UTC", timeout=90)

    assert res.returncode == 0, res.stderr
    assert {p.read_bytes() for p in out.rglob("attachments/*")} == set(placed.values())


SETPRIV = shutil.which("setpriv")


@pytest.mark.timeout(120)
@pytest.mark.skipif(os.geteuid() == 0 and SETPRIV is None,
                    reason="root reads any file; needs setpriv to drop that")
def test_an_unreadable_app_file_is_reported_as_unreadable_not_as_no_credentials(
        isolated_env: dict[str, str], tmp_path: Path) -> None:
    """A file of mode 000 in the app's folder. As root (who reads any file whatever its
    mode) the run is made without the capabilities that let it do so."""
    user_data = tmp_path / "ownyourchat"
    user_data.mkdir()
    shutil.copy(REALISTIC, user_data / "ownyourchat.db")
    _lay_out_like_the_app(user_data)
    chatgpt = [(cid, aid, fid, name) for cid, aid, fid, name, p in _app_rows()
               if p == "chatgpt"]
    cid, unreadable_id, fid, name = chatgpt[0]
    unreadable = user_data / "attachments" / cid / f"{fid}_{name}"
    unreadable.chmod(0o000)
    prefix = [SETPRIV, "--bounding-set", "-dac_override,-dac_read_search"] \
        if os.geteuid() == 0 and SETPRIV else []
    out = tmp_path / "out"

    # Downloads on, no credentials: a missing chatgpt file would be "no credentials".
    res = subprocess.run(
        [*prefix, sys.executable, "-m", "zexport", "run", "--db",
         str(user_data / "ownyourchat.db"), "--out", str(out), "--provider", "chatgpt",
         "--progress", "none", "--tz", "UTC"],
        env=isolated_env, cwd=tmp_path, capture_output=True, text=True, timeout=90,
        stdin=subprocess.DEVNULL)

    assert res.returncode == 0, res.stderr  # a warning
    assert _failures(out) == {
        unreadable_id: f"unreadable: {os.strerror(errno.EACCES)} ({unreadable})"}
    assert _report(out)["counts"]["attachments_exported"] == len(chatgpt) - 1


# -- the decision itself, in-process ---------------------------------------------------------

def _att(aid: str, file_id: str | None, filename: str | None, local: str | None) -> Any:
    from zexport.model import Attachment

    return Attachment(aid, "m", "file", file_id, None, local, filename, None, None, None,
                      None, None)


def test_app_folder_lookup_follows_the_apps_naming_and_stays_inside(tmp_path: Path) -> None:
    from zexport.core.attachment_files import AttachmentSources

    app = tmp_path / "attachments"
    conv = app / "c1"
    conv.mkdir(parents=True)
    (conv / "f1_other.png").write_bytes(b"other")
    (conv / "f1_photo.png").write_bytes(b"photo")  # the row's own name wins
    (conv / "f2_empty.bin").write_bytes(b"")  # an interrupted download: skipped, as the app does
    (tmp_path / "outside.txt").write_bytes(SECRET)
    sources = AttachmentSources(str(tmp_path), [str(tmp_path)], [str(app)])

    assert sources.locate("c1", _att("a", "f1", "photo.png", "")).path == \
        str(conv / "f1_photo.png")
    assert sources.locate("c1", _att("b", "f1", None, "/gone/elsewhere")).path == \
        str(conv / "f1_other.png")
    assert sources.locate("c1", _att("c", "f2", "empty.bin", None)).missing
    # Ids are joined as single names only: no way out of the app's folder through them.
    assert sources.locate("..", _att("d", "outside.txt", None, None)).missing
    assert sources.locate("c1/..", _att("e", "f1", "photo.png", None)).missing
    assert sources.locate("c1", _att("f", "../f1", "photo.png", None)).missing


def test_a_decision_is_made_once_until_the_conversation_is_forgotten(tmp_path: Path) -> None:
    """The fetch pipeline and the exporter ask the same object: the answer the
    pipeline acted on is the one the exporter copies (or refuses)."""
    from zexport.core.attachment_files import AttachmentSources

    (tmp_path / "f.txt").write_bytes(b"x")
    sources = AttachmentSources(str(tmp_path), [str(tmp_path)])
    att = _att("a", None, "f.txt", str(tmp_path / "f.txt"))
    first = sources.locate("c1", att)
    (tmp_path / "f.txt").unlink()
    assert sources.locate("c1", att) is first and first.path is not None
    sources.forget("c1")
    assert sources.locate("c1", att).missing
