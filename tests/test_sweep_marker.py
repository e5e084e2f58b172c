"""Temporaries are swept after a run that did not end cleanly, and only then: a clean run
removes its marker (``.zexport/running``), so an unchanged re-run does not walk the whole
tree for them (that walk was most of its time at 10,000 conversations)."""

from __future__ import annotations

import os
import signal
from pathlib import Path
from typing import Any

import pytest
from controlkit import finish, kill_group, registration_for, start_run, wait_progress

from zexport.core.output import TEMP_PREFIX
from zexport.sample import make_sample

pytestmark = pytest.mark.timeout(120)


def test_a_killed_run_leaves_its_marker_and_the_next_run_sweeps(
        cli: Any, tmp_path: Path, isolated_env: dict[str, str]) -> None:
    db = tmp_path / "archive.db"
    make_sample(db, conversations=120, seed=4)
    out = tmp_path / "out"
    marker = out / ".zexport" / "running"
    proc = start_run(isolated_env, db, out, delay=0.05)
    try:
        wait_progress(registration_for(isolated_env, out), 1, busy=True)
        assert marker.exists()  # while the run goes
        os.killpg(proc.pid, signal.SIGKILL)
        finish(proc)
    finally:
        kill_group(proc)
    assert marker.exists()  # a killed run could not remove it
    folder = next(p for p in out.iterdir() if p.is_dir() and p.name != ".zexport")
    planted = folder / f"{TEMP_PREFIX}999-0"  # what a killed worker leaves mid-write
    planted.write_bytes(b"half a file")
    res = cli("run", "--db", str(db), "--out", str(out), "--progress", "none", "--tz", "UTC")
    assert res.returncode == 0, res.stderr
    assert not planted.exists()
    assert not marker.exists()  # a clean end: the next run need not sweep

