"""The user's export settings saved by the app (``user_preferences.export_settings``).

A run without ``--format``, ``--out`` or a date-prefix option does what the
app's export dialog was last set to, and says so in its first line; the
command line always wins; a device name behind a date prefix needs no suffix.
"""

from __future__ import annotations

import json
import re
from datetime import timezone
from pathlib import Path
from typing import Any

import apsw
import pytest

from zexport.core.naming import base_name
from zexport.run.plan import FolderNamer
from zexport.sample import make_sample
from zexport.sources.app_settings import AppExportSettings, choose, read_export_settings

DATED = re.compile(r"^\d{4}-\d{2}-\d{2} ")
TS = 1_700_000_000  # 2023-11-14 UTC


def _folders(out: Path) -> list[str]:
    return sorted(p.name for p in out.iterdir() if p.name != ".zexport")


def _with_dates(db: Path) -> int:
    conn = apsw.Connection(str(db), flags=apsw.SQLITE_OPEN_READONLY)
    try:
        return int(conn.execute(
            "SELECT count(*) FROM conversations WHERE created_at IS NOT NULL").fetchall()[0][0])
    finally:
        conn.close()


def _set(db: Path, value: str | None) -> None:
    conn = apsw.Connection(str(db))
    conn.execute("UPDATE user_preferences SET export_settings = ?", (value,))
    conn.close()


# -- reading ------------------------------------------------------------------


@pytest.fixture(scope="module")
def small(tmp_path_factory: pytest.TempPathFactory) -> Path:
    db = tmp_path_factory.mktemp("settings") / "a.db"
    make_sample(db, conversations=3)
    return db


@pytest.mark.parametrize(("stored", "expected"), [
    ('{"format":"json","includeAttachments":true,"prefixTimestamp":false,'
     '"outputPath":"/home/me/Chats"}', AppExportSettings("json", "/home/me/Chats", False)),
    ('{"format":"markdown","includeAttachments":true,"prefixTimestamp":true,"outputPath":""}',
     AppExportSettings("markdown", None, True)),  # '' is "no folder chosen yet"
    ('{"format":"pdf","prefixTimestamp":"yes","outputPath":42}', AppExportSettings()),
    ('{"prefixTimestamp":false}', AppExportSettings(None, None, False)),
    ("not json", AppExportSettings()),
    ("[1, 2]", AppExportSettings()),
    (None, AppExportSettings()),
])
def test_read_export_settings(small: Path, stored: str | None,
                              expected: AppExportSettings) -> None:
    _set(small, stored)
    assert read_export_settings(str(small)) == expected


def test_an_archive_without_preferences_has_no_settings(tmp_path: Path) -> None:
    db = tmp_path / "old.db"
    conn = apsw.Connection(str(db))
    conn.execute("CREATE TABLE conversations (id TEXT)")
    conn.close()
    assert read_export_settings(str(db)) == AppExportSettings()
    assert read_export_settings(str(tmp_path / "absent.db")) == AppExportSettings()
    assert not (tmp_path / "absent.db").exists()


def test_the_command_line_wins_and_only_what_the_app_decided_is_named(small: Path) -> None:
    _set(small, '{"format":"json","prefixTimestamp":false,"outputPath":"/x/y"}')
    got = choose(str(small), None, None, None)
    assert (got.format, got.out, got.date_prefix) == ("json", "/x/y", False)
    assert got.note() == (" (from the app's export settings: format json, output folder /x/y,"
                          " date prefix off)")
    got = choose(str(small), "markdown", "here", None)
    assert (got.format, got.out, got.date_prefix) == ("markdown", "here", False)
    assert got.note() == " (from the app's export settings: date prefix off)"
    got = choose(str(small), "markdown", "here", True)
    assert (got.format, got.out, got.date_prefix, got.note()) == ("markdown", "here", True, "")
    _set(small, None)
    got = choose(str(small), None, None, None)
    assert (got.format, got.out, got.date_prefix, got.note()) == (
        "markdown", "zexport-out", True, "")


# -- naming -------------------------------------------------------------------


def test_a_device_name_behind_a_date_prefix_gets_no_suffix() -> None:
    utc = timezone.utc
    assert base_name("CON", TS, utc) == "2023-11-14 CON"
    assert base_name("nul.txt", TS, utc) == "2023-11-14 nul.txt"
    assert base_name("com1", TS, utc) == "2023-11-14 com1"
    assert base_name("CON", None, utc) == "CON_"  # no date: nothing in front of it
    assert base_name("CON", TS, utc, dated=False) == "CON_"
    assert base_name("Notes: a/b", TS, utc, dated=False) == "Notes_ a_b"
    namer = FolderNamer(utc, dated=False)
    namer.add("id-1", "Report", TS)
    namer.add("id-2", "Report", TS + 1)
    assert namer.assign() == {"id-1": "Report", "id-2": "Report (id-2)"}


# -- runs ---------------------------------------------------------------------

RUN = ("--progress", "none", "--workers", "1", "--no-attachments", "--tz", "UTC")


def test_a_run_follows_the_apps_settings_and_says_so(cli: Any, tmp_path: Path) -> None:
    app_out = tmp_path / "from-app"
    db = tmp_path / "a.db"
    make_sample(db, conversations=20, export_settings={
        "format": "json", "includeAttachments": True, "prefixTimestamp": False,
        "outputPath": str(app_out)})
    work = tmp_path / "work"
    work.mkdir()
    res = cli("run", "--db", str(db), *RUN, cwd=work)
    assert res.returncode == 0, res.stderr
    assert res.stdout.splitlines()[0] == (
        f"Exporting {db} (from the app's export settings: format json, output folder"
        f" {app_out}, date prefix off)")
    assert list(work.iterdir()) == []  # not ./zexport-out
    folders = _folders(app_out)
    assert len(folders) == 20 and not any(DATED.match(f) for f in folders)
    assert "CON_" in folders  # undated: a device name needs its suffix
    assert all((app_out / f / "conversation.json").is_file() for f in folders)
    report = json.loads((app_out / ".zexport" / "report.json").read_text())
    assert (report["options"]["format"], report["options"]["date_prefix"]) == ("json", False)


def test_options_override_the_apps_settings(cli: Any, tmp_path: Path) -> None:
    app_out = tmp_path / "from-app"
    db = tmp_path / "a.db"
    make_sample(db, conversations=20, export_settings={
        "format": "json", "includeAttachments": True, "prefixTimestamp": False,
        "outputPath": str(app_out)})
    out = tmp_path / "mine"
    res = cli("run", "--db", str(db), *RUN, "--format", "markdown", "--out", str(out),
              "--date-prefix")
    assert res.returncode == 0, res.stderr
    assert res.stdout.splitlines()[0] == f"Exporting {db}"
    assert not app_out.exists()
    folders = _folders(out)
    assert len(folders) == 20
    dated = [f for f in folders if DATED.match(f)]
    assert len(dated) == _with_dates(db) < 20  # no creation time: no date to show
    assert any(re.fullmatch(r"\d{4}-\d{2}-\d{2} CON", f) for f in folders)  # no "CON_"
    assert all((out / f / "conversation.md").is_file() for f in folders)


def test_no_date_prefix_turns_the_apps_prefix_off(cli: Any, tmp_path: Path) -> None:
    db = tmp_path / "a.db"
    make_sample(db, conversations=20)  # the sample's user: markdown, date prefix on
    out = tmp_path / "out"
    res = cli("run", "--db", str(db), *RUN, "--out", str(out), "--no-date-prefix")
    assert res.returncode == 0, res.stderr
    assert res.stdout.splitlines()[0] == (
        f"Exporting {db} (from the app's export settings: format markdown)")
    folders = _folders(out)
    assert len(folders) == 20 and not any(DATED.match(f) for f in folders)
    res = cli("run", "--db", str(db), *RUN, "--out", str(tmp_path / "dated"))
    assert res.returncode == 0, res.stderr
    assert res.stdout.splitlines()[0] == (
        f"Exporting {db} (from the app's export settings: format markdown, date prefix on)")
    assert len([f for f in _folders(tmp_path / "dated") if DATED.match(f)]) == _with_dates(db)


def test_a_saved_output_folder_that_cannot_be_made_is_named_in_the_error(
        cli: Any, tmp_path: Path) -> None:
    gone = tmp_path / "unmounted" / "Exports"
    db = tmp_path / "a.db"
    make_sample(db, conversations=3, export_settings={
        "format": "markdown", "includeAttachments": True, "prefixTimestamp": True,
        "outputPath": str(gone)})
    res = cli("run", "--db", str(db), *RUN)
    assert res.returncode == 2, res.stderr
    assert res.stderr.strip() == (
        f"zexport: error: parent folder of the output does not exist: {gone.parent}"
        " (the output folder saved in the app's export settings; --out chooses another)")
    assert not gone.parent.exists()
    res = cli("run", "--db", str(db), *RUN, "--out", str(gone))  # the user's own --out
    assert res.returncode == 2, res.stderr
    assert res.stderr.strip() == (
        f"zexport: error: parent folder of the output does not exist: {gone.parent}")
    res = cli("run", "--db", str(db), *RUN, "--tz", "Mars/Olympus")  # not about the folder
    assert res.returncode == 2 and "app's export settings" not in res.stderr
