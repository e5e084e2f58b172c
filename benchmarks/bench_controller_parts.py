"""What the controller's per-conversation parts cost, each alone, in CPU microseconds.

Usage::

    python benchmarks/bench_controller_parts.py [--conversations 100000] [--per-commit 2300]

Why: on the shared 2-CPU machine a whole run's controller CPU moves by 20% from
one run to the next with the neighbours' load, more than any one change to it;
timed alone, in one process, each part can be compared before and after. Parts:

- ``decode``: :func:`zexport.protocol.decode` of a ``done`` frame of 64 results
  (msgpack and the shape checks), per result; ``unpack``: msgpack alone;
- ``record``: :meth:`zexport.run.ledger.RunLedger.record` of those results
  (report and ledger; the manifest stood in), per result;
- ``manifest``: :meth:`zexport.run.manifest.Manifest.record` of ``--conversations``
  rows with a file each, ``--per-commit`` rows a commit (the run commits once a
  second: about 2,300 rows at full speed on 2 workers), in arrival order and in
  key order, per row.
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import tempfile
import time
import uuid
from collections.abc import Callable
from typing import Any

import msgpack

from zexport import protocol
from zexport.run.ledger import RunLedger
from zexport.run.manifest import Manifest, files_json
from zexport.run.report import RunReport


def best_us(once: Callable[[], None], count: int, repeat: int = 5) -> float:
    """The least CPU time of ``once`` over ``repeat`` tries, in microseconds per item."""
    best = float("inf")
    for _ in range(repeat):
        start = time.thread_time()
        once()
        best = min(best, (time.thread_time() - start) * 1e6 / count)
    return best


def results(n: int) -> list[dict[str, Any]]:
    """``n`` results as a worker sends them for the sample (a file each, some missing
    attachments)."""
    return [{"id": f"{i:08d}-aaaa-bbbb-cccc-dddddddddddd", "ok": True,
             "title": f"A title number {i}", "error": None, "warnings": [],
             "attachments_ok": i % 3,
             "attachments_failed": [["att1", "gone"]] if i % 5 == 0 else [],
             "files": [[f"2024-01-01 A title number {i}/conversation.md", "ab" * 32]]}
            for i in range(n)]


class _Resume:
    """The manifest side of the ledger, standing in: counts what it is given."""

    attachment_context = "context"

    def __init__(self) -> None:
        self.rows = 0

    def done(self, *args: object) -> None:
        self.rows += 1

    def flush_due(self) -> None:
        pass


def manifest_us(n: int, per_commit: int, ordered: bool) -> float:
    """CPU microseconds per row of recording ``n`` rows into a new manifest."""
    rng = random.Random(1)
    ids = [str(uuid.UUID(int=rng.getrandbits(128))) for _ in range(n)]
    folder = tempfile.mkdtemp(dir="/dev/shm" if os.path.isdir("/dev/shm") else None)
    try:
        manifest = Manifest(os.path.join(folder, "manifest.db"))
        start = time.thread_time()
        for first in range(0, n, per_commit):
            chunk = ids[first:first + per_commit]
            rows = [(c, f"2024-01-01 Title {c[:6]}", "s" * 24, "o" * 24, "r1", None,
                     files_json([(f"2024-01-01 Title {c[:6]}/conversation.md", "ab" * 32)]))
                    for c in chunk]
            if ordered:
                rows.sort(key=lambda row: row[0])
            manifest.record(rows)
        manifest.close()
        return (time.thread_time() - start) * 1e6 / n
    finally:
        shutil.rmtree(folder)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--conversations", type=int, default=100_000)
    p.add_argument("--per-commit", type=int, default=2300)
    args = p.parse_args()
    batch = results(64)
    frame = protocol.encode("done", w=0, batch=1, results=batch)
    decoded = protocol.decode(frame)["results"]
    rows = [(r["id"], f"folder {i}", "source") for i, r in enumerate(batch)]

    def decode() -> None:
        for _ in range(2000):
            protocol.decode(frame)

    def unpack() -> None:
        for _ in range(2000):
            msgpack.unpackb(frame, raw=False, strict_map_key=True)

    def record() -> None:
        ledger = RunLedger(RunReport(options={}, started=time.time()))
        ledger.resume = _Resume()  # type: ignore[assignment]
        for _ in range(2000):
            ledger.record(1, rows, decoded)

    print(f"decode   {best_us(decode, 2000 * 64):6.2f} us per result")
    print(f"unpack   {best_us(unpack, 2000 * 64):6.2f} us per result (msgpack alone)")
    print(f"record   {best_us(record, 2000 * 64):6.2f} us per result")
    for ordered in (False, True):
        cost = manifest_us(args.conversations, args.per_commit, ordered)
        print(f"manifest {cost:6.2f} us per row, {args.conversations:,} rows,"
              f" {args.per_commit:,} a commit, {'key order' if ordered else 'arrival order'}")


if __name__ == "__main__":
    main()
