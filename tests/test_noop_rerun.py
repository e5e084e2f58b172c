"""An unchanged re-run is a no-op (BRIEF §4b): no file rewritten (same inode, same mtime),
no attachment re-copied, even when conversations are rendered again; conversations with
attachments that cannot be had are retried only when credentials or the cache change, or
with --retry-attachments. Real `zexport run` processes on the dirty sample."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import apsw
import pytest

pytestmark = pytest.mark.timeout(300)


def stats(root: Path) -> dict[str, tuple[int, int]]:
    """``{path: (inode, mtime_ns)}`` of every file and folder outside .zexport."""
    found: dict[str, tuple[int, int]] = {}
    for path in root.rglob("*"):
        rel = path.relative_to(root).as_posix()
        if not rel.startswith(".zexport"):
            st = path.lstat()
            found[rel] = (st.st_ino, st.st_mtime_ns)
    return found


def counts(out: Path) -> dict[str, int]:
    doc: dict[str, int] = json.loads((out / ".zexport" / "report.json").read_text())["counts"]
    return doc


def waiting_for_attachments(out: Path) -> int:
    con = apsw.Connection(str(out / ".zexport" / "manifest.db"), flags=apsw.SQLITE_OPEN_READONLY)
    try:
        return int(con.execute("SELECT count(*) FROM done WHERE retry IS NOT NULL")
                   .fetchone()[0])
    finally:
        con.close()


def test_unchanged_re_runs_touch_nothing_and_retry_only_when_it_can_help(
        cli: Any, sample_db: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    cache = tmp_path / "cache"
    args = ["--db", str(sample_db), "--out", str(out), "--tz", "UTC", "--progress", "none",
            "--cache-dir", str(cache)]
    first = cli("run", *args)
    assert first.returncode == 0, first.stderr
    selected = counts(out)["selected"]
    assert counts(out)["attachments_failed"] > 0 and counts(out)["attachments_exported"] > 0
    missing = waiting_for_attachments(out)
    assert 0 < missing < selected
    before = stats(out)
    assert sum(1 for rel in before if "/attachments/" in rel) > 0

    again = cli("run", *args)
    assert again.returncode == 0, again.stderr
    assert counts(out)["exported"] == 0 and counts(out)["skipped"] == selected
    assert stats(out) == before

    # Rendered again, every file comes out the same: none is rewritten or re-copied.
    forced = cli("run", *args, "--force")
    assert forced.returncode == 0, forced.stderr
    assert counts(out)["exported"] == selected
    assert stats(out) == before

    # Credentials appear: the conversations waiting for attachments are rendered again.
    auth = tmp_path / "auth.toml"
    auth.write_text('[chatgpt]\nbase_url = "https://chatgpt.example.invalid"\n'
                    'headers = { Authorization = "Bearer test-token" }\n')
    auth.chmod(0o600)
    with_auth = cli("run", *args, "--auth", str(auth))
    assert with_auth.returncode == 0, with_auth.stderr
    assert counts(out)["exported"] == missing
    missing = waiting_for_attachments(out)
    assert missing > 0
    settled = stats(out)
    assert cli("run", *args, "--auth", str(auth)).returncode == 0
    assert counts(out)["exported"] == 0
    assert stats(out) == settled

    # Asked for: retried, whatever the context.
    assert cli("run", *args, "--auth", str(auth), "--retry-attachments").returncode == 0
    assert counts(out)["exported"] == missing
    assert stats(out) == settled

    # Something new in the cache of a provider: retried by itself.
    os.makedirs(cache / "claude" / "some-file-id")
    assert cli("run", *args, "--auth", str(auth)).returncode == 0
    assert counts(out)["exported"] == missing
    assert cli("run", *args, "--auth", str(auth)).returncode == 0
    assert counts(out)["exported"] == 0


def test_a_whole_export_index_that_comes_out_the_same_is_not_rewritten(
        cli: Any, sample_db: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    args = ["--db", str(sample_db), "--out", str(out), "--tz", "UTC", "--progress", "none",
            "--format", "html", "--no-attachments"]
    assert cli("run", *args).returncode == 0
    before = stats(out)
    assert "index.html" in before
    forced = cli("run", *args, "--force")  # every page and the index (finish) written again
    assert forced.returncode == 0, forced.stderr
    assert counts(out)["exported"] == counts(out)["selected"]
    assert stats(out) == before


def downgrade_to_schema_2(manifest: Path) -> int:
    """Rewrite a manifest as zexport wrote it before schema 3 (files in a table of their
    own, keyed by path); return how many file rows it holds."""
    con = apsw.Connection(str(manifest))
    try:
        with con:
            con.execute(
                "CREATE TABLE files (path TEXT PRIMARY KEY, cid TEXT NOT NULL, hash TEXT NOT NULL);"
                "CREATE INDEX files_cid ON files (cid);"
                "INSERT INTO files SELECT j.key, d.id, j.value FROM done d, json_each(d.files) j;"
                "CREATE TABLE done2 (id TEXT PRIMARY KEY, folder TEXT NOT NULL,"
                " source TEXT NOT NULL, options TEXT NOT NULL, renderer TEXT NOT NULL, retry TEXT);"
                "INSERT INTO done2 SELECT id, folder, source, options, renderer, retry FROM done;"
                "DROP TABLE done; ALTER TABLE done2 RENAME TO done;"
                "UPDATE meta SET value = '2' WHERE key = 'schema'")
        return int(con.execute("SELECT count(*) FROM files").fetchone()[0])
    finally:
        con.close()


def test_a_manifest_of_schema_2_is_carried_over_records_and_file_hashes_kept(
        cli: Any, sample_db: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    args = ["--db", str(sample_db), "--out", str(out), "--tz", "UTC", "--progress", "none",
            "--no-downloads"]
    first = cli("run", *args)
    assert first.returncode == 0, first.stderr
    selected = counts(out)["selected"]
    manifest = out / ".zexport" / "manifest.db"
    file_rows = downgrade_to_schema_2(manifest)
    assert file_rows > selected  # conversation files and attachment copies
    note = sorted(out.glob("*/conversation.md"))[0]
    note.write_text(note.read_text() + "\nmy own line\n")
    before = stats(out)

    # Upgraded, not dropped: the re-run knows every conversation and skips it.
    again = cli("run", *args)
    assert again.returncode == 0, again.stderr
    assert counts(out)["exported"] == 0 and counts(out)["skipped"] == selected
    assert stats(out) == before
    con = apsw.Connection(str(manifest), flags=apsw.SQLITE_OPEN_READONLY)
    try:
        assert con.execute("SELECT value FROM meta WHERE key='schema'").fetchone()[0] == "3"
        assert con.execute(
            "SELECT count(*) FROM done d, json_each(d.files)").fetchone()[0] == file_rows
        assert con.execute(
            "SELECT count(*) FROM sqlite_master WHERE name = 'files'").fetchone()[0] == 0
    finally:
        con.close()

    # The hashes came along: rendering everything again knows the note as zexport's own,
    # edited since, with nothing new for it (no conflict: a note whose hash was lost would
    # be "not written by zexport"), leaves it alone and rewrites nothing else.
    forced = cli("run", *args, "--force")
    assert forced.returncode == 0, forced.stderr
    assert counts(out)["exported"] == selected
    assert json.loads((out / ".zexport" / "report.json").read_text())["conflicts"] == []
    assert note.read_text().endswith("\nmy own line\n")
    assert stats(out) == before
