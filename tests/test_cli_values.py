"""Out-of-range option values are usage errors (exit 2, one line), never tracebacks."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest


@pytest.mark.parametrize("args", [
    ["--since", "99999999999999999999999"],
    ["--until", "9223372036854775808"],
    ["--until", "-9223372036854775809"],
    ["--since", "１２３"],  # full-width digits are not Unix seconds
    ["--max-attachment-size", "1e400"],
    ["--max-attachment-size", "infMB"],
])
def test_out_of_range_values_exit_2_without_traceback(cli: Any, sample_db: Path,
                                                     tmp_path: Path, args: list[str]) -> None:
    out = tmp_path / "out"

    res = cli("run", "--db", str(sample_db), "--out", str(out), *args, timeout=60)

    assert res.returncode == 2, res.stderr
    assert "Traceback" not in res.stderr, res.stderr
    assert args[0] in res.stderr
    assert not out.exists()


def test_since_accepts_unix_seconds_before_1970() -> None:
    from zexport.cli.app import _parse_time

    assert _parse_time("-86400", "--since") == -86400
    assert _parse_time("0", "--since") == 0
    assert _parse_time("1969-12-31", "--since") == -86400


def test_since_without_an_offset_is_in_the_tz_zone() -> None:
    """Folder dates are in --tz; so is "--since 2024-05-01" (Paris midnight, not UTC's)."""
    from zoneinfo import ZoneInfo

    from zexport.cli.app import _parse_time

    paris = ZoneInfo("Europe/Paris")
    assert _parse_time("2024-05-01", "--since", paris) == 1714514400  # 2024-04-30T22:00Z
    assert _parse_time("2024-01-01T00:00", "--until", paris) == 1704063600
    assert _parse_time("2024-05-01T00:00+00:00", "--since", paris) == 1714521600  # offset wins
    assert _parse_time("1714514400", "--since", paris) == 1714514400  # Unix seconds: no zone


def test_since_in_tz_selects_by_local_midnight(
        isolated_env: dict[str, str], tmp_path: Path) -> None:
    """A conversation updated at 23:30 UTC on April 30 is May 1 in Paris: selected."""
    import sqlite3

    from conftest import run_cli

    from zexport.schema import DDL

    db = tmp_path / "a.db"
    con = sqlite3.connect(db)
    con.executescript(DDL)
    for cid, ts in (("late", 1714519800), ("early", 1714510800)):  # 23:30Z and 21:00Z
        con.execute("INSERT INTO conversations (id, title, provider, created_at, updated_at,"
                    " message_count) VALUES (?, ?, 'claude', ?, ?, 0)",
                    (cid, cid, ts, ts))
    con.commit()
    con.close()
    out = tmp_path / "out"
    res = run_cli(["run", "--db", str(db), "--out", str(out), "--tz", "Europe/Paris",
                   "--since", "2024-05-01", "--dry-run", "--progress", "json"],
                  isolated_env, timeout=60)
    assert res.returncode == 0, res.stderr
    assert json.loads(res.stdout)["selected"] == 1


def test_title_selects_by_regular_expression_ignoring_case(
        isolated_env: dict[str, str], tmp_path: Path) -> None:
    import sqlite3

    from conftest import run_cli

    from zexport.schema import DDL

    db = tmp_path / "t.db"
    con = sqlite3.connect(db)
    con.executescript(DDL)
    titles = {"a": "SQL tuning", "b": "Regex help", "c": "Recipe ideas", "d": "mysql dump"}
    for n, (cid, title) in enumerate(titles.items()):
        con.execute("INSERT INTO conversations (id, title, provider, created_at, updated_at,"
                    " message_count) VALUES (?, ?, 'claude', ?, ?, 0)",
                    (cid, title, 1_700_000_000 + n, 1_700_000_000 + n))
    con.commit()
    con.close()
    out = tmp_path / "out"
    res = run_cli(["run", "--db", str(db), "--out", str(out), "--tz", "UTC", "--title",
                   r"\bsql|^regex", "--progress", "none"], isolated_env, timeout=60)
    assert res.returncode == 0, res.stderr
    assert sorted(p.name for p in out.iterdir() if not p.name.startswith(".")) == [
        "2023-11-14 Regex help", "2023-11-14 SQL tuning"]  # not "mysql dump": \b
    bad = run_cli(["run", "--db", str(db), "--out", str(tmp_path / "o2"), "--title", "(",
                   "--progress", "none"], isolated_env, timeout=60)
    assert bad.returncode == 2 and "--title" in bad.stderr and "Traceback" not in bad.stderr
    assert not (tmp_path / "o2").exists()
