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
prints the sizes of index.html and of the shards.
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
QUERIES = ["python", "error", "recipe", "the", "café", "kubernetes deploy", "xyzzyq"]


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
            wall, cpu = _run(db, ROOT / f"out-{fmt}", fmt, workers)
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
        shutil.rmtree(ROOT / f"out-{fmt}", ignore_errors=True)


def _size(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def search(n: int, workers: int, keep: bool) -> None:
    from cdp import Browser, find_chromium

    db = h.ensure_sample(ROOT, n)
    out = ROOT / f"search-{n}"
    if not (keep and (out / "index.html").exists()):
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
    args = parser.parse_args()
    h.init()
    ROOT.mkdir(parents=True, exist_ok=True)
    if args.what == "compare":
        compare(args.n, args.repeats, args.workers)
    else:
        search(args.n, args.workers, args.keep)


if __name__ == "__main__":
    main()
