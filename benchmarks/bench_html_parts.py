"""The HTML format's per-text costs in one process: what bench_html.py's export spends.

Usage::

    python benchmarks/bench_html_parts.py -n 10000

Reads every text run of the cached sample (as the page renders them, through
``join_parts``) and times, in this process (CPU seconds, ``time.process_time``):
markdown-it-pyrs's ``render`` alone, ``engine.render`` (everything the page does to
a text), and ``search.record`` over each conversation's title and texts. It also
counts which path each text takes (no parser, markdown-it-pyrs, markdown-it-py).
On a shared machine these are steadier than the export's wall time.
"""

from __future__ import annotations

import argparse
import json
import sqlite3
import time
from collections import defaultdict
from pathlib import Path

import _harness as h
from zexport_html import engine, fast, search

from zexport import Source, join_parts

ROOT = Path("/dev/shm/zexport-html-bench")


def texts_by_conversation(db: Path) -> list[tuple[str, list[tuple[str, list[Source]]]]]:
    """(title, [(text, sources)]) of each conversation, the runs in message order."""
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        titles = dict(con.execute("SELECT id, coalesce(title, '') FROM conversations"))
        rows = con.execute("SELECT m.conversation_id, m.parts, c.provider FROM messages m "
                           "JOIN conversations c ON c.id = m.conversation_id "
                           "ORDER BY m.conversation_id, m.rowid").fetchall()
    finally:
        con.close()
    convs: dict[str, list[tuple[str, list[Source]]]] = defaultdict(list)
    for conv_id, parts, provider in rows:
        try:
            loaded = json.loads(parts)
        except (TypeError, ValueError):
            continue
        if not isinstance(loaded, list):
            continue
        loaded = [p for p in loaded if isinstance(p, dict)]
        joined = join_parts(engine.without_sentinels(loaded), provider, engine.cite_mark)
        convs[conv_id] += [(b, list(joined.sources)) for b in joined.blocks
                           if isinstance(b, str)]
    return [(titles.get(c, ""), runs) for c, runs in convs.items()]


def _cpu(fn: object) -> float:
    start = time.process_time()
    fn()  # type: ignore[operator]
    return time.process_time() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("-n", type=int, default=10000)
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    convs = texts_by_conversation(h.ensure_sample(ROOT, args.n))
    texts = [t for _, runs in convs for t in runs]
    paths = {"plain": 0, "markdown-it-pyrs": 0, "markdown-it-py": 0}
    for text, sources in texts:
        if engine._plain(text) is not None:
            paths["plain"] += 1
        elif engine.render_fast(text, sources) is not None:
            paths["markdown-it-pyrs"] += 1
        else:
            paths["markdown-it-py"] += 1
    print(f"{len(convs)} conversations, {len(texts)} texts; paths: {paths}")
    rows = {
        "markdown-it-pyrs render alone, every text":
            lambda: [fast._RS.render(t) for t, _ in texts],
        "engine.render, every text":
            lambda: [engine.render(t, s, doc_id="m1") for t, s in texts],
        "search.record, every conversation":
            lambda: [search.record([title, *(engine.without_citations(t) for t, _ in runs)])
                     for title, runs in convs],
    }
    print("| work | CPU s (each repeat) |\n| --- | --- |")
    for name, fn in rows.items():
        times = [_cpu(fn) for _ in range(args.repeats)]
        print(f"| {name} | {', '.join(f'{t:.2f}' for t in times)} |", flush=True)
    print(f"load {h.load_average()}")


if __name__ == "__main__":
    main()
