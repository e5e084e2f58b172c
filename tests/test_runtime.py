"""zexport.core.runtime: the runtime folder's lookup must agree with tempfile's, exactly;
run folders of runs killed before registering are swept.

A controller and a client (of this version or another) must look in the same
folder; default_tempdir() replaces tempfile.gettempdir() only to spare
``zexport status`` the 15 ms of importing tempfile. Each case runs in a fresh
interpreter (tempfile caches its answer).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from zexport.core.runtime import new_run_dir, sweep_orphan_run_dirs

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
    code = ("import json, tempfile\nfrom zexport.core.runtime import default_tempdir\n"
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
        [sys.executable, "-c", "from zexport.core.runtime import new_run_dir; "
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


def _run(env: dict[str, str], db: Path, out: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "zexport", "run", "--db", str(db), "--out", str(out),
         "--workers", "2", "--progress", "none", "--no-attachments"],
        env=env, capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)


def test_an_existing_runtime_folder_with_another_mode_is_refused_never_chmodded(
        tmp_path: Path, isolated_env: dict[str, str], sample_db: Path) -> None:
    """ZEXPORT_RUNTIME_DIR=$HOME would have made a home folder 0700."""
    home = tmp_path / "a-home"
    home.mkdir()
    home.chmod(0o755)
    env = {**isolated_env, "ZEXPORT_RUNTIME_DIR": str(home)}
    out = tmp_path / "out"
    done = _run(env, sample_db, out)
    assert done.returncode == 2, done.stderr
    assert done.stderr == (f"zexport: error: runtime folder {home} has mode 0755, not 0700;"
                           " refusing it (zexport does not change it: `chmod 700` it, or set"
                           " ZEXPORT_RUNTIME_DIR to a private folder)\n")
    assert oct(home.stat().st_mode & 0o777) == "0o755"
    assert list(home.iterdir()) == [] and not out.exists()
    status = subprocess.run([sys.executable, "-m", "zexport", "status"], env=env,
                            capture_output=True, text=True, timeout=30)
    assert status.returncode == 2 and "has mode 0755" in status.stderr
    assert oct(home.stat().st_mode & 0o777) == "0o755"


def test_a_runtime_folder_planted_by_another_user_is_avoided_not_a_crash(
        tmp_path: Path, isolated_env: dict[str, str], sample_db: Path,
        request: pytest.FixtureRequest) -> None:
    """Another local user made ``<tmp>/zexport-<uid>`` first (here: owned by nobody):
    the export runs in a private folder of ours instead, and status finds it there."""
    short = Path(tempfile.mkdtemp(prefix="zx-"))  # pytest's tmp_path is too long for sockets
    request.addfinalizer(lambda: shutil.rmtree(short))
    tmp = short / "tmp"
    tmp.mkdir()
    planted = tmp / f"zexport-{os.getuid()}"
    planted.mkdir(mode=0o777)
    os.chown(planted, 65534, 65534)
    env = {k: v for k, v in isolated_env.items() if k != "ZEXPORT_RUNTIME_DIR"}
    env.update({"TMPDIR": str(tmp), "XDG_CACHE_HOME": str(short / "cache"),
                "ZEXPORT_TEST_DELAY_PER_CONVERSATION": "0.05"})
    out = tmp_path / "out"
    proc = subprocess.Popen(
        [sys.executable, "-m", "zexport", "run", "--db", str(sample_db), "--out", str(out),
         "--workers", "2", "--progress", "none", "--no-attachments"],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        stdin=subprocess.DEVNULL)
    private = Path(env["XDG_CACHE_HOME"]) / "zexport" / "runtime"
    try:
        from controlkit import wait_for

        wait_for(lambda: list(private.glob("*.json")) or proc.poll() is not None, 20,
                 "the run's registration")
        assert proc.poll() is None, proc.communicate()
        status = subprocess.run([sys.executable, "-m", "zexport", "status", "--json"], env=env,
                                capture_output=True, text=True, timeout=30)
        assert status.returncode == 0, status.stderr
        assert json.loads(status.stdout)["out"] == str(out)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0, err
    assert oct(private.stat().st_mode & 0o777) == "0o700"
    assert list(private.iterdir()) == []  # registration and run folder removed
    assert list(planted.iterdir()) == [] and planted.stat().st_uid == 65534


def test_a_runtime_path_too_long_for_a_socket_is_one_line_and_leaves_nothing(
        tmp_path: Path, isolated_env: dict[str, str], sample_db: Path) -> None:
    deep = tmp_path / ("d" * 60) / ("e" * 60)
    deep.mkdir(parents=True, mode=0o700)
    deep.chmod(0o700)
    env = {**isolated_env, "ZEXPORT_RUNTIME_DIR": str(deep)}
    out = tmp_path / "out"
    done = _run(env, sample_db, out)
    assert done.returncode == 2, done.stderr
    assert done.stderr.startswith(f"zexport: error: runtime folder {deep} is too long for its"
                                  " sockets (")
    assert done.stderr.count("\n") == 1
    assert list(deep.iterdir()) == [] and not out.exists()
