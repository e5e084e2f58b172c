"""An output folder zexport cannot write to is a usage error: one line, exit 2, no traceback."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest


@pytest.mark.parametrize("blocker", ["file", "symlink"])
def test_unusable_state_folder_is_refused_in_one_line(cli: Any, sample_db: Path,
                                                      tmp_path: Path, blocker: str) -> None:
    out = tmp_path / "out"
    out.mkdir()
    if blocker == "file":
        (out / ".zexport").write_text("not a folder")
    else:
        (tmp_path / "elsewhere").mkdir()
        os.symlink(tmp_path / "elsewhere", out / ".zexport")

    res = cli("run", "--db", str(sample_db), "--out", str(out), timeout=60)

    assert res.returncode == 2, res.stderr
    assert "Traceback" not in res.stderr, res.stderr
    assert res.stderr.strip().splitlines()[-1].startswith("zexport: error: cannot write to")
    assert sorted(p.name for p in out.iterdir()) == [".zexport"]
    assert not any((tmp_path / "elsewhere").iterdir()) if blocker == "symlink" else True


@pytest.mark.skipif(not os.path.isdir("/proc/self"), reason="needs Linux /proc")
def test_output_folder_that_cannot_be_created_is_refused_in_one_line(
        cli: Any, sample_db: Path) -> None:
    res = cli("run", "--db", str(sample_db), "--out", "/proc/self/zexport-out", timeout=60)

    assert res.returncode == 2, res.stderr
    assert "Traceback" not in res.stderr, res.stderr
    assert "zexport: error: cannot write to the output folder" in res.stderr
