"""Smaller faults of issue 17 (point 8), in real runs: a killed run's report spool, a WAL
archive in a read-only folder, ``zexport sample`` into a folder that does not exist."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
from pathlib import Path

import pytest
from conftest import run_cli
from controlkit import kill_group, start_run, wait_for

from zexport.sample import make_sample

pytestmark = pytest.mark.timeout(120)


def test_a_killed_runs_warning_spool_does_not_leak_into_the_next_report(
        tmp_path: Path, isolated_env: dict[str, str]) -> None:
    """SIGKILL leaves ``.report-warnings.jsonl`` behind; a resumed run with no warnings of
    its own listed the old ones while its count said 0."""
    db = tmp_path / "archive.db"
    make_sample(db, conversations=1200, seed=3)
    out = tmp_path / "out"
    spool = out / ".zexport" / ".report-warnings.jsonl"
    proc = start_run(isolated_env, db, out, "--no-attachments", delay=0.01)
    try:
        wait_for(lambda: spool.exists() and spool.stat().st_size > 0 or proc.poll() is not None,
                 60, "warnings spooled to disk")
        assert proc.poll() is None, "the run ended before it could be killed"
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate(timeout=30)
    finally:
        kill_group(proc)
    assert spool.stat().st_size > 0
    con = sqlite3.connect(db)
    one = con.execute("SELECT id FROM conversations ORDER BY id LIMIT 1").fetchone()[0]
    con.close()
    again = run_cli(["run", "--db", str(db), "--out", str(out), "--id", one, "--tz", "UTC",
                     "--progress", "none", "--no-attachments", "--force"], isolated_env)
    assert again.returncode == 0, again.stderr
    report = json.loads((out / ".zexport" / "report.json").read_text())
    assert len(report["warnings"]) == report["counts"]["warnings"]
    assert all(w["conversation_id"] == one for w in report["warnings"])
    assert not spool.exists()


@pytest.fixture
def read_only_folder(tmp_path: Path) -> object:
    """A tmpfs mounted read-only (root ignores a folder's mode bits, not a mount's)."""
    mnt = tmp_path / "ro"
    mnt.mkdir()
    made = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=16m", "tmpfs", str(mnt)],
                          capture_output=True, text=True)
    if made.returncode:
        pytest.skip(f"cannot mount a tmpfs here: {made.stderr.strip()}")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)


def test_a_wal_archive_in_a_read_only_folder_says_what_to_do(
        read_only_folder: Path, sample_db: Path, isolated_env: dict[str, str],
        tmp_path: Path) -> None:
    archive = read_only_folder / "ownyourchat.db"
    archive.write_bytes(sample_db.read_bytes())
    con = sqlite3.connect(archive)
    assert con.execute("PRAGMA journal_mode=WAL").fetchone()[0] == "wal"  # as the app has it
    con.close()
    assert sorted(p.name for p in read_only_folder.iterdir()) == ["ownyourchat.db"]
    subprocess.run(["mount", "-o", "remount,ro", str(read_only_folder)], check=True)
    out = tmp_path / "out"
    res = run_cli(["run", "--db", str(archive), "--out", str(out), "--progress", "none"],
                  isolated_env)
    assert res.returncode == 2
    assert res.stderr == (
        f"zexport: error: cannot read archive {archive}: it is in WAL mode and SQLite cannot"
        f" create its -shm file in {read_only_folder} (read-only?); copy the archive (with"
        " its -wal file, if there is one) to a folder you can write and export the copy, or"
        " run zexport as a user who can write to that folder\n")
    assert not out.exists()
    copy = tmp_path / "copy.db"  # and the advice works
    copy.write_bytes(archive.read_bytes())
    done = run_cli(["run", "--db", str(copy), "--out", str(out), "--progress", "none",
                    "--no-attachments"], isolated_env)
    assert done.returncode == 0, done.stderr


def test_sample_into_a_missing_folder_is_one_line_and_creates_nothing(
        tmp_path: Path, isolated_env: dict[str, str]) -> None:
    target = tmp_path / "no" / "such" / "dir" / "a.db"
    res = run_cli(["sample", str(target)], isolated_env, cwd=tmp_path)
    assert res.returncode == 2
    assert res.stderr == (f"zexport: error: cannot write {target}: the folder"
                          f" {target.parent} does not exist\n")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["home", "rt"]
