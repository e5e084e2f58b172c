"""``--layout folder|note|<template>``: each layout's tree, run by real ``zexport run``
processes on an archive in the app's own schema (a copy of the app's empty database).

The archive has what naming must get right: two conversations with one title and
date (one keeps the plain name, the other gets `` (<id prefix>)``), case twins
("notes" / "Notes"), a title with characters no file name may hold and no date,
a title that is its own file name, and an image attachment on disk.
"""

from __future__ import annotations

import json
import os
import shutil
import stat
from pathlib import Path
from typing import Any

import apsw
import pytest
from conftest import tree_digest
from corpora import APP_FIXTURES

APP_EMPTY = APP_FIXTURES / "app-empty-sqlite.db"
DAY1 = 1766741000  # 2025-12-26 09:23:20 UTC
DAY2 = DAY1 + 86400
PNG = b"\x89PNG\r\n\x1a\n" + bytes(range(64))
TEMPLATE = "{provider}/{year}/{month}/{title}"
FOLDERS_TEMPLATE = "{provider}/{title}/"  # a folder per conversation, in provider folders

# id, provider, title, created_at
CONVERSATIONS = [
    ("c1-aaaaaaaa-1111", "chatgpt", "Cat identification", DAY1),
    ("c2-bbbbbbbb-2222", "claude", "Cat identification", DAY1 + 60),
    ("c3-cccccccc-3333", "claude", "notes", DAY2),
    ("c4-dddddddd-4444", "claude", "Notes", DAY2 + 60),
    ("c5-eeeeeeee-5555", "chatgpt", "a/b: c?", None),
    ("c6-ffffffff-6666", "perplexity", "Plain", None),
]


def make_archive(folder: Path) -> Path:
    """The app's empty archive with the conversations above; c1 has an image on disk."""
    folder.mkdir(exist_ok=True)
    db = folder / "archive.db"
    shutil.copyfile(APP_EMPTY, db)
    os.chmod(db, 0o644)
    (folder / "cat.png").write_bytes(PNG)
    con = apsw.Connection(str(db))
    for cid, provider, title, created in CONVERSATIONS:
        con.execute("INSERT INTO conversations (id, title, provider, created_at, updated_at,"
                    " message_count, current_node_id) VALUES (?,?,?,?,?,2,?)",
                    (cid, title, provider, created, created, f"{cid}-m2"))
        con.execute("INSERT INTO messages (id, conversation_id, role, parts, created_at,"
                    " order_index, parent_id) VALUES (?,?,'user',?,?,0,NULL)",
                    (f"{cid}-m1", cid, json.dumps([{"type": "text", "text": "What is this?"}]),
                     created))
        con.execute("INSERT INTO messages (id, conversation_id, role, parts, created_at,"
                    " order_index, parent_id) VALUES (?,?,'assistant',?,?,1,?)",
                    (f"{cid}-m2", cid, json.dumps([{"type": "text", "text": f"{title}!"}]),
                     created, f"{cid}-m1"))
    for aid, cid in (("att1", "c1-aaaaaaaa-1111"), ("att2", "c2-bbbbbbbb-2222")):
        con.execute("INSERT INTO attachments (id, message_id, type, local_path, filename,"
                    " mime_type, size) VALUES (?, ?, 'image', ?, 'cat.png', 'image/png', ?)",
                    (aid, f"{cid}-m1", str(folder / "cat.png"), len(PNG)))
    con.close()
    return db


def retitle(db: Path, cid: str, title: str, column: str = "title") -> None:
    con = apsw.Connection(str(db))
    con.execute(f"UPDATE conversations SET {column} = ?, updated_at = updated_at + 1"
                " WHERE id = ?", (title, cid))
    con.close()


def files_under(root: Path) -> set[str]:
    """Every file and folder under ``root`` but zexport's state folder, relative."""
    return {p.relative_to(root).as_posix() for p in root.rglob("*")
            if not p.relative_to(root).as_posix().startswith(".zexport")}


def export(cli: Any, db: Path, out: Path, *extra: str) -> Any:
    res = cli("run", "--db", str(db), "--out", str(out), "--tz", "UTC", "--progress", "none",
              "--no-downloads", *extra, timeout=90)
    assert res.returncode == 0, res.stderr
    return res


EXPECTED = {
    "folder": {
        "2025-12-26 Cat identification", "2025-12-26 Cat identification/conversation.md",
        "2025-12-26 Cat identification/attachments",
        "2025-12-26 Cat identification/attachments/cat.png",
        "2025-12-26 Cat identification (c2-bbbbb)",
        "2025-12-26 Cat identification (c2-bbbbb)/conversation.md",
        "2025-12-26 Cat identification (c2-bbbbb)/attachments",
        "2025-12-26 Cat identification (c2-bbbbb)/attachments/cat.png",
        "2025-12-27 notes", "2025-12-27 notes/conversation.md",
        "2025-12-27 Notes (c4-ddddd)", "2025-12-27 Notes (c4-ddddd)/conversation.md",
        "a_b_ c_", "a_b_ c_/conversation.md", "Plain", "Plain/conversation.md",
    },
    "note": {
        "2025-12-26 Cat identification.md", "2025-12-26 Cat identification (c2-bbbbb).md",
        "attachments", "attachments/2025-12-26 Cat identification",
        "attachments/2025-12-26 Cat identification/cat.png",
        "attachments/2025-12-26 Cat identification (c2-bbbbb)",
        "attachments/2025-12-26 Cat identification (c2-bbbbb)/cat.png",
        "2025-12-27 notes.md", "2025-12-27 Notes (c4-ddddd).md", "a_b_ c_.md", "Plain.md",
    },
    TEMPLATE: {
        "chatgpt", "chatgpt/2025", "chatgpt/2025/12", "chatgpt/2025/12/Cat identification.md",
        "chatgpt/2025/12/attachments", "chatgpt/2025/12/attachments/Cat identification",
        "chatgpt/2025/12/attachments/Cat identification/cat.png",
        "chatgpt/undated", "chatgpt/undated/undated", "chatgpt/undated/undated/a_b_ c_.md",
        "claude", "claude/2025", "claude/2025/12", "claude/2025/12/Cat identification.md",
        "claude/2025/12/attachments", "claude/2025/12/attachments/Cat identification",
        "claude/2025/12/attachments/Cat identification/cat.png",
        "claude/2025/12/notes.md", "claude/2025/12/Notes (c4-ddddd).md",
        "perplexity", "perplexity/undated", "perplexity/undated/undated",
        "perplexity/undated/undated/Plain.md",
    },
}
CAT_NOTE = {"folder": "2025-12-26 Cat identification/conversation.md",
            "note": "2025-12-26 Cat identification.md",
            TEMPLATE: "chatgpt/2025/12/Cat identification.md"}
CAT_LINK = {"folder": "![cat.png](attachments/cat.png)",
            "note": "![cat.png](attachments/2025-12-26%20Cat%20identification/cat.png)",
            TEMPLATE: "![cat.png](attachments/Cat%20identification/cat.png)"}
CAT_PNG = {"note": "attachments/2025-12-26 Cat identification/cat.png",
           TEMPLATE: "chatgpt/2025/12/attachments/Cat identification/cat.png"}
MOVED_PNGS = {
    "note": {"attachments/2025-12-26 Bengal cat/cat.png",
             "attachments/2025-12-26 Cat identification/cat.png"},  # c2's now
    TEMPLATE: {"chatgpt/2025/12/attachments/Bengal cat/cat.png",
               "claude/2025/12/attachments/Cat identification/cat.png"},
    FOLDERS_TEMPLATE: {"chatgpt/Bengal cat/attachments/cat.png",
                       "claude/Cat identification/attachments/cat.png"}}
PLAIN_NOTE = {"folder": "Plain/conversation.md", "note": "Plain.md",
              TEMPLATE: "perplexity/undated/undated/Plain.md"}


@pytest.mark.parametrize("layout", ["folder", "note", TEMPLATE])
def test_each_layout_makes_its_tree(cli: Any, tmp_path: Path, layout: str) -> None:
    db = make_archive(tmp_path / "arch")
    out = tmp_path / "out"
    export(cli, db, out, "--layout", layout)
    assert files_under(out) == EXPECTED[layout]
    cat = (out / CAT_NOTE[layout]).read_text()
    assert CAT_LINK[layout] in cat
    # The link, decoded and resolved from the note's folder, is the copied file.
    target = CAT_LINK[layout].split("](")[1].rstrip(")").replace("%20", " ")
    assert (out / CAT_NOTE[layout]).parent.joinpath(target).read_bytes() == PNG
    # aliases only when the note's file name is not the title.
    assert ('\naliases:\n  - "Cat identification"\n' in cat) is (layout != TEMPLATE)
    plain = (out / PLAIN_NOTE[layout]).read_text()
    assert ("aliases:" in plain) is (layout == "folder")
    manifest = apsw.Connection(str(out / ".zexport" / "manifest.db"))
    recorded = manifest.execute("SELECT value FROM meta WHERE key='layout'").fetchone()[0]
    manifest.close()
    assert recorded == layout


@pytest.mark.parametrize("layout", ["note", TEMPLATE])
def test_same_bytes_whatever_workers(cli: Any, tmp_path: Path, layout: str) -> None:
    db = make_archive(tmp_path / "arch")
    export(cli, db, tmp_path / "one", "--layout", layout, "--workers", "1", "--batch-size", "1")
    export(cli, db, tmp_path / "three", "--layout", layout, "--workers", "3",
           "--batch-size", "1")
    one = tree_digest(tmp_path / "one")
    assert one == tree_digest(tmp_path / "three")
    assert len(one) == len([p for p in EXPECTED[layout] if p.endswith((".md", ".png"))])


@pytest.mark.parametrize("layout", ["note", TEMPLATE, FOLDERS_TEMPLATE])
def test_title_change_moves_the_note_and_its_attachments(
        cli: Any, tmp_path: Path, layout: str) -> None:
    db = make_archive(tmp_path / "arch")
    out = tmp_path / "out"
    export(cli, db, out, "--layout", layout)

    retitle(db, "c1-aaaaaaaa-1111", "Bengal cat")
    # And a provider change: with it in the template, the note moves to another folder
    # (made for it), and the folders it leaves empty go.
    retitle(db, "c6-ffffffff-6666", "claude", column="provider")
    export(cli, db, out, "--layout", layout)
    fresh = tmp_path / "fresh"
    export(cli, db, fresh, "--layout", layout)
    assert files_under(out) == files_under(fresh)
    assert tree_digest(out) == tree_digest(fresh)
    assert {p for p in files_under(out) if p.endswith("cat.png")} == MOVED_PNGS[layout]
    # In the note layout c2 ("Cat identification" too) now has the plain name: it moves;
    # in the templates c6 moves to claude/.
    moved = 2
    what = "folders" if layout == FOLDERS_TEMPLATE else "notes (with their attachments)"
    report = json.loads((out / ".zexport" / "report.json").read_text())
    assert report["notes"] == [f"moved {moved} {what} of conversations whose titles changed"]
    # c1 and c6 changed; a moved note is rendered again (its links name its attachments
    # folder), a moved folder is not.
    exported = 3 if layout == "note" else 2
    assert report["counts"]["exported"] == exported
    assert report["counts"]["skipped"] == 6 - exported


def snapshot(root: Path) -> dict[str, tuple[int, int, bytes]]:
    """Every entry under ``root`` (zexport's state folder too): mode, mtime, bytes."""
    out: dict[str, tuple[int, int, bytes]] = {}
    for path in [root, *root.rglob("*")]:
        st = os.lstat(path)
        data = path.read_bytes() if stat.S_ISREG(st.st_mode) else b""
        out[path.relative_to(root).as_posix()] = (st.st_mode, st.st_mtime_ns, data)
    return out


@pytest.mark.parametrize(("first", "second"), [("folder", "note"), ("note", "folder"),
                                               ("note", TEMPLATE)])
def test_mixing_layouts_in_one_folder_is_refused(
        cli: Any, tmp_path: Path, first: str, second: str) -> None:
    db = make_archive(tmp_path / "arch")
    out = tmp_path / "out"
    export(cli, db, out, "--layout", first)
    before = snapshot(out)
    for extra in ((), ("--dry-run",), ("--force",)):
        res = cli("run", "--db", str(db), "--out", str(out), "--tz", "UTC", "--no-downloads",
                  "--layout", second, *extra, timeout=60)
        assert res.returncode == 2, res.stderr
        lines = res.stderr.strip().splitlines()
        assert len(lines) == 1, res.stderr
        assert "one output folder holds one layout" in lines[0]
        assert snapshot(out) == before
    # The layout it holds still runs (an unchanged re-run).
    export(cli, db, out, "--layout", first)


def test_a_bad_template_is_refused_before_anything_is_made(cli: Any, tmp_path: Path) -> None:
    db = make_archive(tmp_path / "arch")
    out = tmp_path / "out"
    res = cli("run", "--db", str(db), "--out", str(out), "--layout", "{provider}/{titel}",
              timeout=60)
    assert res.returncode == 2
    assert "unknown field {titel}" in res.stderr
    assert not out.exists()


@pytest.mark.parametrize("layout", ["note", TEMPLATE])
def test_html_index_and_pages_link_across_the_layout(
        cli: Any, tmp_path: Path, layout: str) -> None:
    db = make_archive(tmp_path / "arch")
    out = tmp_path / "out"
    export(cli, db, out, "--layout", layout, "--format", "html")
    page = CAT_NOTE[layout][:-len(".md")] + ".html"
    index = (out / "index.html").read_text()
    assert json.dumps(page.replace(" ", "%20")) in index
    up = "../" * page.count("/")
    assert f'<a href="{up}index.html">All conversations</a>' in (out / page).read_text()
    assert (out / page).parent.joinpath(CAT_LINK[layout].split("](")[1].rstrip(")")
                                        .replace("%20", " ")).read_bytes() == PNG


def test_jsonl_writes_its_one_file_in_a_template_layout(cli: Any, tmp_path: Path) -> None:
    db = make_archive(tmp_path / "arch")
    out = tmp_path / "out"
    export(cli, db, out, "--layout", TEMPLATE, "--format", "jsonl")
    assert files_under(out) == {"conversations.jsonl"}
    lines = (out / "conversations.jsonl").read_text().splitlines()
    assert [json.loads(line)["messages"][1]["content"] for line in lines] == [
        f"{c[2]}!" for c in CONVERSATIONS]


@pytest.mark.parametrize("layout", ["note", TEMPLATE])
def test_a_moved_note_is_known_and_an_edited_one_never_moves(
        cli: Any, tmp_path: Path, layout: str) -> None:
    db = make_archive(tmp_path / "arch")
    out = tmp_path / "out"
    export(cli, db, out, "--layout", layout)
    retitle(db, "c1-aaaaaaaa-1111", "Bengal cat")
    export(cli, db, out, "--layout", layout)
    # The moved files are recorded at their new paths: an unchanged re-run is quiet.
    export(cli, db, out, "--layout", layout)
    report = json.loads((out / ".zexport" / "report.json").read_text())
    assert (report["counts"]["exported"], report["conflicts"]) == (0, [])

    # An edited note stays where it is, as the user left it, and is reported.
    cat = out / CAT_NOTE[layout].replace("Cat identification", "Bengal cat")
    edited = cat.read_bytes() + b"\nmy own notes\n"
    cat.write_bytes(edited)
    retitle(db, "c1-aaaaaaaa-1111", "Bengal cat, again")
    export(cli, db, out, "--layout", layout)
    assert cat.read_bytes() == edited
    report = json.loads((out / ".zexport" / "report.json").read_text())
    rel = cat.relative_to(out).as_posix()
    assert [c["path"] for c in report["conflicts"]] == [rel]
    renamed = out / CAT_NOTE[layout].replace("Cat identification", "Bengal cat, again")
    assert "Bengal cat, again" in renamed.read_text()
