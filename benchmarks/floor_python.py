"""Floor: the least any Python exporter of this archive must do, in N processes.

Usage: ``python benchmarks/floor_python.py DB OUT [--processes 2]``

Why it exists: ``cp -r`` of the finished tree is the write floor and
``raw_read.py`` the read floor, but neither is a program that could export
anything. This one is the smallest program that still does the job's
unavoidable work, so the gap between it and ``cp -r`` says how far an
exporter written in Python can possibly get (BRIEF §8 asks zexport to be
within 2x of ``cp -r``). Each of ``--processes`` fresh interpreters (the same
start-up an exporter pays) takes every Nth batch of 64 conversations and, in
one read transaction per batch, reads the conversation rows and their
messages with APSW, parses each message's ``parts`` JSON with orjson, joins
the text of the parts, and writes one ``conversation.md`` per conversation
into a folder named by its id (``os.open``/``os.write``, no temporary file,
no rename).

What it leaves out, all of which zexport does: naming folders from titles
and dates (and making them unique), following the active branch, dates in
a time zone, role headings, attachments, atomic writes, progress, resume,
failure isolation, plugins and the controller/worker protocol.

Prints one JSON line: ``{"conversations": n, "seconds": t}`` (wall time of
the whole thing, interpreters included).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

BATCH = 64
_MESSAGES = ("SELECT conversation_id, CAST(parts AS BLOB) FROM messages"
             " WHERE conversation_id IN ({marks}) ORDER BY conversation_id, order_index")


def export_share(db: str, out: str, index: int, processes: int) -> int:
    """Export every ``processes``-th batch starting at ``index``; return how many."""
    import apsw
    import orjson

    conn = apsw.Connection(db, flags=apsw.SQLITE_OPEN_READONLY)
    ids = [row[0] for row in conn.execute(
        "SELECT id FROM conversations ORDER BY created_at IS NULL, created_at, id")]
    done = 0
    flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC
    for start in range(index * BATCH, len(ids), processes * BATCH):
        batch = ids[start:start + BATCH]
        texts: dict[str, list[str]] = {cid: [] for cid in batch}
        with conn:
            for cid, parts in conn.execute(
                    _MESSAGES.format(marks=",".join("?" * len(batch))), batch):
                try:  # the sample has dirty rows, as real archives do
                    loaded = orjson.loads(parts)
                except orjson.JSONDecodeError:
                    continue
                if isinstance(loaded, list):
                    texts[cid].extend(p["text"] for p in loaded
                                      if isinstance(p, dict) and isinstance(p.get("text"), str))
        for cid, chunks in texts.items():
            folder = os.path.join(out, cid)
            os.mkdir(folder)
            fd = os.open(os.path.join(folder, "conversation.md"), flags, 0o644)
            try:
                os.write(fd, "\n\n".join(chunks).encode())
            finally:
                os.close(fd)
            done += 1
    conn.close()
    return done


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("db")
    parser.add_argument("out")
    parser.add_argument("--processes", type=int, default=2)
    parser.add_argument("--share", type=int, help=argparse.SUPPRESS)  # a child's index
    args = parser.parse_args()
    if args.share is not None:
        print(export_share(args.db, args.out, args.share, args.processes))
        return 0
    started = time.perf_counter()
    os.makedirs(args.out, exist_ok=True)
    children = [subprocess.Popen(
        [sys.executable, __file__, args.db, args.out, "--processes", str(args.processes),
         "--share", str(i)], stdout=subprocess.PIPE, text=True)
        for i in range(args.processes)]
    total = 0
    for child in children:
        out, _ = child.communicate()
        if child.returncode != 0:
            return child.returncode
        total += int(out)
    print(json.dumps({"conversations": total,
                      "seconds": round(time.perf_counter() - started, 3)}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
