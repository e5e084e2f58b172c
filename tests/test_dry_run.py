"""``zexport run --dry-run``: the run's own plan, said aloud, with nothing written.

Real runs and dry runs of the same archive and options are compared: what
the dry run says must be what the run then does, and the dry run must leave
every file (output, manifest, runtime folder) as it found it.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sqlite3
from pathlib import Path
from typing import Any

import pytest
from conftest import run_cli, tree_digest

pytestmark = pytest.mark.timeout(120)

OPTS = ["--tz", "UTC", "--no-downloads", "--progress", "none", "--workers", "2"]


def everything(root: Path) -> dict[str, str]:
    """Digest of every file under ``root``, zexport's state folder included."""
    return {p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def dry(env: dict[str, str], db: Path, out: Path, *extra: str) -> dict[str, Any]:
    res = run_cli(["run", "--db", str(db), "--out", str(out), *OPTS, "--dry-run",
                   "--progress", "json", *extra], env, timeout=60)
    assert res.returncode == 0, res.stderr
    doc: dict[str, Any] = json.loads(res.stdout)
    return doc


def real(env: dict[str, str], db: Path, out: Path, *extra: str) -> dict[str, Any]:
    res = run_cli(["run", "--db", str(db), "--out", str(out), *OPTS, *extra], env, timeout=90)
    assert res.returncode == 0, res.stderr
    doc: dict[str, Any] = json.loads((out / ".zexport" / "report.json").read_text())
    return doc


def test_dry_run_writes_nothing_and_predicts_the_first_run(
        isolated_env: dict[str, str], sample_db: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    said = dry(isolated_env, sample_db, out)
    assert not out.exists()  # not even the folder
    assert os.listdir(isolated_env["ZEXPORT_RUNTIME_DIR"]) == []
    report = real(isolated_env, sample_db, out)
    counts = report["counts"]
    assert said["selected"] == counts["selected"]
    assert said["render"] == counts["exported"] + counts["failed"]
    assert said["unchanged"] == 0 and said["moved"] == 0
    # Attachments: every one classified; downloads are off, so none "to download".
    assert said["attachments"] == said["on_disk"] + said["to_download"] + said["unavailable"]
    assert said["to_download"] == 0
    assert said["on_disk"] == counts["attachments_exported"]
    assert said["unavailable"] == counts["attachments_failed"]
    # The collisions it announces are the suffixed folders the run made.
    suffixed = [p for p in out.iterdir() if p.name.endswith(")") and " (" in p.name]
    assert said["suffixed"] == len(suffixed)


def test_dry_run_after_a_run_sees_what_is_unchanged_and_what_moves(
        isolated_env: dict[str, str], sample_db: Path, tmp_path: Path) -> None:
    db = tmp_path / "archive.db"
    shutil.copyfile(sample_db, db)
    out = tmp_path / "out"
    real(isolated_env, db, out, "--no-attachments")
    said = dry(isolated_env, db, out, "--no-attachments")
    assert said["render"] == 0 and said["unchanged"] == said["selected"]
    # A title changes in the archive: one folder to rename, one conversation to write.
    con = sqlite3.connect(db)
    cid, title = con.execute(
        "SELECT id, title FROM conversations WHERE title != '' ORDER BY id LIMIT 1").fetchone()
    con.execute("UPDATE conversations SET title = ? WHERE id = ?",
                (f"Renamed {title}", cid))
    con.commit()
    con.close()
    before = everything(out)
    said = dry(isolated_env, db, out, "--no-attachments")
    assert everything(out) == before  # nothing moved, manifest untouched
    assert said["moved"] == 1 and said["render"] == 1
    report = real(isolated_env, db, out, "--no-attachments")
    assert report["counts"]["exported"] == 1
    assert "moved 1 folder of a conversation whose title changed" in report["notes"]


def test_dry_run_text_and_refusals(isolated_env: dict[str, str], sample_db: Path,
                                   tmp_path: Path) -> None:
    out = tmp_path / "out"
    res = run_cli(["run", "--db", str(sample_db), "--out", str(out), "--tz", "UTC",
                   "--dry-run"], isolated_env, timeout=60)
    assert res.returncode == 0, res.stderr
    assert res.stdout.splitlines()[1].startswith("Dry run: nothing written.")
    assert "conversations selected" in res.stdout and "would write" in res.stdout
    assert not out.exists()
    before = tree_digest(tmp_path)
    bad = run_cli(["run", "--db", str(tmp_path / "missing.db"), "--out", str(out),
                   "--dry-run"], isolated_env, timeout=60)
    assert bad.returncode == 2 and "Traceback" not in bad.stderr
    assert tree_digest(tmp_path) == before and not out.exists()


def test_dry_run_names_the_attachments_no_credentials_can_fetch(
        isolated_env: dict[str, str], sample_db: Path, tmp_path: Path) -> None:
    """Without an auth file, the files of providers that need credentials will fail at
    once: the dry run says so per provider instead of counting them "to download"."""
    opts = ["--cache-dir", str(tmp_path / "cache")]
    res = run_cli(["run", "--db", str(sample_db), "--out", str(tmp_path / "o1"), "--tz", "UTC",
                   "--workers", "2", "--dry-run", "--progress", "json", *opts],
                  isolated_env, timeout=60)
    assert res.returncode == 0, res.stderr
    said = json.loads(res.stdout)
    refused = said["unavailable_no_credentials"]
    assert set(refused) == {"chatgpt", "claude"} and all(n > 0 for n in refused.values())
    assert said["attachments"] == said["on_disk"] + said["to_download"] + said["unavailable"]
    text = run_cli(["run", "--db", str(sample_db), "--out", str(tmp_path / "o1"), "--tz",
                    "UTC", "--dry-run", "--progress", "none", *opts], isolated_env, timeout=60)
    assert f"{sum(refused.values()):,} unavailable (no credentials for chatgpt, claude:" \
        in text.stdout
    res = run_cli(["run", "--db", str(sample_db), "--out", str(tmp_path / "o2"), "--tz", "UTC",
                   "--workers", "2", "--progress", "none", *opts], isolated_env, timeout=90)
    assert res.returncode == 0, res.stderr
    report = json.loads((tmp_path / "o2" / ".zexport" / "report.json").read_text())
    failed: dict[str, int] = {}
    for f in report["attachment_failures"]:
        if f["reason"].startswith("no credentials for "):
            name = f["reason"].split()[3]
            failed[name] = failed.get(name, 0) + 1
    assert failed == refused
