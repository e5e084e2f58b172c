"""Export speed: zexport vs the app's algorithm, a careful exporter, and ``cp -r``.

Usage::

    python benchmarks/bench_export.py [--conversations 10000] [--repeat 3]
                                      [--workers 1,2] [--skip-baseline] [--root /dev/shm/...]

Everything runs in one invocation on the same archive, made by
``zexport sample`` (seed 0), with outputs on tmpfs (``/dev/shm``) because
this machine's disk is too noisy to compare on. Each zexport run, the
careful exporter and ``cp -r`` are repeated and the median is reported; the
app-algorithm baseline (minutes long) runs once. Ratios matter more than
absolute seconds on a shared machine.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))


def timed(cmd: list[str], **kw: object) -> float:
    """Wall seconds of one command (which must succeed or report a partial export)."""
    start = time.perf_counter()
    proc = subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, **kw)  # type: ignore[call-overload]
    elapsed = time.perf_counter() - start
    if proc.returncode not in (0, 1):
        raise SystemExit(f"{cmd[:4]} failed ({proc.returncode}): {proc.stderr.decode()[-2000:]}")
    return elapsed


def median_of(repeat: int, make: object) -> float:
    """Median wall time of ``repeat`` runs of ``make()`` (a callable returning seconds)."""
    return statistics.median(make() for _ in range(repeat))  # type: ignore[operator]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--conversations", type=int, default=10_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--workers", default="1,2")
    parser.add_argument("--skip-baseline", action="store_true")
    parser.add_argument("--root", default="/dev/shm/zexport-bench")
    args = parser.parse_args()
    os.makedirs(args.root, exist_ok=True)
    db = os.path.join(args.root, f"sample-{args.conversations}.db")
    if not os.path.exists(db):
        subprocess.run([sys.executable, "-m", "zexport", "sample", db, "-n",
                        str(args.conversations), "--seed", "0"], check=True)
    out = os.path.join(args.root, "out")
    rows: list[tuple[str, float]] = []

    def fresh(path: str) -> str:
        shutil.rmtree(path, ignore_errors=True)
        return path

    for n in [int(x) for x in args.workers.split(",")]:
        secs = median_of(args.repeat, lambda n=n: timed([
            sys.executable, "-m", "zexport", "run", "--db", db, "--out", fresh(out),
            "--workers", str(n), "--progress", "none", "--tz", "UTC", "-q"]))
        rows.append((f"zexport run --workers {n}", secs))
    copy = os.path.join(args.root, "copy")
    secs = median_of(args.repeat, lambda: timed(["cp", "-r", out, fresh(copy)]))
    rows.append(("cp -r of zexport's output", secs))
    careful = os.path.join(args.root, "careful")
    secs = median_of(args.repeat, lambda: timed([
        sys.executable, os.path.join(HERE, "careful_single.py"), db, fresh(careful)]))
    rows.append(("careful single-process exporter", secs))
    if not args.skip_baseline:
        base = os.path.join(args.root, "baseline")
        secs = timed([sys.executable, os.path.join(HERE, "baseline_app.py"), db, fresh(base)])
        rows.append(("app-algorithm baseline (1 run)", secs))
    table = dict(rows)
    ref = table.get(f"zexport run --workers {args.workers.split(',')[-1]}")
    print(f"\n{args.conversations:,} conversations -> Markdown, outputs on {args.root}, "
          f"{os.cpu_count()} CPUs, median of {args.repeat}\n")
    print(f"| {'what':40} | {'seconds':>8} | {'vs zexport':>10} |")
    print(f"|{'-' * 42}|{'-' * 10}|{'-' * 12}|")
    for name, secs in rows:
        ratio = f"{secs / ref:.2f}x" if ref else ""
        print(f"| {name:40} | {secs:8.2f} | {ratio:>10} |")
    print(json.dumps({"conversations": args.conversations, "results": table}))
    for path in (out, copy, careful, os.path.join(args.root, "baseline")):
        shutil.rmtree(path, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
