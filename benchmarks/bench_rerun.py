"""An unchanged re-run against a full run (BRIEF §4b: a re-run is a no-op, a fraction of
a full run; issue 13: under 10% at 10,000 conversations).

On the cached ``zexport sample -n N --seed 0`` archive (downloads on, no credentials: the
default a new user has, where thousands of attachments cannot be had), outputs on tmpfs:

1. a full run into an empty folder;
2. an unchanged re-run into the same folder (nothing to render: every conversation,
   those with unavailable attachments included, is skipped);
3. a ``--force`` re-run (everything rendered again, nothing rewritten since every
   file comes out the same).

Repeats are interleaved (full, re-run, force, full, ...), so drift in the load of this
shared machine spreads over all three. Each timing is wall time from process start to
exit, and the CPU time of zexport and its workers (``RUSAGE_CHILDREN``). After every
re-run the script counts the files whose inode or mtime changed: it must be 0.

Usage::

    python benchmarks/bench_rerun.py [-n 10000] [--repeats 3] [--workers 2]
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

from _harness import TMPFS_ROOT, compile_zexport, ensure_sample, fresh, zexport_cmd


def snapshot(root: Path) -> dict[str, tuple[int, int]]:
    """``{path: (inode, mtime_ns)}`` of everything outside .zexport."""
    found: dict[str, tuple[int, int]] = {}
    for folder, dirs, files in os.walk(root):
        if folder == str(root) and ".zexport" in dirs:
            dirs.remove(".zexport")
        for name in dirs + files:
            path = os.path.join(folder, name)
            st = os.lstat(path)
            found[path] = (st.st_ino, st.st_mtime_ns)
    return found


def changed(before: dict[str, tuple[int, int]], after: dict[str, tuple[int, int]]) -> int:
    """Paths added, removed, or with another inode or mtime."""
    return sum(before.get(p) != v for p, v in after.items()) + len(before.keys() - after.keys())


def timed(cmd: list[str]) -> tuple[float, float]:
    """(wall seconds, CPU seconds of the process and its waited-for children)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    proc = subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, check=False)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} exited {proc.returncode}: {proc.stderr[-2000:]!r}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("-n", type=int, default=10_000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    print(compile_zexport(), file=sys.stderr)
    db = ensure_sample(TMPFS_ROOT, args.n)
    out = TMPFS_ROOT / f"rerun-{os.getpid()}"
    cmd = zexport_cmd("run", "--db", str(db), "--out", str(out), "--workers", str(args.workers),
                      "--progress", "none", "--tz", "UTC", "-q",
                      "--cache-dir", str(TMPFS_ROOT / f"cache-{os.getpid()}"))
    results: dict[str, list[tuple[float, float]]] = {"full": [], "unchanged": [], "force": []}
    touched: dict[str, list[int]] = {"unchanged": [], "force": []}
    try:
        for i in range(args.repeats):
            fresh(out)
            results["full"].append(timed(cmd))
            before = snapshot(out)
            results["unchanged"].append(timed(cmd))
            after = snapshot(out)
            touched["unchanged"].append(changed(before, after))
            results["force"].append(timed([*cmd, "--force"]))
            touched["force"].append(changed(before, snapshot(out)))
            print(f"repeat {i + 1}: " + ", ".join(
                f"{k} {v[-1][0]:.2f} s wall / {v[-1][1]:.2f} s CPU" for k, v in results.items()),
                file=sys.stderr, flush=True)
    finally:
        fresh(out)
    full_wall = statistics.median(w for w, _ in results["full"])
    full_cpu = statistics.median(c for _, c in results["full"])
    print(f"\n{args.n:,} conversations, {args.workers} workers, {args.repeats} repeats "
          f"(medians; wall / CPU of zexport and its workers)\n")
    print("| run | wall s | CPU s | wall vs full | CPU vs full | files touched |")
    print("| --- | --- | --- | --- | --- | --- |")
    for name, values in results.items():
        wall = statistics.median(w for w, _ in values)
        cpu = statistics.median(c for _, c in values)
        marks = "-" if name == "full" else ", ".join(str(n) for n in touched[name])
        print(f"| {name} | {wall:.2f} | {cpu:.2f} | {wall / full_wall:.1%} | "
              f"{cpu / full_cpu:.1%} | {marks} |")
    print("\nall timings:", {k: [(round(w, 3), round(c, 3)) for w, c in v]
                             for k, v in results.items()})


if __name__ == "__main__":
    main()
