"""SIGHUP (the terminal closed) ends a run as SIGTERM does: cancelled, with its report,
nothing half-written, no worker left: a real run, a real signal to its process group."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest
from controlkit import (
    finish,
    kill_group,
    registration_for,
    report,
    start_run,
    temporaries,
    wait_progress,
)

from zexport.sample import make_sample

pytestmark = pytest.mark.timeout(90)


def test_sighup_cancels_the_run_with_its_report(tmp_path: Path,
                                                isolated_env: dict[str, str]) -> None:
    db = tmp_path / "archive.db"
    make_sample(db, conversations=200, seed=3)
    out = tmp_path / "out"
    proc = start_run(isolated_env, db, out, delay=0.05)
    try:
        reg = registration_for(isolated_env, out)
        wait_progress(reg, 1, busy=True)
        os.killpg(proc.pid, signal.SIGHUP)  # what a closed terminal sends to its group
        status, stdout, stderr = finish(proc)
    finally:
        kill_group(proc)
    assert status == 130, (status, stdout, stderr)
    assert "Traceback" not in stderr, stderr
    doc = report(out)
    assert doc["status"] == "cancelled" and doc["cancel_reason"] == "hangup"
    assert 0 < doc["counts"]["exported"] < 200
    assert doc["worker_deaths"] == []  # workers ignored the hangup; the controller stopped them
    assert temporaries(out) == []
    assert sorted(os.listdir(isolated_env["ZEXPORT_RUNTIME_DIR"])) == []
