"""The HTML format's costs: export time beside markdown, and the index's search at scale.

Usage::

    python benchmarks/bench_html.py compare -n 10000 --repeats 3
    python benchmarks/bench_html.py search -n 100000

``compare`` exports the same cached sample as ``markdown`` and as ``html``
(outputs on tmpfs), alternating the two in every repeat so drift in this
shared machine's load spreads over both, and prints wall and CPU seconds
(the CPU of zexport and all its workers, from the kernel's child rusage).
The target (issue 14) is html within 2x of markdown.

``search`` exports a sample as html once, then opens ``index.html`` from
``file://`` in headless Chromium (tests/cdp.py) and measures: the page's
load (navigation to the load event, and to the first list drawn), and each
query's time from the input event to the list drawn, the first time (its
shards loaded by script elements) and again (shards in memory). It also
prints the sizes of index.html and of the shards. ``--index-only`` skips the
pages: it computes each conversation's search record from the archive with
the plugin's functions and calls the plugin's ``finish()`` (the index then
links to pages that are not there; load and query times are the same).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import sys
import time
from pathlib import Path

import _harness as h

sys.path.insert(0, str(h.HERE.parent / "tests"))
ROOT = Path("/dev/shm/zexport-html-bench")
QUERIES = ["python", "error", "recipe", "the", "café", "kubernetes deploy", "xyzzyq", "py",
           "日本"]


def _run(db: Path, out: Path, fmt: str, workers: int) -> tuple[float, float]:
    """(wall, CPU) seconds of one export into a fresh ``out``."""
    h.fresh(out)
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    wall = h.timed(h.run_args(db, out, fmt, workers))
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    counts = h.report_counts(out)
    if counts.get("exported", 0) + counts.get("failed", 0) == 0:
        raise SystemExit(f"{fmt}: nothing exported ({counts})")
    return wall, cpu


def compare(n: int, repeats: int, workers: int) -> None:
    db = h.ensure_sample(ROOT, n)
    times: dict[str, list[tuple[float, float]]] = {"markdown": [], "html": []}
    for r in range(repeats):
        order = ["markdown", "html"] if r % 2 == 0 else ["html", "markdown"]
        for fmt in order:
            wall, cpu = _run(db, ROOT / f"out-{os.getpid()}-{fmt}", fmt, workers)
            times[fmt].append((wall, cpu))
            print(f"  repeat {r + 1} {fmt:8s} wall {wall:6.2f} s  cpu {cpu:6.2f} s", flush=True)
    md_wall = statistics.median(w for w, _ in times["markdown"])
    md_cpu = statistics.median(c for _, c in times["markdown"])
    html_wall = statistics.median(w for w, _ in times["html"])
    html_cpu = statistics.median(c for _, c in times["html"])
    print(f"\n{n} conversations, {workers} workers, {repeats} repeats (medians), load "
          f"{h.load_average()}")
    print("| format | wall s | CPU s |\n| --- | --- | --- |")
    print(f"| markdown | {md_wall:.2f} | {md_cpu:.2f} |")
    print(f"| html | {html_wall:.2f} | {html_cpu:.2f} |")
    print(f"| html / markdown | {html_wall / md_wall:.2f}x | {html_cpu / md_cpu:.2f}x |")
    for fmt in times:
        shutil.rmtree(ROOT / f"out-{os.getpid()}-{fmt}", ignore_errors=True)


def _size(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


class _IndexOnlyRun:
    """What ``HtmlFormat.finish`` reads of a run, made straight from an archive: the
    conversations in export order and each one's search record, computed by the
    plugin's own functions from the text the pages would show (no page is rendered)."""

    def __init__(self, db: Path, out: Path) -> None:
        import datetime as dt
        import sqlite3
        from contextlib import contextmanager

        from zexport_html import engine
        from zexport_html import search as zsearch

        from zexport import join_parts

        self.out_dir = str(out)
        self.options = {"theme": "auto", "index": True}
        self.tz = dt.timezone.utc
        con = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
        convs = con.execute("SELECT id, title, provider, created_at, updated_at, message_count"
                            " FROM conversations ORDER BY created_at IS NULL, created_at, id"
                            ).fetchall()
        texts: dict[str, list[str]] = {}
        providers = {c[0]: c[2] for c in convs}
        for cid, parts in con.execute("SELECT conversation_id, parts FROM messages"):
            try:
                loaded = json.loads(parts)
                blocks = join_parts(loaded, providers.get(cid, ""), cite=None).blocks
            except (ValueError, TypeError, AttributeError):
                blocks = [parts]
            texts.setdefault(cid, []).extend(
                engine.without_citations(b) for b in blocks if isinstance(b, str))
        con.close()
        self.entries = []
        self.records_by_id = {}
        for cid, title, provider, created, updated, count in convs:
            self.entries.append(_Entry(cid, title, provider, created, updated, count,
                                       f"c-{len(self.entries)}"))
            self.records_by_id[cid] = zsearch.record([title.strip() or "Untitled",
                                                      *texts.pop(cid, [])])

        @contextmanager
        def open_(relative: str):  # type: ignore[no-untyped-def]
            path = out / relative
            path.parent.mkdir(parents=True, exist_ok=True)
            with open(path, "wb") as fh:
                yield fh
        self.open = open_

    def conversations(self):  # type: ignore[no-untyped-def]
        return iter(self.entries)

    def records(self):  # type: ignore[no-untyped-def]
        from types import SimpleNamespace
        return (SimpleNamespace(conversation_id=e.id, data=self.records_by_id[e.id])
                for e in self.entries)

    def write(self, relative: str, data: bytes) -> str:
        with self.open(relative) as fh:
            fh.write(data)
        return str(Path(self.out_dir) / relative)


class _Entry:
    def __init__(self, cid: str, title: str, provider: str, created: int | None,
                 updated: int | None, count: int | None, folder: str) -> None:
        self.id, self.title, self.provider = cid, title, provider
        self.created_at, self.updated_at, self.message_count = created, updated, count
        self.folder, self.error, self.exported = folder, None, True
        self.path = ""  # (the default layout: the page is in its folder)


def search(n: int, workers: int, keep: bool, index_only: bool) -> None:
    from cdp import Browser, find_chromium

    db = h.ensure_sample(ROOT, n)
    out = ROOT / f"search-{n}"
    if index_only:
        from zexport_html import HtmlFormat

        h.fresh(out)
        out.mkdir(parents=True)
        t0, c0 = time.perf_counter(), time.process_time()
        run = _IndexOnlyRun(db, out)
        t1, c1 = time.perf_counter(), time.process_time()
        HtmlFormat().finish(run)  # type: ignore[arg-type]
        t2, c2 = time.perf_counter(), time.process_time()
        print(f"index only: records from the archive {t1 - t0:.1f} s wall ({c1 - c0:.1f} s cpu);"
              f" finish() {t2 - t1:.1f} s wall ({c2 - c1:.1f} s cpu)")
    elif not (keep and (out / "index.html").exists()):
        wall, cpu = _run(db, out, "html", workers)
        print(f"export of {n} conversations as html: wall {wall:.1f} s, cpu {cpu:.1f} s")
    shards = out / "index-search"
    print(f"index.html {(out / 'index.html').stat().st_size / 1e6:.1f} MB; "
          f"{len(list(shards.iterdir()))} shards, {_size(shards) / 1e6:.1f} MB in all, "
          f"largest {max(p.stat().st_size for p in shards.iterdir()) / 1e3:.0f} kB")
    binary = find_chromium()
    if not binary:
        raise SystemExit("chromium is needed")
    profile = ROOT / "chromium-profile"
    shutil.rmtree(profile, ignore_errors=True)
    browser = Browser(binary, profile, timeout=120)
    try:
        page = browser.new_page()
        loads = []
        for _ in range(3):
            start = time.perf_counter()
            page.goto((out / "index.html").as_uri())
            loaded = time.perf_counter() - start
            page.wait_for("document.body.dataset.state === 'ready'")
            drawn = page.eval("performance.now()")
            loads.append((loaded, drawn / 1000))
        print("page load (navigation to load event / to list drawn, in-page clock), 3 loads:")
        print("  " + ", ".join(f"{a * 1000:.0f} ms / {b * 1000:.0f} ms" for a, b in loads))
        heap = "performance.memory.usedJSHeapSize / 1e6"
        print(f"JS heap after load: {page.eval(heap):.0f} MB")
        page.eval("""window.zexportTime = (query) => new Promise(done => {
            const q = document.getElementById('q');
            const t0 = performance.now();
            q.value = query;
            q.dispatchEvent(new Event('input'));
            const poll = () => document.body.dataset.state === 'ready'
                ? done([performance.now() - t0, document.getElementById('count').textContent])
                : setTimeout(poll, 1);
            poll(); })""")
        print("| query | first (shards loaded) ms | again ms | result |\n| --- | --- | --- | --- |")
        for query in QUERIES:
            first = page.eval(f"zexportTime({json.dumps(query)})")
            page.eval("zexportTime('')")
            again = page.eval(f"zexportTime({json.dumps(query)})")
            page.eval("zexportTime('')")
            print(f"| {query} | {first[0]:.0f} | {again[0]:.0f} | {first[1]} |")
        loaded_shards = page.eval("document.querySelectorAll('script[src]').length")
        print(f"JS heap after the queries: {page.eval(heap):.0f} MB; {loaded_shards} shards "
              f"loaded of {len(list(shards.iterdir()))}")
        assert page.errors() == [], page.errors()
    finally:
        browser.close()
    if not keep:
        shutil.rmtree(out, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="what", required=True)
    c = sub.add_parser("compare")
    c.add_argument("-n", type=int, default=10_000)
    c.add_argument("--repeats", type=int, default=3)
    c.add_argument("--workers", type=int, default=os.cpu_count() or 2)
    s = sub.add_parser("search")
    s.add_argument("-n", type=int, default=100_000)
    s.add_argument("--workers", type=int, default=os.cpu_count() or 2)
    s.add_argument("--keep", action="store_true", help="keep (and reuse) the exported tree")
    s.add_argument("--index-only", action="store_true",
                   help="write only index.html and its shards, from the archive's text, "
                        "with the plugin's own finish() (no page rendered: minutes, not an hour)")
    args = parser.parse_args()
    h.init()
    ROOT.mkdir(parents=True, exist_ok=True)
    if args.what == "compare":
        compare(args.n, args.repeats, args.workers)
    else:
        search(args.n, args.workers, args.keep, args.index_only)


if __name__ == "__main__":
    main()
