"""Smaller faults of issue 17 (point 8), in real runs: a killed run's report spool, a WAL
archive in a read-only folder, ``zexport sample`` into a folder that does not exist."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
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
