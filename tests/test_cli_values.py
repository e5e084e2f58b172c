"""Out-of-range option values are usage errors (exit 2, one line), never tracebacks."""

from __future__ import annotations

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
    from zexport.cli import _parse_time

    assert _parse_time("-86400", "--since") == -86400
    assert _parse_time("0", "--since") == 0
    assert _parse_time("1969-12-31", "--since") == -86400
