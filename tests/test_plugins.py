"""The format plugin contract, proved with plugins defined here (BRIEF §7, issue 5).

Each test writes plugin modules into its tmp folder and loads them the way a
developer does while writing one: ``ZEXPORT_PLUGINS=module`` with the folder
on ``PYTHONPATH``. Exports run as real subprocesses (controller + workers).
"""

from __future__ import annotations

import json
import re
import sqlite3
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest
from conftest import run_cli

from zexport.core.output import UnsafePathError
from zexport.core.timezones import resolve_tz
from zexport.errors import UsageError
from zexport.formats.base import RunContext
from zexport.hookspecs import PLUGIN_API
from zexport.plugins import load_registry

pytestmark = pytest.mark.timeout(120)

PROBE = '''
import threading
from zexport import Format, Option, hookimpl


class Probe(Format):
    """A format that does what its options tell it, to exercise every contract path."""

    name = "probe"
    extension = "txt"
    description = "contract probe"
    options = {
        "greeting": Option("text put before the title", default="hello"),
        "shout": Option.flag("upper-case the output"),
        "fail_on": Option("raise on this conversation id", default=""),
        "hang_on": Option("never return on this conversation id", default=""),
        "escape_on": Option("write outside the folder on this id", default=""),
    }

    def start(self, run):
        run.write("probe-start.txt", f"{run.total} {sum(1 for _ in run.conversations())}\\n")

    def render(self, conversation, ctx):
        o = ctx.options
        if conversation.id == o["fail_on"]:
            raise RuntimeError("boom on purpose")
        if conversation.id == o["hang_on"]:
            never = threading.Event()
            while True:  # a hostile hang: swallows even the exceptions a timeout might raise
                try:
                    never.wait()
                except BaseException:
                    pass
        if conversation.id == o["escape_on"]:
            try:
                ctx.write("../escaped.txt", "I got out")
            except Exception:
                pass  # swallowing the refusal must not make the conversation succeed
        ctx.emit(conversation.id)
        text = f"{o['greeting']} {conversation.title}\\n"
        return text.upper() if o["shout"] else text

    def finish(self, run):
        lines = [f"{e.id}\\t{'ok' if e.exported else 'failed'}\\t{e.folder}"
                 for e in run.conversations()]
        run.write("probe-index.txt", "\\n".join(lines) + "\\n")
        run.write("probe-records.txt", b"\\n".join(r.data for r in run.records()) + b"\\n")


@hookimpl
def zexport_formats():
    return [Probe()]
'''

BROKEN = {
    "broken_import": "import no_such_module_anywhere\n",
    "bad_signature": textwrap.dedent("""
        from zexport import hookimpl

        @hookimpl
        def zexport_formats(config):
            return []
    """),
    "typo_hook": textwrap.dedent("""
        from zexport import hookimpl

        @hookimpl
        def zexport_format():
            return []
    """),
    "unmarked_typo": textwrap.dedent("""
        def zexport_fromats():
            return []
    """),
    "future_api": textwrap.dedent("""
        from zexport import hookimpl

        ZEXPORT_PLUGIN_API = 2

        @hookimpl
        def zexport_formats():
            return []
    """),
}


@pytest.fixture
def plugin_env(isolated_env: dict[str, str], tmp_path: Path) -> dict[str, str]:
    """The isolated environment with the probe and every broken plugin loadable."""
    folder = tmp_path / "plugs"
    folder.mkdir()
    (folder / "probe_plugin.py").write_text(PROBE)
    for name, source in BROKEN.items():
        (folder / f"{name}.py").write_text(source)
    env = dict(isolated_env)
    env["PYTHONPATH"] = str(folder)
    env["ZEXPORT_PLUGINS"] = ",".join(["probe_plugin", *BROKEN])
    return env


def ids_in_order(db: Path) -> list[str]:
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    rows = [r[0] for r in con.execute(
        "SELECT id FROM conversations ORDER BY created_at IS NULL, created_at, id")]
    con.close()
    return rows


def export(env: dict[str, str], db: Path, out: Path, *extra: str,
           timeout: float = 120) -> Any:
    return run_cli(["run", "--db", str(db), "--out", str(out), "--format", "probe",
                    "--tz", "UTC", "--progress", "none", "--no-attachments", *extra],
                   env, cwd=out.parent, timeout=timeout)


def report(out: Path) -> dict[str, Any]:
    doc: dict[str, Any] = json.loads((out / ".zexport" / "report.json").read_text())
    return doc


def test_formats_lists_plugins_options_and_each_broken_one(plugin_env: dict[str, str],
                                                          tmp_path: Path) -> None:
    res = run_cli(["formats"], plugin_env, cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    text = res.stdout
    assert "probe" in text and "contract probe" in text and "[ZEXPORT_PLUGINS]" in text
    assert "-o greeting=...  text put before the title (default: hello)" in text
    assert "markdown" in text and "json" in text and "zexport 0.1.0" in text
    broken = text.split("Broken plugins (not loaded):", 1)[1].strip().splitlines()
    assert len(broken) == len(BROKEN)
    by_name = {name: next(line for line in broken if f'"{name}"' in line) for name in BROKEN}
    assert "ModuleNotFoundError" in by_name["broken_import"]
    assert "no_such_module_anywhere" in by_name["broken_import"]
    assert "PluginValidationError" in by_name["bad_signature"]
    assert "config" in by_name["bad_signature"]
    assert "unknown hook" in by_name["typo_hook"]
    assert "did you mean zexport_formats" in by_name["unmarked_typo"]
    major, minor = PLUGIN_API
    assert f"built for plugin API 2; this zexport has plugin API {major}.{minor}" in by_name[
        "future_api"]


def test_broken_plugins_do_not_stop_other_formats(plugin_env: dict[str, str],
                                                  sample_db: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    res = run_cli(["run", "--db", str(sample_db), "--out", str(out), "--format", "markdown",
                   "--progress", "none", "--no-attachments"], plugin_env, cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    warnings = [line for line in res.stderr.splitlines() if "not loaded" in line]
    assert len(warnings) == len(BROKEN)
    assert len(list(out.glob("*/conversation.md"))) == len(ids_in_order(sample_db))


def test_unknown_format_lists_the_available_ones(plugin_env: dict[str, str],
                                                 sample_db: Path, tmp_path: Path) -> None:
    res = run_cli(["run", "--db", str(sample_db), "--out", str(tmp_path / "o"),
                   "--format", "nope"], plugin_env, cwd=tmp_path)
    assert res.returncode == 2
    listed = re.search(r"unknown format 'nope' \(available: ([^)]*)\)", res.stderr)
    assert listed, res.stderr
    names = listed.group(1).split(", ")
    assert {"json", "markdown", "probe"} <= set(names) and names == sorted(names)


def test_options_start_finish_and_records(plugin_env: dict[str, str], sample_db: Path,
                                          tmp_path: Path) -> None:
    ids = ids_in_order(sample_db)
    results = []
    for workers in ("1", "3"):
        out = tmp_path / f"out{workers}"
        res = export(plugin_env, sample_db, out, "-o", "greeting=hey", "-o", "shout=yes",
                     "--workers", workers, "--batch-size", "4")
        assert res.returncode == 0, res.stderr
        bodies = [p.read_text() for p in out.glob("*/conversation.txt")]
        assert len(bodies) == len(ids)
        assert all(b.startswith("HEY ") for b in bodies)
        assert (out / "probe-start.txt").read_text() == f"{len(ids)} {len(ids)}\n"
        index = (out / "probe-index.txt").read_text().splitlines()
        assert [line.split("\t")[0] for line in index] == ids  # export order
        assert all(line.split("\t")[1] == "ok" for line in index)
        assert all((out / line.split("\t")[2] / "conversation.txt").exists() for line in index)
        records = (out / "probe-records.txt").read_text().splitlines()
        assert records == ids
        results.append((out / "probe-records.txt").read_bytes())
    assert results[0] == results[1]


@pytest.mark.parametrize(("option", "message"), [
    ("nope=1", "format 'probe' has no option 'nope' (options: escape_on, fail_on, "
               "greeting, hang_on, shout)"),
    ("shout=maybe", "option 'shout' of format 'probe': expected true or false, got 'maybe'"),
    ("shout", "expected key=value, got 'shout'"),
])
def test_bad_options_are_usage_errors(plugin_env: dict[str, str], sample_db: Path,
                                      tmp_path: Path, option: str, message: str) -> None:
    out = tmp_path / "out"
    res = export(plugin_env, sample_db, out, "-o", option)
    assert res.returncode == 2
    assert message in res.stderr
    assert not out.exists()


def test_a_raising_plugin_fails_that_conversation_only(plugin_env: dict[str, str],
                                                       sample_db: Path, tmp_path: Path) -> None:
    ids = ids_in_order(sample_db)
    victim = ids[5]
    out = tmp_path / "out"
    res = export(plugin_env, sample_db, out, "-o", f"fail_on={victim}", "--workers", "2")
    assert res.returncode == 1, res.stderr
    doc = report(out)
    assert [f["conversation_id"] for f in doc["failures"]] == [victim]
    reason = doc["failures"][0]["reason"]
    assert reason == ("format 'probe' of plugin \"probe_plugin\" (ZEXPORT_PLUGINS) failed: "
                      "RuntimeError: boom on purpose")
    assert doc["counts"]["exported"] == len(ids) - 1
    index = (out / "probe-index.txt").read_text().splitlines()
    assert [line.split("\t")[1] for line in index].count("failed") == 1
    assert (out / "probe-records.txt").read_text().splitlines() == [i for i in ids if i != victim]


def test_a_hanging_plugin_is_stopped_and_its_worker_replaced(
        plugin_env: dict[str, str], sample_db: Path, tmp_path: Path) -> None:
    ids = ids_in_order(sample_db)
    victim = ids[len(ids) // 2]
    out = tmp_path / "out"
    began = time.monotonic()
    res = export(plugin_env, sample_db, out, "-o", f"hang_on={victim}", "--workers", "2",
                 "--render-timeout", "1", timeout=60)
    elapsed = time.monotonic() - began
    assert res.returncode == 1, res.stderr
    doc = report(out)
    assert [f["conversation_id"] for f in doc["failures"]] == [victim]
    assert "timed out after 1s" in doc["failures"][0]["reason"]
    assert "format 'probe'" in doc["failures"][0]["reason"]
    assert doc["counts"]["exported"] == len(ids) - 1
    assert any("timed out" in d["reason"] for d in doc["worker_deaths"])
    # Export order survives the batch being cut around the hung conversation.
    assert (out / "probe-records.txt").read_text().splitlines() == [i for i in ids if i != victim]
    assert elapsed < 30


@pytest.mark.parametrize("layout", ["folder", "note", "{provider}/{title}"])
def test_a_plugin_writing_outside_its_folder_is_refused(
        plugin_env: dict[str, str], sample_db: Path, tmp_path: Path, layout: str) -> None:
    # With a note, the conversation's folder is attachments/<name>/: "../escaped.txt"
    # would still be inside the output folder, but not inside the conversation's.
    ids = ids_in_order(sample_db)
    victim = ids[3]
    out = tmp_path / "out"
    res = export(plugin_env, sample_db, out, "-o", f"escape_on={victim}", "--layout", layout)
    assert res.returncode == 1, res.stderr
    doc = report(out)
    assert [f["conversation_id"] for f in doc["failures"]] == [victim]
    assert "tried to write outside its folder" in doc["failures"][0]["reason"]
    assert not list(tmp_path.rglob("escaped.txt"))
    assert doc["counts"]["exported"] == len(ids) - 1


def test_run_context_writes_only_inside_the_output_folder(tmp_path: Path) -> None:
    run = RunContext(out_dir=str(tmp_path), options={}, tz=resolve_tz("UTC"),
                     branches="active", exported_at="")
    for bad in ("../x", "/etc/x", "a/../../x", ""):
        with pytest.raises(UnsafePathError):
            run.write(bad, "x")
    run.write("sub/index.txt", "ok")
    assert (tmp_path / "sub" / "index.txt").read_text() == "ok"
    with pytest.raises(RuntimeError), run.open("big.txt") as fh:
        fh.write(b"half")
        raise RuntimeError("stop")
    assert not (tmp_path / "big.txt").exists()  # atomic: nothing half-written
    assert [p.name for p in tmp_path.iterdir()] == ["sub"]


def test_parse_options_in_process() -> None:
    fmt = load_registry().get_format("markdown")
    assert fmt.parse_options({}) == {"reasoning": "show", "tool_calls": "show", "math": "dollars",
                                     "properties": "obsidian"}
    assert fmt.parse_options({"reasoning": "hide"})["reasoning"] == "hide"
    with pytest.raises(UsageError, match="has no option 'x'"):
        fmt.parse_options({"x": "1"})
    with pytest.raises(UsageError, match="must be one of show, hide, not 'maybe'"):
        fmt.parse_options({"reasoning": "maybe"})


def test_builtin_formats_constant_matches_the_builtin_plugins() -> None:
    """BUILTIN_FORMATS decides whether a worker skips plugin discovery: it must be exact."""
    from zexport.plugins import BUILTIN_FORMATS

    assert sorted(load_registry(builtin_only=True).formats) == sorted(BUILTIN_FORMATS)
    assert set(BUILTIN_FORMATS) <= set(load_registry().formats)


@pytest.mark.timeout(30)
def test_builtin_only_loading_skips_package_metadata() -> None:
    """A worker exporting markdown never imports importlib.metadata (~25 ms of start-up),
    nor the attachment providers, their e-mail header parser and the auth file's TOML
    reader (~20 ms more): workers never download."""
    import subprocess
    import sys

    code = ("import sys, zexport.work.worker; from zexport.plugins import load_registry; "
            "r = load_registry(builtin_only=True); assert 'markdown' in r.formats; "
            "assert not r.providers; "
            "print([m for m in ('importlib.metadata', 'zexport.providers.base', "
            "'zexport.net.auth', 'email.message', 'tomllib', 'httpx') "
            "if m in sys.modules])")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=25)
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == "[]"


def test_worker_with_a_wrong_format_hint_still_finds_a_plugin_format(
        plugin_env: dict[str, str], sample_db: Path, tmp_path: Path) -> None:
    """The hint only saves time: told "markdown" but configured for a plugin's format,
    a real worker loads every plugin and renders with it."""
    from controlkit import FakeController

    from zexport.core.runfiles import clear_shards

    run_dir = tmp_path / "run"
    run_dir.mkdir(mode=0o700)
    out = tmp_path / "out"
    out.mkdir()
    cid = ids_in_order(sample_db)[0]
    (out / ".zexport").mkdir()
    clear_shards(str(out), "probe")  # the probe emits records (the controller does this)
    with FakeController(run_dir, ("markdown",), env=plugin_env) as fake:
        fake.recv(fake.pair, "hello")
        fake.send(fake.pair, "config", config={
            "db": str(sample_db), "out": str(out), "format": "probe", "format_options": {},
            "tz": "UTC", "branches": "active", "exported_at": "2024-01-01T00:00:00+00:00",
            "attachments": "off", "downloads": False,
            "hb_interval": 0.1, "hb_timeout": 30})
        fake.send(fake.tasks, "batch", batch=0, items=[[cid, "folder"]])
        done = fake.recv(fake.results, "done", batch=0)
        assert done["results"][0]["ok"], done["results"]
        fake.send(fake.pair, "cancel", reason="test")
        assert fake.worker.wait(timeout=10) == 0
    assert (out / "folder" / "conversation.txt").read_text().startswith("hello ")
