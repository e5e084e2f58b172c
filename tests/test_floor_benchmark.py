"""benchmarks/floor_python.py: the least-Python-exporter floor must do the work it claims.

Its time is read beside ``cp -r`` to judge what BRIEF §8's "within 2x of
cp -r" asks of any Python program, so it must really read, parse and write
every conversation (a floor that skipped work would make zexport look worse
than it is).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import apsw
import orjson
import pytest

FLOOR = Path(__file__).resolve().parent.parent / "benchmarks" / "floor_python.py"


@pytest.mark.timeout(60)
@pytest.mark.parametrize("processes", [1, 2, 3])
def test_floor_writes_every_conversation_with_its_text(
        sample_db: Path, tmp_path: Path, processes: int) -> None:
    out = tmp_path / "floor"
    res = subprocess.run([sys.executable, str(FLOOR), str(sample_db), str(out),
                          "--processes", str(processes)],
                         capture_output=True, text=True, timeout=50)
    assert res.returncode == 0, res.stderr
    conn = apsw.Connection(str(sample_db), flags=apsw.SQLITE_OPEN_READONLY)
    ids = [cid for (cid,) in conn.execute("SELECT id FROM conversations")]
    assert json.loads(res.stdout)["conversations"] == len(ids)
    assert sorted(p.name for p in out.iterdir()) == sorted(ids)
    # One conversation's first text part is in its file.
    for cid, parts in conn.execute(
            "SELECT conversation_id, parts FROM messages ORDER BY conversation_id, order_index"):
        try:
            loaded = orjson.loads(parts)
        except orjson.JSONDecodeError:
            continue
        texts = [p["text"] for p in loaded if isinstance(p, dict) and p.get("text")]
        if texts:
            assert texts[0] in (out / cid / "conversation.md").read_text()
            break
    else:
        pytest.fail("the sample has no text part")
