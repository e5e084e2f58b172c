"""Workers started early, while the controller imports (zexport.run.launch).

What must hold: an early worker is adopted like any other (its stderr ends up
in ``<out>/.zexport/worker-N.log``, what it wrote while starting included), and
a run that is refused after its workers were started leaves no process and no
run folder behind.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from conftest import run_cli
from controlkit import wait_for, worker_processes

from zexport.run.launch import EarlyWorkers

pytestmark = pytest.mark.timeout(90)

NOISY = '''
import sys
from zexport import Format, hookimpl

sys.stderr.write("BOOT-MARK from the plugin's import\\n")


class Noisy(Format):
    name = "noisy"
    extension = "txt"
    description = "writes to stderr while rendering"

    def render(self, conversation, ctx):
        sys.stderr.write(f"RENDER-MARK {conversation.id}\\n")
        return conversation.title


@hookimpl
def zexport_formats():
    return [Noisy()]
'''


def processes_mentioning(text: str) -> list[int]:
    """PIDs of live workers whose command line contains ``text`` (a run folder)."""
    return [pid for pid, _, cmdline in worker_processes() if text in cmdline]


def test_early_worker_logs_reach_the_output_folder(
        isolated_env: dict[str, str], sample_db: Path, tmp_path: Path) -> None:
    plugs = tmp_path / "plugs"
    plugs.mkdir()
    (plugs / "noisy_plugin.py").write_text(NOISY)
    env = dict(isolated_env, PYTHONPATH=str(plugs), ZEXPORT_PLUGINS="noisy_plugin")
    out = tmp_path / "out"
    res = run_cli(["run", "--db", str(sample_db), "--out", str(out), "--format", "noisy",
                   "--workers", "2", "--no-attachments", "--progress", "none"], env, timeout=60)
    assert res.returncode == 0, res.stderr
    logs = {p.name: p.read_text() for p in (out / ".zexport").glob("worker-*.log")}
    assert sorted(logs) == ["worker-0.log", "worker-1.log"]
    # Both workers loaded the plugin while starting (before config named the log) ...
    for text in logs.values():
        assert "[while starting]\nBOOT-MARK" in text, text
    # ... and whatever they rendered, they said so in the log of the output folder.
    assert "RENDER-MARK" in "".join(logs.values())
    # The run folder (with the boot logs) is gone with the run.
    assert os.listdir(env["ZEXPORT_RUNTIME_DIR"]) == []


@pytest.mark.parametrize("case", ["missing parent", "unknown format", "bad --since"])
def test_refused_run_leaves_no_worker_and_no_run_folder(
        isolated_env: dict[str, str], sample_db: Path, tmp_path: Path, case: str) -> None:
    out = tmp_path / "out"
    args = ["run", "--db", str(sample_db), "--out", str(out), "--workers", "2"]
    if case == "missing parent":
        args[4] = str(tmp_path / "no" / "such" / "folder")
    elif case == "unknown format":
        args += ["--format", "no-such-format"]
    else:
        args += ["--since", "yesterday-ish"]
    runtime = isolated_env["ZEXPORT_RUNTIME_DIR"]
    res = run_cli(args, isolated_env, timeout=60)
    assert res.returncode == 2, res.stderr
    assert "Traceback" not in res.stderr
    wait_for(lambda: not processes_mentioning(runtime), 5, "the early workers to be gone")
    assert processes_mentioning(runtime) == []
    assert os.listdir(runtime) == []
    assert not out.exists()


def test_early_workers_not_adopted_are_killed_and_their_folder_removed(
        isolated_env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> None:
    runtime = isolated_env["ZEXPORT_RUNTIME_DIR"]
    monkeypatch.setenv("ZEXPORT_RUNTIME_DIR", runtime)
    with EarlyWorkers(2, "markdown") as early:
        wait_for(lambda: len(processes_mentioning(early.run_dir)) == 2, 10,
                 "both children to have exec'd the worker")
        assert len(processes_mentioning(early.run_dir)) == 2
        assert os.path.isdir(early.run_dir)
    assert processes_mentioning(early.run_dir) == []  # killed and reaped on the way out
    assert os.listdir(runtime) == []


def test_adopted_folder_is_left_to_the_controller(
        isolated_env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ZEXPORT_RUNTIME_DIR", isolated_env["ZEXPORT_RUNTIME_DIR"])
    with EarlyWorkers(1, "markdown") as early:
        run_id, run_dir = early.adopt()
        proc = early.take(0)
        assert proc is not None and early.take(0) is None and early.take(1) is None
    try:
        assert os.path.isdir(run_dir) and os.path.basename(run_dir) == run_id
        assert proc.poll() is None  # taken: the controller's to stop, not ours
    finally:
        proc.kill()
        proc.wait(10)
