"""Linear time on the app's real schema (issue 12, point 1): one command, one table.

Usage::

    python benchmarks/bench_linear.py                      # 10k, 30k, 100k; 3 repeats
    python benchmarks/bench_linear.py --sizes 1000,3000 --repeat 1   # a smoke test
    python benchmarks/bench_linear.py --src before=/path/to/old/checkout   # add "before" rows

Real OwnYourChat archives have no index on ``messages.conversation_id`` (nor on
``attachments.message_id``). For each size this exports the same sample twice,
once in the real schema (``real``: those indexes dropped) and once with the
messages index (``indexed``), to tmpfs, and reports per run:

- wall seconds, and milliseconds per conversation;
- CPU seconds of the controller alone and of its workers (the controller's
  exact user+system time is read from ``/proc/<pid>/stat`` while it is a
  zombie, before it is reaped; the workers' is its reaped children's time);
- peak resident memory (``VmHWM``) of the controller and of the largest worker.

Checks (on the code under test, the first ``--src``): time per conversation of
``real`` at every size within 15% of each other; ``real`` at most 1.15x
``indexed`` at each size; peak memory flat (largest/smallest size at most 1.15x);
the controller's share of the CPU at most 5%. ``real`` and ``indexed`` outputs
must be byte-identical (checked on the first repeat of each size).

Why it is built this way: the machine is a shared 2-CPU box, so every
(size, variant, source) is run once per repeat before the next repeat starts
(drift spreads over all of them), and medians are reported. ``--src
NAME=PATH`` runs another checkout's ``zexport`` package (``PYTHONPATH=PATH``)
with this interpreter, for "before" numbers; ``--skip SRC:VARIANT:SIZE``
leaves out runs known to take too long (the quadratic ones).
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import json
import os
import shutil
import statistics
import subprocess
import sys
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import _harness as h

RESULTS = h.HERE / "results"
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


@dataclass
class RunStats:
    """One ``zexport run``, measured from outside."""

    wall: float
    controller_cpu: float
    workers_cpu: float
    controller_mib: float
    worker_mib: float
    exit: int
    # Per worker (mean): seconds it was runnable but another process had the CPU, and
    # seconds it was neither running nor runnable (waiting for a batch, or for I/O).
    # Wall time is about CPU + queued + idle: on a shared machine "queued" is the
    # neighbours', "idle" is zexport's own waiting.
    workers_queued: float = 0.0
    workers_idle: float = 0.0
    # Workers the controller declared dead (report.json): each costs a new interpreter
    # and, at the end, a sweep of the whole output tree for temporaries.
    worker_deaths: int = 0


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


# -- archives -------------------------------------------------------------------


def _indexes_on(db: Path, table: str, column: str) -> list[str]:
    import apsw

    conn = apsw.Connection(str(db), flags=apsw.SQLITE_OPEN_READONLY)
    try:
        names = [str(r[1]) for r in conn.execute(f"PRAGMA index_list({table})")]
        return [n for n in names if not n.startswith("sqlite_autoindex")
                and [r[2] for r in conn.execute(f"PRAGMA index_info('{n}')")][:1] == [column]]
    finally:
        conn.close()


def _run_sql(db: Path, sql: str) -> None:
    import apsw

    conn = apsw.Connection(str(db))
    try:
        conn.execute(sql)
    finally:
        conn.close()


def ensure_pair(root: Path, size: int) -> dict[str, Path]:
    """``{"real": ..., "indexed": ...}``: the sample of ``size`` without and with the
    messages index. The sample itself is one of them (whichever schema
    ``zexport sample`` writes); the other is a copy made once and cached beside it
    (the attachment files the sample points at are shared)."""
    sample = h.ensure_sample(root, size)
    indexed = bool(_indexes_on(sample, "messages", "conversation_id"))
    other = "real" if indexed else "indexed"
    copy = sample.with_name(f"{sample.stem}-{other}.db")  # named after its sample's version
    if not copy.exists():
        log(f"  making {copy} ...")
        tmp = copy.with_name(copy.name + f".tmp-{os.getpid()}")
        shutil.copyfile(sample, tmp)
        if other == "real":
            for table, column in (("messages", "conversation_id"), ("attachments", "message_id")):
                for name in _indexes_on(tmp, table, column):
                    _run_sql(tmp, f'DROP INDEX "{name}"')
        else:
            _run_sql(tmp, "CREATE INDEX conversation_id_idx ON messages(conversation_id)")
        os.replace(tmp, copy)
    return {"real": copy, "indexed": sample} if indexed else {"real": sample, "indexed": copy}


# -- one run --------------------------------------------------------------------


def _stat_times(pid: int) -> tuple[float, float]:
    """(own, reaped children's) CPU seconds of ``pid`` from ``/proc/<pid>/stat``."""
    with open(f"/proc/{pid}/stat", "rb") as fh:
        fields = fh.read().rsplit(b")", 1)[1].split()
    # fields[0] is the state (field 3); utime..cstime are fields 14..17
    utime, stime, cutime, cstime = (int(x) for x in fields[11:15])
    return (utime + stime) / CLOCK_TICKS, (cutime + cstime) / CLOCK_TICKS


def _hwm_kb(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/status", "rb") as fh:
            for line in fh:
                if line.startswith(b"VmHWM:"):
                    return int(line.split()[1])
    except (OSError, ValueError):
        pass
    return 0


def _children(pid: int) -> list[int]:
    out: list[int] = []
    try:
        for task in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{task}/children") as fh:
                out += [int(x) for x in fh.read().split()]
    except OSError:
        pass
    return out


def _schedstat(pid: int) -> dict[int, tuple[int, int]]:
    """``{tid: (ns on a CPU, ns runnable waiting for one)}`` of every thread of ``pid``."""
    out: dict[int, tuple[int, int]] = {}
    try:
        for task in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{task}/schedstat") as fh:
                on_cpu, queued, _ = fh.read().split()
            out[int(task)] = (int(on_cpu), int(queued))
    except (OSError, ValueError):
        pass
    return out


def _queued_and_idle(seen: dict[int, dict[int, tuple[int, int]]],
                     lives: dict[int, tuple[float, float]]) -> tuple[float, float]:
    """Mean over workers of their main thread's queued and idle seconds (see RunStats)."""
    queued, idle = [], []
    for pid, threads in seen.items():
        if pid in threads and pid in lives:
            on_cpu, waited = threads[pid]
            first, last = lives[pid]
            queued.append(waited / 1e9)
            idle.append(max(0.0, last - first - (on_cpu + waited) / 1e9))
    if not queued:
        return 0.0, 0.0
    return statistics.mean(queued), statistics.mean(idle)


def measured_run(cmd: list[str], env: dict[str, str], timeout: float) -> RunStats:
    """Run ``cmd``; wall time, exact CPU times, polled peak memory, and how long the
    workers waited for a CPU and for work (polled ``/proc/<pid>/task/*/schedstat``)."""
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
    peaks: dict[int, int] = {}
    sched: dict[int, dict[int, tuple[int, int]]] = {}  # worker pid -> its threads' last stat
    lives: dict[int, tuple[float, float]] = {}  # worker pid -> (first, last) seen alive
    done = threading.Event()

    def poll() -> None:
        while not done.is_set():
            for pid in [proc.pid, *_children(proc.pid)]:
                peaks[pid] = max(peaks.get(pid, 0), _hwm_kb(pid))
                if pid != proc.pid:
                    stat = _schedstat(pid)
                    if stat:
                        now = time.perf_counter()
                        sched[pid] = stat
                        lives[pid] = (lives.get(pid, (now, now))[0], now)
            done.wait(0.05)

    poller = threading.Thread(target=poll, daemon=True)
    poller.start()
    stderr = b""
    reader = threading.Thread(target=lambda: None)
    if proc.stderr is not None:
        chunks: list[bytes] = []
        stream = proc.stderr
        reader = threading.Thread(target=lambda: chunks.append(stream.read()), daemon=True)
        reader.start()
    deadline = start + timeout
    while True:  # wait for the exit without reaping (WNOWAIT): the zombie's stat is exact
        info = os.waitid(os.P_PID, proc.pid, os.WEXITED | os.WNOWAIT | os.WNOHANG)
        if info is not None:
            break
        if time.perf_counter() > deadline:
            proc.kill()
            proc.wait()
            done.set()
            raise RuntimeError(f"did not finish in {timeout:.0f} s (killed)")
        time.sleep(0.005)
    wall = time.perf_counter() - start
    own, children = _stat_times(proc.pid)
    done.set()
    code = proc.wait()
    poller.join()
    reader.join()
    if proc.stderr is not None:
        stderr = b"".join(chunks)
    if code not in h.OK_EXIT:
        raise RuntimeError(f"exited {code}: {stderr.decode(errors='replace')[-2000:]}")
    workers = [kb for pid, kb in peaks.items() if pid != proc.pid]
    return RunStats(wall, own, children, peaks.get(proc.pid, 0) / 1024,
                    max(workers, default=0) / 1024, code, *_queued_and_idle(sched, lives))


def _worker_deaths(out: Path) -> int:
    """How many workers the run's report says died (0 without a report)."""
    try:
        report = json.loads((out / ".zexport" / "report.json").read_bytes())
    except (OSError, ValueError):
        return 0
    return len(report.get("worker_deaths") or [])


def tree_digest(out: Path) -> str:
    """One hash of every file's relative path and bytes under ``out`` (zexport's state
    folder, which holds run times, left out)."""
    digest = hashlib.sha256()
    for dirpath, dirnames, filenames in os.walk(out):
        dirnames[:] = sorted(d for d in dirnames if d != ".zexport")
        for name in sorted(filenames):
            path = os.path.join(dirpath, name)
            digest.update(os.path.relpath(path, out).encode("utf-8", "surrogateescape") + b"\0")
            with open(path, "rb") as fh:
                digest.update(hashlib.sha256(fh.read()).digest())
    return digest.hexdigest()


# -- the suite --------------------------------------------------------------------


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sizes", default="10000,30000,100000")
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--format", default="markdown")
    p.add_argument("--src", action="append", default=[], metavar="NAME=PATH",
                   help="another checkout to measure (PYTHONPATH=PATH), e.g. before=../main")
    p.add_argument("--no-this", action="store_true", help="measure only the --src checkouts")
    p.add_argument("--skip", action="append", default=[], metavar="SRC:VARIANT:SIZE")
    p.add_argument("--timeout", type=float, default=h.TIMEOUT)
    p.add_argument("--root", type=Path, default=h.TMPFS_ROOT)
    p.add_argument("--results", type=Path, default=RESULTS)
    p.add_argument("--name", default="linear", help="results file stem suffix")
    p.add_argument("--partial", type=Path, help="rewrite this JSON file after every run")
    p.add_argument("--from-partial", type=Path, metavar="JSON",
                   help="measure nothing: the table of the runs a --partial file holds")
    args = p.parse_args(argv)
    args.sizes = [int(x) for x in args.sizes.split(",")]
    args.sources = ({} if args.no_this else {"this": ""}) | dict(
        s.split("=", 1) for s in args.src)
    args.skip = set(args.skip)
    return args


def run_suite(args: argparse.Namespace) -> dict[str, Any]:
    pairs = {size: ensure_pair(args.root, size) for size in args.sizes}
    out = args.root / f"linear-out-{os.getpid()}"
    runs: list[dict[str, Any]] = []
    digests: dict[tuple[str, int, str], str] = {}
    for rep in range(args.repeat):
        for size in args.sizes:
            for variant, db in pairs[size].items():
                for src, path in args.sources.items():
                    if f"{src}:{variant}:{size}" in args.skip:
                        continue
                    env = dict(os.environ)
                    if path:
                        env["PYTHONPATH"] = os.path.abspath(path)
                    h.fresh(out)
                    try:
                        stats = measured_run(h.run_args(db, out, args.format, args.workers),
                                             env, args.timeout)
                    except RuntimeError as exc:
                        log(f"  {size:>7} {variant:7} {src:8} rep {rep + 1}: FAILED {exc}")
                        runs.append({"size": size, "variant": variant, "src": src,
                                     "rep": rep, "error": str(exc)})
                        continue
                    stats.worker_deaths = _worker_deaths(out)
                    if rep == 0:
                        digests[(src, size, variant)] = tree_digest(out)
                    log(f"  {size:>7} {variant:7} {src:8} rep {rep + 1}: {stats.wall:7.2f} s,"
                        f" cpu controller {stats.controller_cpu:.2f} s workers"
                        f" {stats.workers_cpu:.2f} s, peak {stats.controller_mib:.0f}/"
                        f"{stats.worker_mib:.0f} MiB, per worker queued"
                        f" {stats.workers_queued:.2f} s idle {stats.workers_idle:.2f} s,"
                        f" {stats.worker_deaths} worker deaths"
                        f" (load {h.load_average()})")
                    runs.append({"size": size, "variant": variant, "src": src, "rep": rep,
                                 **asdict(stats)})
                    if args.partial:  # what was measured so far, should the suite be cut short
                        args.partial.write_text(json.dumps(runs, indent=1) + "\n")
    h.fresh(out)
    identical = {f"{src}:{size}": digests.get((src, size, "real")) ==
                 digests.get((src, size, "indexed"))
                 for (src, size, _) in digests
                 if (src, size, "real") in digests and (src, size, "indexed") in digests}
    return {"runs": runs, "identical": identical}


def summarise(data: dict[str, Any], sizes: list[int]) -> list[dict[str, Any]]:
    rows = []
    groups: dict[tuple[str, str, int], list[dict[str, Any]]] = {}
    for r in data["runs"]:
        if "error" not in r:
            groups.setdefault((r["src"], r["variant"], r["size"]), []).append(r)
    for (src, variant, size), rs in sorted(groups.items(), key=lambda kv: (
            kv[0][0] != "this", kv[0][0], kv[0][2], kv[0][1])):
        def m(key: str, runs: list[dict[str, Any]] = rs) -> float:
            return float(statistics.median([r[key] for r in runs]))

        cpu_c, cpu_w = m("controller_cpu"), m("workers_cpu")
        rows.append({"src": src, "variant": variant, "size": size, "n": len(rs),
                     "wall": m("wall"), "ms_per_conv": m("wall") * 1000 / size,
                     "controller_cpu": cpu_c, "workers_cpu": cpu_w,
                     "controller_share": float(statistics.median([r["controller_cpu"] / (
                         r["controller_cpu"] + r["workers_cpu"]) for r in rs])),
                     "controller_mib": m("controller_mib"), "worker_mib": m("worker_mib"),
                     "workers_queued": float(statistics.median(
                         [r.get("workers_queued", 0.0) for r in rs])),
                     "workers_idle": float(statistics.median(
                         [r.get("workers_idle", 0.0) for r in rs])),
                     "worker_deaths": sum(r.get("worker_deaths", 0) for r in rs)})
    return rows


def checks(rows: list[dict[str, Any]], identical: dict[str, bool]) -> list[tuple[str, str, bool]]:
    this = {(r["variant"], r["size"]): r for r in rows if r["src"] == "this"}
    out: list[tuple[str, str, bool]] = []
    real = sorted((s, r) for (v, s), r in this.items() if v == "real")
    if len(real) > 1:
        per = [r["ms_per_conv"] for _, r in real]
        out.append(("real schema: time per conversation within 15% across sizes",
                    " / ".join(f"{p:.3f}" for p in per) + f" ms: max/min {max(per) / min(per):.2f}",
                    max(per) / min(per) <= 1.15))
        for key, label in (("controller_mib", "controller"), ("worker_mib", "largest worker")):
            peaks = [r[key] for _, r in real]
            flat = max(peaks) / min(peaks)
            out.append((f"real schema: {label} peak memory flat (largest/smallest <= 1.15)",
                        " / ".join(f"{p:.0f}" for p in peaks) + f" MiB: {flat:.2f}",
                        flat <= 1.15))
        # CPU seconds too: on a loaded shared machine wall time says more about the others
        cpu = [(r["controller_cpu"] + r["workers_cpu"]) * 1000 / s for s, r in real]
        out.append(("real schema: CPU per conversation (controller + workers) within 15%",
                    " / ".join(f"{c:.3f}" for c in cpu) + f" ms: max/min {max(cpu) / min(cpu):.2f}",
                    max(cpu) / min(cpu) <= 1.15))
    for size, r in real:
        idx = this.get(("indexed", size))
        if idx:
            ratio = r["wall"] / idx["wall"]
            out.append((f"{size:,}: real schema at most 1.15x the indexed archive (wall)",
                        f"{r['wall']:.2f} s / {idx['wall']:.2f} s = {ratio:.2f}x", ratio <= 1.15))
            real_cpu = r["controller_cpu"] + r["workers_cpu"]
            idx_cpu = idx["controller_cpu"] + idx["workers_cpu"]
            out.append((f"{size:,}: real schema at most 1.15x the indexed archive (CPU)",
                        f"{real_cpu:.2f} s / {idx_cpu:.2f} s = {real_cpu / idx_cpu:.2f}x",
                        real_cpu / idx_cpu <= 1.15))
    for size, r in real:
        out.append((f"{size:,} real: controller's CPU share <= 5%",
                    f"{r['controller_cpu']:.2f} s of {r['controller_cpu'] + r['workers_cpu']:.2f}"
                    f" s = {100 * r['controller_share']:.1f}%", r["controller_share"] <= 0.05))
    for key, same in sorted(identical.items()):
        if key.startswith("this:"):
            out.append((f"{int(key.split(':')[1]):,}: real and indexed outputs byte-identical",
                        "same digest" if same else "DIFFERENT", same))
    return out


def render(rows: list[dict[str, Any]], verdicts: list[tuple[str, str, bool]],
           machine: dict[str, str], cmd: list[str], started: str) -> str:
    lines = [f"# Linear time on the real schema ({started})", "",
             f"Command: `python benchmarks/bench_linear.py {' '.join(cmd)}`", "",
             "Medians of the repeats; outputs on tmpfs; CPU seconds are user+system;"
             " per worker, *queued* is the time it was runnable while other processes held"
             " the CPUs, *idle* the time it was neither running nor runnable (waiting for"
             " work): wall is about a worker's CPU + queued + idle.", "",
             "| code | archive | conversations | runs | wall s | ms/conv | controller CPU s |"
             " workers CPU s | per worker queued / idle s | controller share |"
             " peak MiB controller / worker | worker deaths (all runs) |",
             "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for r in rows:
        lines.append(f"| {r['src']} | {r['variant']} | {r['size']:,} | {r['n']} | {r['wall']:.2f}"
                     f" | {r['ms_per_conv']:.3f} | {r['controller_cpu']:.2f} |"
                     f" {r['workers_cpu']:.2f} | {r.get('workers_queued', 0.0):.2f} /"
                     f" {r.get('workers_idle', 0.0):.2f} | {100 * r['controller_share']:.1f}% |"
                     f" {r['controller_mib']:.0f} / {r['worker_mib']:.0f} |"
                     f" {r.get('worker_deaths', 0)} |")
    lines += ["", "| check | measured | verdict |", "| --- | --- | --- |"]
    lines += [f"| {what} | {got} | {'**pass**' if ok else '**FAIL**'} |"
              for what, got, ok in verdicts]
    lines += ["", "| machine | |", "| --- | --- |"]
    lines += [f"| {k} | {v} |" for k, v in machine.items()]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    h.init()
    started = dt.datetime.now().isoformat(timespec="seconds")
    log(f"bench_linear: load average {h.load_average()}, {os.cpu_count()} CPUs")
    if args.from_partial:  # a suite cut short: its runs, outputs not compared
        data = {"runs": json.loads(args.from_partial.read_text()), "identical": {}}
    else:
        data = run_suite(args)
    rows = summarise(data, args.sizes)
    verdicts = checks(rows, data["identical"])
    machine = h.machine()
    machine["load at the end"] = h.load_average()
    cmd = sys.argv[1:] if argv is None else argv
    args.results.mkdir(parents=True, exist_ok=True)
    stem = f"{dt.date.today().isoformat()}-{args.name}"
    (args.results / f"{stem}.json").write_text(json.dumps(
        {"machine": machine, "args": cmd, "started": started, "rows": rows,
         "checks": verdicts, **data}, indent=1, default=str) + "\n")
    text = render(rows, verdicts, machine, cmd, started)
    (args.results / f"{stem}.md").write_text(text + "\n")
    print(text)
    log(f"wrote {args.results / (stem + '.md')}")
    return 0 if all(ok for _, _, ok in verdicts) else 1


if __name__ == "__main__":
    sys.exit(main())
