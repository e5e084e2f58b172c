"""A full disk (or a file-size limit) while the controller writes its state.

RLIMIT_FSIZE makes writes past a size fail with EFBIG, as a full disk fails
them with ENOSPC, without root or a special file system: Python ignores
SIGXFSZ, so the write just raises OSError.
"""

from __future__ import annotations

import resource
import subprocess
import sys
from pathlib import Path

from zexport.schema import DDL


def test_controller_write_failure_ends_the_run_instead_of_hanging(
        isolated_env: dict[str, str], tmp_path: Path) -> None:
    import apsw

    db = tmp_path / "a.db"
    con = apsw.Connection(str(db))
    con.execute(DDL)
    with con:
        for i in range(40):  # NULL times: a warning per message, ~500 KB of them in all
            con.execute("INSERT INTO conversations (id, title, provider) VALUES (?, ?, 'claude')",
                        (f"c{i:02d}", f"T{i}"))
            con.executemany(
                "INSERT INTO messages (id, conversation_id, role, parts, order_index)"
                " VALUES (?, ?, 'user', '[{\"type\":\"text\",\"text\":\"x\"}]', ?)",
                [(f"m{i:02d}-{j:03d}", f"c{i:02d}", j) for j in range(200)])
    con.close()
    out = tmp_path / "out"
    limit = 256 * 1024  # bigger than any conversation file, smaller than the warnings

    def small_files() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    res = subprocess.run(
        [sys.executable, "-m", "zexport", "run", "--db", str(db), "--out", str(out),
         "--workers", "2", "--tz", "UTC", "--progress", "none"],
        env=isolated_env, cwd=tmp_path, timeout=60, capture_output=True, text=True,
        stdin=subprocess.DEVNULL, preexec_fn=small_files)

    assert res.returncode == 1, res.stderr
    assert "Traceback" not in res.stderr, res.stderr
    # The report itself is bigger than the limit: one clear line says it could not be written.
    assert "could not write the run report" in res.stderr
    assert not (out / ".zexport" / "report.json").exists()
    assert not list(out.rglob(".zexport-tmp-*"))
    assert not (out / ".zexport" / ".report-warnings.jsonl").exists()
