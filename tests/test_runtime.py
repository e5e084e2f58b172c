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
