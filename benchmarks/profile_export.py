"""Where the time goes: cProfile of a 10,000-conversation Markdown export.

Usage::

    python benchmarks/profile_export.py [--conversations 10000] [--workers 2]
                                        [--format markdown] [--top 25] [--label before]

Issue 6 asks to profile the hot path and keep the top entries before and
after each optimisation in ``benchmarks/results/``. This runs one
``zexport run`` with ``ZEXPORT_PROFILE_DIR`` set (each worker dumps
``worker-N.prof``) and the controller itself under ``python -m cProfile``,
then prints the top entries by tottime and by cumtime of the *merged* worker
profiles (the workers do the same work, so their sum is the hot path) and of
the controller, and saves them to ``benchmarks/results/profile-<date>[-label].txt``.

Profiling slows Python code down (roughly 1.5-2x, more for many small calls),
so read the shares, not the absolute seconds, and time with ``run.py``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import io
import os
import pstats
import sys
import tempfile
import time
from pathlib import Path

import _harness as h

# ``zexport run`` leaves with os._exit (cli._exit_now), so ``python -m cProfile``
# would never write its stats: profile the CLI in-process and turn that exit
# into SystemExit, after which the stats are dumped. The controller's threads
# (planning, the side index) are profiled too, each into ``<out>.thread-N``:
# their CPU is the controller's as much as the event loop's is. Every profiler
# counts its own thread's CPU time (time.thread_time), not wall time, so waiting
# on sockets and queues costs nothing, as it costs the machine nothing.
CONTROLLER_UNDER_PROFILE = """
import cProfile, itertools, sys, threading, time
import zexport.cli.app as cli
def leave(status):
    raise SystemExit(status)
cli._exit_now = leave
out = sys.argv[1]
sys.argv = ["zexport", *sys.argv[2:]]
numbers = itertools.count()
plain_run = threading.Thread.run
def profiled_run(self):
    thread_profiler = cProfile.Profile(time.thread_time)
    try:
        thread_profiler.runcall(plain_run, self)
    finally:
        thread_profiler.dump_stats(f"{out}.thread-{next(numbers)}")
threading.Thread.run = profiled_run
profiler = cProfile.Profile(time.thread_time)
try:
    profiler.runcall(cli.cli)
except SystemExit:
    pass
finally:
    profiler.dump_stats(out)
"""


def top(stats_files: list[Path], title: str, n: int) -> str:
    """The top ``n`` entries by tottime and by cumtime of the merged ``stats_files``."""
    buf = io.StringIO()
    stats = pstats.Stats(*(str(f) for f in stats_files), stream=buf)
    stats.strip_dirs()
    total = float(getattr(stats, "total_tt", 0.0))  # set by pstats, not in its stubs
    buf.write(f"===== {title}: {len(stats_files)} profile(s), "
              f"{total:.2f} s of profiled time (sum over processes) =====\n")
    for key in ("tottime", "cumulative"):
        buf.write(f"\n----- sorted by {key} -----\n")
        stats.sort_stats(key).print_stats(n)
    return buf.getvalue()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--conversations", type=int, default=10_000)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--format", default="markdown")
    p.add_argument("--top", type=int, default=25)
    p.add_argument("--label", default="", help="suffix of the results file, e.g. before/after")
    p.add_argument("--results", type=Path, default=h.HERE / "results")
    args = p.parse_args(argv)
    h.init()
    db = h.ensure_sample(h.TMPFS_ROOT, args.conversations)
    with tempfile.TemporaryDirectory(dir="/dev/shm", prefix="zexport-prof-") as tmp:
        prof_dir = Path(tmp) / "prof"
        prof_dir.mkdir()
        out = Path(tmp) / "out"
        controller_prof = prof_dir / "controller.prof"
        cmd = h.run_args(db, out, args.format, args.workers)
        assert cmd[1:3] == ["-m", "zexport"]
        cmd = [sys.executable, "-c", CONTROLLER_UNDER_PROFILE, str(controller_prof), *cmd[3:]]
        env = {**os.environ, "ZEXPORT_PROFILE_DIR": str(prof_dir)}
        load = h.load_average()
        start = time.perf_counter()
        h.timed(cmd, env=env)
        wall = time.perf_counter() - start
        workers = sorted(prof_dir.glob("worker-*.prof"))
        if not workers:
            raise SystemExit("no worker profiles: does this build honour ZEXPORT_PROFILE_DIR?")
        header = (f"zexport profile, {dt.datetime.now().isoformat(timespec='seconds')}, "
                  f"commit {h.git_commit()}\n"
                  f"{args.conversations:,} conversations -> {args.format}, --workers "
                  f"{args.workers}, outputs on tmpfs; wall {wall:.2f} s under the profiler; "
                  f"load average before {load}\n\n")
        text = header + top(workers, "workers (merged)", args.top) + "\n" + \
            top([controller_prof, *sorted(prof_dir.glob("controller.prof.thread-*"))],
                "controller (main thread and its threads, merged)", args.top)
        text = text.replace(f"{prof_dir}/", "")  # the temporary folder means nothing later
    args.results.mkdir(parents=True, exist_ok=True)
    suffix = f"-{args.label}" if args.label else ""
    path = args.results / f"profile-{dt.date.today().isoformat()}{suffix}.txt"
    path.write_text(text)
    print(text)
    print(f"wrote {path}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
