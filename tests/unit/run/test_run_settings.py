"""One settings object, click to worker: the spec, its worker part on the wire, and what
the worker's exporter and the render context take from it. Planning and the dry run as
functions of the spec, on the app's real archive (tests/fixtures/app/realistic.db).
"""

from __future__ import annotations

import dataclasses
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import apsw
import pytest
from corpora import APP_FIXTURES

from zexport import protocol
from zexport.core.settings import WorkerSettings
from zexport.errors import OutputError, ProtocolError
from zexport.run.checkpoints import Cancelled
from zexport.run.dryrun import dry_run
from zexport.run.plan import Plan
from zexport.run.planning import plan_run
from zexport.run.report import RunReport
from zexport.run.setup import RunSetup
from zexport.run.spec import RunSpec
from zexport.sources.archive import list_conversations, open_archive
from zexport.work.exporter import ExportSettings

REALISTIC = APP_FIXTURES / "realistic.db"


def spec_for(out: Path, **fields: object) -> RunSpec:
    return RunSpec(db=str(REALISTIC), out=str(out), tz="Europe/Paris", layout="note",
                   branches="all", format_options={"properties": "basic"},
                   **fields)  # type: ignore[arg-type]


def test_the_spec_is_frozen() -> None:
    spec = RunSpec(db="a.db", out="out")
    with pytest.raises(dataclasses.FrozenInstanceError):
        spec.workers = 9  # type: ignore[misc]


def test_every_config_key_is_a_settings_field_and_the_reverse() -> None:
    """The protocol checks the keys the worker reads, no more, no fewer."""
    keys = set(protocol.CONFIG.required) | set(protocol.CONFIG.optional)
    assert keys == {f.name for f in dataclasses.fields(WorkerSettings)}
    required = {f.name for f in dataclasses.fields(WorkerSettings)
                if f.default is dataclasses.MISSING
                and f.default_factory is dataclasses.MISSING}
    assert set(protocol.CONFIG.required) == required


def test_worker_settings_come_from_the_spec_and_survive_the_wire(tmp_path: Path) -> None:
    spec = spec_for(tmp_path / "out", hb_interval=0.2, hb_timeout=4.0, render_timeout=7.5,
                    attachment_roots=(str(tmp_path),), overwrite_edited=True)
    setup, conn = RunSetup.prepare(spec)
    conn.close()
    settings = setup.worker_settings(str(tmp_path / "run"))
    assert (settings.db, settings.out) == (str(REALISTIC), str(tmp_path / "out"))
    assert (settings.format, settings.tz, settings.branches) == ("markdown", "Europe/Paris",
                                                                 "all")
    assert (settings.layout, settings.format_options) == ("note", {"properties": "basic"})
    assert (settings.hb_interval, settings.hb_timeout) == (0.2, 2.0)  # half: it leaves first
    assert (settings.render_timeout, settings.overwrite_edited) == (7.5, True)
    assert settings.index_parts == tuple(  # a part of the side indexes per worker
        str(tmp_path / "run" / f"index-{i}.db") for i in range(spec.workers))
    assert str(tmp_path) in settings.attachment_roots
    assert settings.exported_at == datetime.fromtimestamp(
        int(setup.started), ZoneInfo("Europe/Paris")).isoformat()
    one = settings.for_worker(str(tmp_path / "worker-0.log"))
    frame = protocol.encode("config", config=one.to_wire())
    assert WorkerSettings.from_wire(protocol.decode(frame)["config"]) == one


def test_the_wire_keeps_the_protocol_checks() -> None:
    good = WorkerSettings(db="/a.db", out="/out", format="markdown", tz="UTC",
                          branches="active", exported_at="2026-01-01T00:00:00+00:00")
    assert "log" not in good.to_wire()  # absent, not nil: the protocol wants a str
    for key, bad in (("layout", 3), ("downloads", "yes"), ("attachment_roots", [1]),
                     ("render_timeout", True)):
        wire = {**good.to_wire(), key: bad}
        with pytest.raises(ProtocolError, match=key):
            protocol.decode(protocol.encode("config", config=wire))
    wire = {k: v for k, v in good.to_wire().items() if k != "exported_at"}
    with pytest.raises(ProtocolError, match="exported_at"):
        protocol.decode(protocol.encode("config", config=wire))
    # Keys a newer controller may add are ignored; absent optional keys take defaults.
    minimal = {k: getattr(good, k) for k in protocol.CONFIG.required}
    assert WorkerSettings.from_wire({**minimal, "new_key": 1}) == good


def test_the_exporter_and_render_context_take_their_fields_from_the_settings(
        tmp_path: Path) -> None:
    from zexport.plugins import load_registry

    registry = load_registry(builtin_only=True)
    wire = WorkerSettings(db="/data/a.db", out=str(tmp_path), format="markdown",
                          tz="Asia/Tokyo", branches="all", exported_at="2026-01-01T09:00:00+09:00",
                          format_options={"properties": "basic"}, layout="note")
    settings = ExportSettings.resolve(wire, registry.get_format("markdown"), "built-in")
    assert (settings.out_dir, settings.archive_dir) == (str(tmp_path), "/data")
    assert settings.layout.spec == "note" and not settings.layout.folders
    assert settings.options["properties"] == "basic"
    ctx = settings.render_context(str(tmp_path / "T"), str(tmp_path / "T.md"), 3, None)
    assert (ctx.out_dir, ctx.branches, ctx.exported_at, ctx.batch, ctx.format_name) == (
        str(tmp_path), "all", "2026-01-01T09:00:00+09:00", 3, "markdown")
    assert str(ctx.tz) == "Asia/Tokyo" and ctx.options is settings.options


def test_planning_the_real_archive_names_every_conversation_and_cuts_batches(
        tmp_path: Path) -> None:
    setup, conn = RunSetup.prepare(spec_for(tmp_path / "out", batch_size=2))
    expected = len(list(list_conversations(open_archive(str(REALISTIC)), setup.spec.selection,
                                           [])))
    report = RunReport(options={}, started=0.0)
    plan = Plan(":memory:")
    planned = plan_run(setup, conn, plan, report, lambda: False, str(tmp_path))
    planned.resume.manifest.close()
    assert expected == 3
    assert (planned.total, planned.done, plan.todo, report.skipped) == (3, 0, 3, 0)
    assert planned.batches == [(0, 2), (2, 3)]
    assert len(set(plan.folders().values())) == 3
    assert not (tmp_path / "out").exists()  # planning writes nothing in the output
    with pytest.raises(Cancelled):
        plan_run(setup, conn, Plan(":memory:"), report, lambda: True, str(tmp_path))
    conn.close()
    plan.close()


def test_dry_run_of_the_real_archive_writes_nothing(tmp_path: Path) -> None:
    out = tmp_path / "out"
    setup, conn = RunSetup.prepare(spec_for(out))
    summary = dry_run(setup, conn)
    assert (summary.selected, summary.render, summary.unchanged) == (3, 3, 0)
    assert summary.out == str(out)
    assert not out.exists()
    with pytest.raises(apsw.ConnectionClosedError):
        conn.execute("SELECT 1")  # the dry run closed the archive


def test_a_wrong_output_is_refused_before_anything_is_created(tmp_path: Path) -> None:
    target = tmp_path / "missing" / "out"
    with pytest.raises(OutputError, match="parent folder of the output does not exist"):
        RunSetup.prepare(spec_for(target))
    assert not (tmp_path / "missing").exists()
    (tmp_path / "file").write_text("x")
    with pytest.raises(OutputError, match="not a folder"):
        RunSetup.prepare(spec_for(tmp_path / "file"))
