"""zexport.runtime: the runtime folder's lookup must agree with tempfile's, exactly;
run folders of runs killed before registering are swept.

A controller and a client (of this version or another) must look in the same
folder; default_tempdir() replaces tempfile.gettempdir() only to spare
``zexport status`` the 15 ms of importing tempfile. Each case runs in a fresh
interpreter (tempfile caches its answer).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from zexport.runtime import new_run_dir, sweep_orphan_run_dirs

pytestmark = pytest.mark.timeout(60)


@pytest.mark.parametrize("case", ["default", "TMPDIR", "TMPDIR missing", "TMPDIR relative",
                                  "TMPDIR empty, TEMP", "TMP", "TMPDIR is a file"])
def test_default_tempdir_is_what_tempfile_says(tmp_path: Path, case: str) -> None:
    env = {k: v for k, v in os.environ.items() if k not in ("TMPDIR", "TEMP", "TMP")}
    (tmp_path / "rel").mkdir()
    (tmp_path / "a-file").write_text("")
    env.update({
        "default": {},
        "TMPDIR": {"TMPDIR": str(tmp_path)},
        "TMPDIR missing": {"TMPDIR": str(tmp_path / "missing"), "TMP": str(tmp_path / "rel")},
        "TMPDIR relative": {"TMPDIR": "rel"},
        "TMPDIR empty, TEMP": {"TMPDIR": "", "TEMP": str(tmp_path / "rel")},
        "TMP": {"TMP": str(tmp_path)},
        "TMPDIR is a file": {"TMPDIR": str(tmp_path / "a-file")},
    }[case])
    code = ("import json, tempfile\nfrom zexport.runtime import default_tempdir\n"
            "print(json.dumps([default_tempdir(), tempfile.gettempdir()]))")
    res = subprocess.run([sys.executable, "-c", code], env=env, cwd=tmp_path,
                         capture_output=True, text=True, timeout=30)
    ours, theirs = json.loads(res.stdout)
    assert ours == theirs
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a-file", "rel"]  # probes removed


def test_orphan_run_folders_are_swept_only_when_their_maker_is_dead(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A run killed between making its folder and registering leaves the folder behind."""
    runtime = tmp_path / "rt"
    runtime.mkdir(mode=0o700)
    monkeypatch.setenv("ZEXPORT_RUNTIME_DIR", str(runtime))
    made = subprocess.run(  # a process that makes a run folder and dies (as a SIGKILL would)
        [sys.executable, "-c", "from zexport.runtime import new_run_dir; "
         "print(new_run_dir()[1])"], env=dict(os.environ, ZEXPORT_RUNTIME_DIR=str(runtime)),
        capture_output=True, text=True, timeout=30, check=True)
    orphan = Path(made.stdout.strip())
    (orphan / "boot-0.log").write_text("")
    _, ours = new_run_dir()  # made by a live process (this one)
    unowned = runtime / "abcdef01"  # no owner file: being made, or by another version
    unowned.mkdir()
    registered = runtime / "0badc0de"  # dead owner but registered: list_runs' business
    registered.mkdir()
    (registered / "owner").write_text("999999999")
    (runtime / "0badc0de.json").write_text("{}")
    assert sweep_orphan_run_dirs() == 1
    assert not orphan.exists()
    assert Path(ours).is_dir() and unowned.is_dir() and registered.is_dir()


@pytest.mark.parametrize("missing", ["out", "control"])
def test_status_and_cancel_ignore_a_registration_without_its_fields(
        tmp_path: Path, isolated_env: dict[str, str], missing: str) -> None:
    """A registration of a live pid that lacks a field (written by another version, or
    by hand) is foreign: ignored, as unreadable ones are, not a KeyError traceback."""
    from conftest import run_cli

    runtime = Path(isolated_env["ZEXPORT_RUNTIME_DIR"])
    info = {"version": 1, "run_id": "abcd1234", "pid": os.getpid(), "protocol": 1,
            "control": f"ipc://{runtime}/abcd1234/control", "out": str(tmp_path / "out")}
    del info[missing]
    (runtime / "abcd1234.json").write_text(json.dumps(info))
    (runtime / "ef567890.json").write_text(json.dumps(dict(info, run_id="ef567890")))
    for cmd in (["status"], ["cancel", "--no-wait"], ["status", "--run", "abcd1234"]):
        res = run_cli(cmd, isolated_env, timeout=20)
        assert "Traceback" not in res.stderr, res.stderr
        assert res.returncode == 1, (cmd, res.stderr)
        assert "no zexport export is running" in res.stderr or "abcd1234" in res.stderr
