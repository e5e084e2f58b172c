"""Links planted in ``<out>/.zexport`` are never followed (issue 17.1).

Each case plants a symlink (or a hard link, or a FIFO) where zexport keeps
one of its own files, runs a real ``zexport run`` (controller, workers,
ZeroMQ), then checks that the file the link pointed at is byte for byte
what it was, and that its contents appear in nothing the run wrote.
"""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path
from typing import Any

import pytest

from zexport.core.output import UnsafePathError, create_new, open_append, open_read

STATE = ".zexport"
# What the planted links point at: files of the user's that a run must not touch.
SECRET = b"VICTIM-CONTENT-4f1d9a: must never reach an export\n"

# (name in .zexport, what is planted there): every file a run keeps there.
PLANTED = [
    (".report-warnings.jsonl", "symlink"),
    (".report-attachment_failures.jsonl", "symlink"),
    (".report-warnings.jsonl", "hardlink"),
    ("worker-0.log", "symlink"),
    ("worker-1.log", "hardlink"),
    ("worker-1.log", "fifo"),  # must neither hang the run nor be written
    ("report.json", "symlink"),
    ("manifest.db", "symlink"),
    ("manifest.db-wal", "symlink"),
]


def _victim(tmp_path: Path, name: str) -> Path:
    path = tmp_path / "victims" / name.lstrip(".")
    path.parent.mkdir(exist_ok=True)
    path.write_bytes(SECRET + name.encode() + b"\n")
    path.chmod(0o640)
    return path


def _plant(state: Path, name: str, kind: str, victim: Path) -> None:
    if kind == "symlink":
        os.symlink(victim, state / name)
    elif kind == "hardlink":
        os.link(victim, state / name)
    else:
        os.mkfifo(state / name)


def _everything_written(out: Path) -> list[Path]:
    return [p for p in out.rglob("*") if p.is_file() and not p.is_symlink()]


@pytest.mark.timeout(120)
@pytest.mark.parametrize(("name", "kind"), PLANTED)
def test_a_link_planted_in_the_state_folder_is_replaced_never_followed(
        cli: Any, sample_db: Path, tmp_path: Path, name: str, kind: str) -> None:
    out = tmp_path / "out"
    state = out / STATE
    state.mkdir(parents=True)
    victim = _victim(tmp_path, name)
    before = (victim.read_bytes(), victim.stat().st_mode, victim.stat().st_mtime_ns)
    _plant(state, name, kind, victim)

    # --no-downloads: the sample's missing files become attachment failures (spooled);
    # its dirty rows become warnings (spooled).
    res = cli("run", "--db", str(sample_db), "--out", str(out), "--workers", "2",
              "--no-downloads", "--progress", "none", "--tz", "UTC", timeout=90)

    assert res.returncode == 0, res.stderr  # missing attachments: warnings
    assert "Traceback" not in res.stderr, res.stderr
    assert (victim.read_bytes(), victim.stat().st_mode, victim.stat().st_mtime_ns) == \
        before, f"{name}: the file a planted {kind} pointed at was changed"
    for path in _everything_written(out):
        assert SECRET not in path.read_bytes(), f"{path} carries a planted link's target"
    # The name now holds zexport's own file (or nothing: the spools are removed at the end).
    entry = state / name
    if entry.exists() or entry.is_symlink():
        st = entry.lstat()
        assert stat.S_ISREG(st.st_mode) and st.st_nlink == 1, name
    # The spools were really used: the report lists what they held.
    report = json.loads((state / "report.json").read_text())
    assert report["warnings"] and report["attachment_failures"]
    assert len(report["warnings"]) == report["counts"]["warnings"]
    assert len(report["attachment_failures"]) == report["counts"]["attachments_failed"]
    assert not (state / ".report-warnings.jsonl").exists()
    assert not (state / ".report-attachment_failures.jsonl").exists()
    assert (state / "worker-1.log").is_file()  # the second worker logged here, not there


@pytest.mark.timeout(120)
def test_planted_shard_folder_link_is_replaced(cli: Any, sample_db: Path,
                                               tmp_path: Path) -> None:
    """The JSONL format gathers records in shards under .zexport/shards: a link
    in place of that folder, or of a shard, never receives or gives records."""
    out = tmp_path / "out"
    (out / STATE).mkdir(parents=True)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "keep.txt").write_bytes(SECRET)
    os.symlink(elsewhere, out / STATE / "shards")

    res = cli("run", "--db", str(sample_db), "--out", str(out), "--format", "jsonl",
              "--no-attachments", "--progress", "none", "--tz", "UTC", timeout=90)

    assert res.returncode == 0, res.stderr
    assert sorted(p.name for p in elsewhere.iterdir()) == ["keep.txt"]
    assert (elsewhere / "keep.txt").read_bytes() == SECRET
    assert not (out / STATE / "shards").is_symlink()
    lines = (out / "conversations.jsonl").read_bytes().splitlines()
    assert lines and all(SECRET.strip() not in line for line in lines)


@pytest.mark.timeout(60)
@pytest.mark.parametrize("kind", ["symlink", "hardlink", "fifo"])
def test_a_lock_that_is_not_a_file_of_its_own_is_refused(cli: Any, sample_db: Path,
                                                         tmp_path: Path, kind: str) -> None:
    """The lock is truncated and written in place: through a link it would overwrite
    its target. One line, exit 2, the target untouched, no conversation written."""
    out = tmp_path / "out"
    (out / STATE).mkdir(parents=True)
    victim = _victim(tmp_path, "lock")
    _plant(out / STATE, "lock", kind, victim)

    res = cli("run", "--db", str(sample_db), "--out", str(out), "--progress", "none",
              timeout=60)

    assert res.returncode == 2, res.stderr
    assert "Traceback" not in res.stderr, res.stderr
    assert res.stderr.strip().splitlines()[-1].startswith(
        "zexport: error: cannot write to the output folder")
    assert victim.read_bytes() == SECRET + b"lock\n"
    assert sorted(p.name for p in out.iterdir()) == [STATE]


# -- the helpers every writer of .zexport goes through ------------------------------------

def test_create_new_replaces_a_link_and_a_leftover(tmp_path: Path) -> None:
    victim = _victim(tmp_path, "v")
    os.symlink(victim, tmp_path / "spool")
    fd = create_new(str(tmp_path / "spool"))
    os.write(fd, b"mine\n")
    os.close(fd)
    assert victim.read_bytes() == SECRET + b"v\n"
    assert (tmp_path / "spool").read_bytes() == b"mine\n"
    fd = create_new(str(tmp_path / "spool"))  # a leftover of an earlier run: started afresh
    os.close(fd)
    assert (tmp_path / "spool").read_bytes() == b""


def test_open_append_keeps_its_own_log_and_replaces_anything_else(tmp_path: Path) -> None:
    log = tmp_path / "worker.log"
    log.write_bytes(b"earlier run\n")
    fd = open_append(str(log))
    os.write(fd, b"this run\n")
    os.close(fd)
    assert log.read_bytes() == b"earlier run\nthis run\n"
    for kind in ("symlink", "hardlink", "fifo"):
        victim = _victim(tmp_path, kind)
        log.unlink()
        _plant(tmp_path, "worker.log", kind, victim)
        fd = open_append(str(log))
        os.write(fd, b"new\n")
        os.close(fd)
        assert victim.read_bytes() == SECRET + kind.encode() + b"\n", kind
        assert log.read_bytes() == b"new\n" and not log.is_symlink(), kind


def test_open_read_and_parents_refuse_links(tmp_path: Path) -> None:
    victim = _victim(tmp_path, "v")
    os.symlink(victim, tmp_path / "shard")
    with pytest.raises(UnsafePathError):
        open_read(str(tmp_path / "shard"))
    (tmp_path / "real").mkdir()
    os.symlink(tmp_path / "real", tmp_path / "linked")
    for call in (create_new, open_append, open_read):
        with pytest.raises(UnsafePathError):
            call(str(tmp_path / "linked" / "file"))
    assert not any((tmp_path / "real").iterdir())
    assert open_read(str(tmp_path / "absent")) is None
