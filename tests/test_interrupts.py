"""Ctrl-C pressed again and again: the run still ends as a cancelled run should.

A user who wants an export to stop often presses Ctrl-C several times in a
row. The presses that arrive while the controller is already closing down
(after its workers stopped, before it has written the report) must not
interrupt that close-down: real processes, signals to the whole process group.
"""

from __future__ import annotations

import os
import signal
import subprocess
from pathlib import Path

import pytest
from controlkit import (
    kill_group,
    registration_for,
    report,
    start_run,
    temporaries,
    wait_for,
    wait_progress,
)

from zexport.sample import make_sample

pytestmark = pytest.mark.timeout(60)


@pytest.fixture(scope="module")
def archive(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("interrupts") / "archive.db"
    make_sample(path, conversations=200, seed=5)
    return path


def _press_until_exit(proc: subprocess.Popen[str], gap: float) -> None:
    """Send SIGINT to the run's process group every ``gap`` seconds until it exits."""
    def pressed_or_gone() -> bool:
        if proc.poll() is not None:
            return True
        try:
            os.killpg(proc.pid, signal.SIGINT)
        except ProcessLookupError:
            return True
        return False

    wait_for(pressed_or_gone, 20, "the run to exit under repeated Ctrl-C", step=gap)


@pytest.mark.parametrize("gap", [0.002, 0.01])
def test_repeated_ctrl_c_still_ends_cancelled_with_a_report_and_no_leftovers(
        tmp_path: Path, isolated_env: dict[str, str], archive: Path, gap: float) -> None:
    out = tmp_path / "out"
    proc = start_run(isolated_env, archive, out, delay=0.02)
    try:
        reg = registration_for(isolated_env, out)
        wait_progress(reg, 1, busy=True)
        _press_until_exit(proc, gap)
        stdout, stderr = proc.communicate(timeout=30)
    finally:
        kill_group(proc)
    assert proc.returncode == 130, (proc.returncode, stdout, stderr)
    assert "Aborted" not in stdout + stderr and "Traceback" not in stderr, stderr
    assert report(out)["status"] == "cancelled"
    assert temporaries(out) == []
    # The run's private folder (sockets, plan, attachment index) is gone with it.
    assert sorted(os.listdir(isolated_env["ZEXPORT_RUNTIME_DIR"])) == []
