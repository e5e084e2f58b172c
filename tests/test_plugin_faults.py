"""Plugins that go wrong (issue 17, point 7), in real runs: a record that cannot be stored,
an index over an incremental re-run, ``start``/``finish`` that raise, a format whose
plugin failed to load, strict plugin loading.

The plugin is loaded as a developer loads one: ``ZEXPORT_PLUGINS`` and ``PYTHONPATH``.
"""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any

import pytest
from conftest import run_cli
from controlkit import (
    WAIT_AT_GATE,
    Gate,
    finish,
    kill_group,
    registration_for,
    start_run,
    status,
    wait_for,
)

from zexport.sample import make_sample

pytestmark = pytest.mark.timeout(120)

FAULTY = '''
import json

from zexport import Format, Option, hookimpl


class Indexed(Format):
    """One file per conversation, and an index of every record in finish (as docs say)."""

    name = "indexed"
    extension = "txt"
    options = {
        "bad_emit_on": Option("emit a set for this conversation id", default=""),
        "start_fails": Option.flag("raise in start"),
        "finish_fails": Option.flag("raise in finish"),
        "finish_waits_for": Option("finish waits until the test opens this gate", default=""),
    }

    def start(self, run):
        if run.options["start_fails"]:
            raise ValueError("start broke on purpose")

    def render(self, conversation, ctx):
        if conversation.id == ctx.options["bad_emit_on"]:
            ctx.emit({1, 2})
        ctx.emit(json.dumps([conversation.id, conversation.title]))
        return conversation.title + "\\n"

    def finish(self, run):
        if run.options["finish_waits_for"]:
            wait_at_gate(run.options["finish_waits_for"])
        if run.options["finish_fails"]:
            raise ValueError("finish broke on purpose")
        run.write("index.txt", b"\\n".join(r.data for r in run.records()) + b"\\n")


@hookimpl
def zexport_formats():
    return [Indexed()]
'''
LABEL = 'plugin "faulty_plugin" (ZEXPORT_PLUGINS)'


@pytest.fixture
def env(isolated_env: dict[str, str], tmp_path: Path) -> dict[str, str]:
    folder = tmp_path / "plugs"
    folder.mkdir()
    (folder / "faulty_plugin.py").write_text(FAULTY + WAIT_AT_GATE)
    (folder / "broken_html.py").write_text("import no_such_module_at_all\n")
    return {**isolated_env, "PYTHONPATH": str(folder), "ZEXPORT_PLUGINS": "faulty_plugin"}


def _with_broken(env: dict[str, str]) -> dict[str, str]:
    return {**env, "ZEXPORT_PLUGINS": "faulty_plugin,broken_html"}


@pytest.fixture
def db(tmp_path: Path) -> Path:
    path = tmp_path / "archive.db"
    make_sample(path, conversations=60, seed=5)
    return path


def _export(env: dict[str, str], db: Path, out: Path, *extra: str) -> Any:
    return run_cli(["run", "--db", str(db), "--out", str(out), "--format", "indexed",
                    "--tz", "UTC", "--progress", "none", "--no-attachments", "--workers", "2",
                    *extra], env, cwd=out.parent, timeout=90)


def _report(out: Path) -> dict[str, Any]:
    doc: dict[str, Any] = json.loads((out / ".zexport" / "report.json").read_text())
    return doc


def _titles(db: Path) -> dict[str, str]:
    con = sqlite3.connect(db)
    try:
        return dict(con.execute("SELECT id, title FROM conversations"))
    finally:
        con.close()


def test_emitting_what_cannot_be_stored_fails_that_conversation_alone(
        env: dict[str, str], db: Path, tmp_path: Path) -> None:
    victim = sorted(_titles(db))[7]
    out = tmp_path / "out"
    res = _export(env, db, out, "-o", f"bad_emit_on={victim}", "--batch-size", "10")
    assert res.returncode == 1, res.stderr
    doc = _report(out)
    assert doc["worker_deaths"] == []
    assert [f["conversation_id"] for f in doc["failures"]] == [victim]
    assert doc["failures"][0]["reason"] == (
        f"format 'indexed' of {LABEL} failed: EmitError: ctx.emit() takes bytes or str, not set")
    assert doc["counts"]["exported"] == 59
    ids = [json.loads(line)[0] for line in (out / "index.txt").read_text().splitlines()]
    assert sorted(ids) == sorted(set(_titles(db)) - {victim})


def test_an_index_after_an_incremental_rerun_still_lists_the_skipped_conversations(
        env: dict[str, str], db: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    assert _export(env, db, out).returncode == 0
    first = (out / "index.txt").read_text()
    assert len(first.splitlines()) == 60
    again = _export(env, db, out)
    assert again.returncode == 0, again.stderr
    assert _report(out)["counts"]["skipped"] == 60
    assert (out / "index.txt").read_text() == first  # not an empty index
    changed = sorted(_titles(db))[3]
    con = sqlite3.connect(db)
    con.execute("UPDATE conversations SET title = 'Renamed here' WHERE id = ?", (changed,))
    con.commit()
    con.close()
    third = _export(env, db, out)
    assert third.returncode == 0, third.stderr
    counts = _report(out)["counts"]
    assert (counts["exported"], counts["skipped"]) == (1, 59)
    entries = [json.loads(line) for line in (out / "index.txt").read_text().splitlines()]
    assert len(entries) == 60
    assert [changed, "Renamed here"] in entries
    assert sorted(map(tuple, entries)) == sorted(_titles(db).items())


def test_a_finish_step_that_raises_says_who_what_and_where_the_traceback_is(
        env: dict[str, str], db: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    res = _export(env, db, out, "-o", "finish_fails=yes", "-q")
    assert res.returncode == 1
    log = out / ".zexport" / "run.log"
    assert res.stderr == (f"zexport: error: format 'indexed' of {LABEL} failed in its finish"
                          f" step: ValueError: finish broke on purpose (traceback in {log})\n")
    text = log.read_text()
    assert "Traceback (most recent call last)" in text
    assert 'raise ValueError("finish broke on purpose")' in text
    assert _report(out)["status"] == "partial"


def test_a_start_step_that_raises_stops_the_run_and_leaves_only_its_log(
        env: dict[str, str], db: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    res = _export(env, db, out, "-o", "start_fails=yes")
    assert res.returncode == 2
    log = out / ".zexport" / "run.log"
    assert res.stderr == (f"zexport: error: format 'indexed' of {LABEL} failed to start:"
                          f" ValueError: start broke on purpose (traceback in {log})\n")
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*")) == [
        ".zexport", ".zexport/run.log"]
    assert 'raise ValueError("start broke on purpose")' in log.read_text()


def test_a_format_whose_plugin_failed_to_load_says_why(
        env: dict[str, str], db: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    res = run_cli(["run", "--db", str(db), "--out", str(out), "--format", "broken_html",
                   "--progress", "none"], _with_broken(env), timeout=60)
    assert res.returncode == 2
    assert ("zexport: error: format 'broken_html' is not available: plugin \"broken_html\""
            " (ZEXPORT_PLUGINS) failed to load: ModuleNotFoundError: No module named"
            " 'no_such_module_at_all'") in res.stderr
    assert not out.exists()


def test_strict_plugin_loading_in_formats_is_one_line_not_a_traceback(
        env: dict[str, str]) -> None:
    res = run_cli(["formats"], {**_with_broken(env), "ZEXPORT_STRICT_PLUGINS": "1"}, timeout=60)
    assert res.returncode == 2
    assert res.stderr == ('zexport: error: Error loading plugin "broken_html":'
                          " ModuleNotFoundError: No module named 'no_such_module_at_all'\n")


def test_status_after_a_normal_finish_says_exited_not_dead(
        env: dict[str, str], db: Path, tmp_path: Path) -> None:
    """The finish step runs after every worker has left: status then shows them
    ``exited`` (a normal end), not ``dead``, and no death is counted."""
    out = tmp_path / "out"
    go = Gate(tmp_path / "go")
    proc = start_run(env, db, out, "--format", "indexed", "--no-attachments",
                     "-o", f"finish_waits_for={go.path}")
    try:
        reg = registration_for(env, out)

        def settled() -> dict[str, Any] | None:
            """Finishing, every worker gone and silent for 1 s: the controller's monitor
            (every 0.25 s) has looked at each exited process a few times by then."""
            st = status(reg)
            return st if st["phase"] == "finishing" and all(
                w["state"] in ("exited", "dead") and w["last_heard"] > 1.0
                for w in st["workers"]) else None
        try:
            st = wait_for(settled, 30, "every worker gone while finishing", step=0.05)
        finally:
            go.open()
        assert [w["state"] for w in st["workers"]] == ["exited", "exited"]
        assert st["worker_deaths"] == 0
        code, _, err = finish(proc)
    finally:
        kill_group(proc)
    assert code == 0, err
