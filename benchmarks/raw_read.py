"""Floor: read every row of an archive with APSW and do nothing with it.

Usage: ``python benchmarks/raw_read.py DB``

No exporter can be faster than reading its input once, so this is the read
floor beside ``cp -r`` (the write floor) in ``run.py``'s table. It selects
every column of ``conversations``, ``messages`` and ``attachments`` in one
read-only connection and iterates the rows, touching each value, in a fresh
interpreter (so it pays the same start-up as the exporters it is compared
with). Prints one JSON line: ``{"rows": n, "seconds": t}``.
"""

from __future__ import annotations

import json
import sys
import time

import apsw


def read_all(db: str) -> int:
    """Rows read from the three tables."""
    conn = apsw.Connection(db, flags=apsw.SQLITE_OPEN_READONLY)
    rows = 0
    try:
        cur = conn.cursor()
        cur.execute("BEGIN")
        for table in ("conversations", "messages", "attachments"):
            for row in cur.execute(f"SELECT * FROM {table}"):  # noqa: S608 - fixed names
                rows += 1
                for _value in row:
                    pass
        cur.execute("COMMIT")
    finally:
        conn.close()
    return rows


def main() -> int:
    start = time.perf_counter()
    rows = read_all(sys.argv[1])
    print(json.dumps({"rows": rows, "seconds": round(time.perf_counter() - start, 3)}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
