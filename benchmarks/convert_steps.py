"""Where a cold run's conversion goes: each step of converting a ChatGPT export, in CPU s.

Usage: ``python benchmarks/convert_steps.py EXPORT.zip [--repeat 3]`` (the ZIP of
``bench_convoviz.py``, e.g. ``/dev/shm/zexport-bench-convoviz/chatgpt-10000.zip``).

A cold ``zexport run --input`` converts the export into a private archive
before it exports (``zexport.sources``); ``bench_convoviz.py`` gives that
step's share per process, this gives its parts, in one process and in the
order the converter does them, shard by shard (one shard's JSON in memory at
a time, as in a real run), with the collector set as the converter sets it:

- ``unzip``: reading each conversations member out of the ZIP (inflate);
- ``parse``: ``orjson.loads`` of each member;
- ``convert``: ``convert_conversation`` (the mapping tree to kept messages and parts);
- ``write``: ``ArchiveWriter.add`` (order, siblings, rows into SQLite);
- ``close``: the final commit and the ``conversation_id`` index.

``parse`` includes freeing the previous shard's objects (as the converter
does, when the next shard replaces them). The whole step as a run does it,
in as many processes as workers, is ``bench_convoviz.py``'s ``convert-only``.

Prints one JSON line per repeat.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import tempfile
import time

import orjson

from zexport.sources.base import Conversion
from zexport.sources.bundle import open_bundle
from zexport.sources.chatgpt import conversation_files, convert_conversation
from zexport.sources.chatgpt_assets import AssetIndex
from zexport.sources.writer import ArchiveWriter

try:  # as the converter sets the collector (a build without this module: untouched)
    from zexport.core.collector import fewer_collections
except ImportError:  # pragma: no cover - older builds, for A/B runs
    from contextlib import nullcontext as fewer_collections


def steps(export: str, work: str) -> dict[str, float]:
    """CPU seconds of each step of one single-process conversion of ``export``."""
    bundle = open_bundle(export)
    files, _missing = conversation_files(bundle)
    writer = ArchiveWriter(os.path.join(work, "archive.db"))
    into = Conversion(writer, os.path.join(work, "files"))
    assets = AssetIndex(bundle, into.files_dir, into.missing)
    spent = dict.fromkeys(("unzip", "parse", "convert", "write", "close"), 0.0)
    count = 0
    with fewer_collections():
        for name in files:
            t = time.process_time()
            with bundle.open(name) as member:
                data = member.read()
            spent["unzip"] += time.process_time() - t
            t = time.process_time()
            conversations = orjson.loads(data)
            spent["parse"] += time.process_time() - t
            for conv in conversations:
                t = time.process_time()
                record = convert_conversation(None, conv, assets)
                spent["convert"] += time.process_time() - t
                t = time.process_time()
                writer.add(record)
                spent["write"] += time.process_time() - t
                count += 1
        t = time.process_time()
        writer.close()
        spent["close"] += time.process_time() - t
    bundle.close()
    total = sum(spent.values())
    return {"conversations": count, **{k: round(v, 3) for k, v in spent.items()},
            "total": round(total, 3)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("export")
    parser.add_argument("--repeat", type=int, default=3)
    opts = parser.parse_args()
    for _ in range(opts.repeat):
        work = tempfile.mkdtemp(prefix="convert-steps-", dir="/dev/shm")
        try:
            result = {**steps(opts.export, work), "load": round(os.getloadavg()[0], 2)}
        finally:
            shutil.rmtree(work, ignore_errors=True)
        print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
