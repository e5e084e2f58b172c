"""zexport against convoviz on the same ChatGPT export ZIP (BRIEF §8, official exports).

convoviz (PyPI ``convoviz``, the most used Python peer) needs Python >= 3.12,
so it lives in a venv of its own outside the repository; give its ``convoviz``
script with ``--convoviz``. Make one with::

    /root/.pyenv/versions/3.12.1/bin/python -m venv /tmp/convoviz-venv
    /tmp/convoviz-venv/bin/pip install convoviz

For each size this builds one synthetic 2026-style export ZIP (the generator
of ``bench_sources.py``: manifest, 100-conversation shards, ``.dat`` images)
and then, ``--repeat`` times and alternating, runs on that ZIP to Markdown,
outputs and temporary files on tmpfs:

- ``convoviz``: ``convoviz --input ZIP --output OUT --outputs markdown
  --no-interactive -q`` (it unpacks the ZIP into ``TMPDIR``, set to tmpfs);
- ``zexport-cold``: ``zexport run --input ZIP`` with an empty conversion cache
  (the conversion into the private archive, then the export);
- ``zexport-warm``: the same into a new output folder, the cache kept;
- ``zexport-convert-only``: the conversion step alone (``prepare_input`` in a
  process of its own, with as many processes as ``--workers``), for its share.

Every process of a run is polled every 10 ms: wall (its start to its last
sighting), CPU (user + system) and peak resident memory (VmHWM), by role
(convoviz; zexport's controller, which also converts unless converters run;
each converter; each worker). Results are printed as JSON lines and, with
``--markdown``, written as a table with the two checks: zexport cold at least
10x faster than convoviz, and the largest zexport process under a quarter of
convoviz's peak.

Usage: ``python benchmarks/bench_convoviz.py 1000 10000 --repeat 3
--convoviz /tmp/convoviz-venv/bin/convoviz --markdown results/X.md``.
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
from dataclasses import asdict, dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _harness  # noqa: E402
from _harness import TIMEOUT, _vm_hwm_kb, load_average, machine, zexport_cmd  # noqa: E402
from bench_sources import make_export  # noqa: E402

ROOT = Path("/dev/shm/zexport-bench-convoviz")
POLL = 0.01


@dataclass
class Proc:
    """One process of a run, as last seen."""

    role: str
    pid: int
    wall: float = 0.0
    cpu: float = 0.0
    peak_mib: float = 0.0


@dataclass
class Run:
    tool: str
    size: int
    wall: float
    status: int
    files: int
    load: float
    procs: list[Proc] = field(default_factory=list)

    @property
    def cpu(self) -> float:
        return sum(p.cpu for p in self.procs)

    @property
    def peak(self) -> float:
        return max((p.peak_mib for p in self.procs), default=0.0)


def _role(cmdline: str) -> str:
    if "zexport.work.worker" in cmdline:
        return "worker"
    if "zexport.sources" in cmdline:
        return "converter"
    return "other"


def polled(cmd: list[str], top_role: str, env: dict[str, str]) -> tuple[float, int, list[Proc]]:
    """(wall s, exit status, every process) of ``cmd``, polling it and its descendants."""
    import psutil

    start = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
    handles: dict[int, psutil.Process] = {proc.pid: psutil.Process(proc.pid)}
    procs: dict[int, Proc] = {proc.pid: Proc(top_role, proc.pid)}
    born: dict[int, float] = {proc.pid: start}
    top = handles[proc.pid]
    while proc.poll() is None:
        now = time.perf_counter()
        if now - start > TIMEOUT:
            proc.kill()
            proc.wait()
            raise RuntimeError(f"{cmd[:3]} did not finish in {TIMEOUT:.0f} s (killed)")
        try:
            for child in top.children(recursive=True):
                known = procs.get(child.pid)
                if known is not None and known.role != "other":
                    continue
                try:  # seen again while "other": a fork's cmdline changes at its exec
                    role = _role(" ".join(child.cmdline()))
                except psutil.Error:
                    continue
                if known is not None:
                    known.role = role
                    continue
                born[child.pid] = now  # first sighting (create_time drifts from this clock)
                handles[child.pid] = child
                procs[child.pid] = Proc(role, child.pid)
        except psutil.Error:
            pass
        for pid, handle in handles.items():
            hwm = _vm_hwm_kb(pid)
            try:
                t = handle.cpu_times()
            except psutil.Error:
                continue  # gone: its last sighting stands
            p = procs[pid]
            p.cpu = t.user + t.system
            p.wall = now - born[pid]
            if hwm is not None:
                p.peak_mib = max(p.peak_mib, hwm / 1024)
        time.sleep(POLL)
    wall = time.perf_counter() - start
    procs[proc.pid].wall = wall
    if proc.returncode != 0:
        err = proc.stderr.read().decode(errors="replace") if proc.stderr else ""
        raise RuntimeError(f"{' '.join(cmd[:4])} exited {proc.returncode}: {err[-2000:]}")
    for p in procs.values():
        p.wall, p.cpu, p.peak_mib = round(p.wall, 2), round(p.cpu, 2), round(p.peak_mib, 1)
    return wall, proc.returncode, [p for p in procs.values() if p.peak_mib or p.cpu]


def run_convoviz(convoviz: str, export: Path, work: Path, size: int) -> Run:
    out, tmp = work / "convoviz-out", work / "convoviz-tmp"
    shutil.rmtree(out, ignore_errors=True)
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    env = {**os.environ, "TMPDIR": str(tmp), "HOME": str(work / "convoviz-home")}
    wall, status, procs = polled([convoviz, "--input", str(export), "--output", str(out),
                                  "--outputs", "markdown", "--no-interactive", "-q"],
                                 "convoviz", env)
    files = sum(1 for p in (out / "Markdown").rglob("*.md") if p.name != "_index.md")
    return Run("convoviz", size, round(wall, 2), status, files, os.getloadavg()[0], procs)


def run_zexport(label: str, export: Path, work: Path, size: int, workers: int) -> Run:
    out = work / f"zexport-out-{label}"
    shutil.rmtree(out, ignore_errors=True)
    if label == "cold":
        shutil.rmtree(work / "zexport-cache", ignore_errors=True)
    env = {**os.environ, "ZEXPORT_CACHE_DIR": str(work / "zexport-cache")}
    wall, status, procs = polled(zexport_cmd(
        "run", "--input", str(export), "--out", str(out), "--format", "markdown",
        "--workers", str(workers), "--progress", "none", "--tz", "UTC", "-q"),
        "controller", env)
    files = sum(1 for _ in out.glob("*/conversation.md"))
    shutil.rmtree(out, ignore_errors=True)
    return Run(f"zexport-{label}", size, round(wall, 2), status, files, os.getloadavg()[0],
               procs)


CONVERT = """
import sys
from zexport.plugins import load_registry
from zexport.sources.resolve import prepare_input
prepare_input(sys.argv[1], None, load_registry().sources, sys.argv[2], int(sys.argv[3]))
"""


def run_conversion(export: Path, work: Path, size: int, workers: int) -> Run:
    """The conversion step alone (what a cold ``--input`` does before exporting)."""
    cache = work / "convert-cache"
    shutil.rmtree(cache, ignore_errors=True)
    wall, status, procs = polled([sys.executable, "-c", CONVERT, str(export), str(cache),
                                  str(workers)], "controller", dict(os.environ))
    shutil.rmtree(cache, ignore_errors=True)
    return Run("zexport-convert-only", size, round(wall, 2), status, 0, os.getloadavg()[0],
               procs)


def _median(runs: list[Run], key: str) -> float:
    return statistics.median(float(getattr(r, key)) for r in runs)


def _roles(runs: list[Run]) -> str:
    """Median CPU s / largest peak MiB per role, e.g. ``controller 1.2 s / 50 MiB``."""
    out = []
    for role in ("convoviz", "controller", "converter", "worker"):
        cpus = [sum(p.cpu for p in r.procs if p.role == role) for r in runs]
        peaks = [max((p.peak_mib for p in r.procs if p.role == role), default=0) for r in runs]
        count = max(sum(1 for p in r.procs if p.role == role) for r in runs)
        if count:
            n = f"{count} x " if count > 1 else ""
            out.append(f"{n}{role}: {statistics.median(cpus):.2f} s CPU,"
                       f" {max(peaks):.0f} MiB")
    return "; ".join(out)


def markdown(runs: list[Run], command: str, machine_info: dict[str, str]) -> str:
    lines = [f"# zexport against convoviz on a synthetic ChatGPT export ({time.strftime('%F')})",
             "", f"Command: `{command}`  ", "Outputs, caches and convoviz's unpacked ZIP on tmpfs;"
             " medians of the repeats (every run is in the JSON lines below the tables)."
             " CPU is user + system of every process of the run.", "",
             "| size | tool | runs | wall s | CPU s | largest process MiB | files | per process"
             " (median CPU, largest peak) |", "| ---: | --- | ---: | ---: | ---: | ---: | ---: |"
             " --- |"]
    sizes = sorted({r.size for r in runs})
    checks = []
    for size in sizes:
        by_tool: dict[str, list[Run]] = {}
        for r in runs:
            if r.size == size:
                by_tool.setdefault(r.tool, []).append(r)
        for tool, rs in by_tool.items():
            lines.append(f"| {size:,} | {tool} | {len(rs)} | {_median(rs, 'wall'):.2f} |"
                         f" {_median(rs, 'cpu'):.2f} | {max(r.peak for r in rs):.0f} |"
                         f" {rs[0].files:,} | {_roles(rs)} |")
        cv = by_tool.get("convoviz")
        if not cv:
            continue
        for tool in ("zexport-cold", "zexport-warm"):  # (convert-only: not a whole run)
            zx = by_tool.get(tool)
            if not zx:
                continue
            speed = _median(cv, "wall") / _median(zx, "wall")
            cpu = _median(cv, "cpu") / _median(zx, "cpu")
            checks.append(f"| {size:,} | {tool}: at least 10x faster (wall) | {speed:.1f}x"
                          f" (CPU {cpu:.1f}x) | **{'pass' if speed >= 10 else 'FAIL'}** |")
            ratio = max(r.peak for r in zx) / min(r.peak for r in cv)
            checks.append(f"| {size:,} | {tool}: largest process under 1/4 of convoviz's peak"
                          f" | {max(r.peak for r in zx):.0f} / {min(r.peak for r in cv):.0f}"
                          f" MiB = {ratio:.2f} | **{'pass' if ratio < 0.25 else 'FAIL'}** |")
    lines += ["", "| size | check | measured | verdict |", "| ---: | --- | --- | --- |", *checks]
    lines += ["", "| machine | |", "| --- | --- |",
              *(f"| {k} | {v} |" for k, v in machine_info.items()), "", "```",
              *(json.dumps(asdict(r)) for r in runs), "```", ""]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("sizes", nargs="+", type=int)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--convoviz", default="/tmp/convoviz-venv/bin/convoviz")
    parser.add_argument("--only", choices=("convoviz", "zexport"), default=None)
    parser.add_argument("--root", type=Path, default=ROOT, help="tmpfs folder for everything")
    parser.add_argument("--markdown", type=Path, default=None, help="write the results here")
    opts = parser.parse_args()
    if opts.only != "zexport" and not os.access(opts.convoviz, os.X_OK):
        raise SystemExit(f"no convoviz at {opts.convoviz} (see this script's docstring)")
    _harness.BYTECODE[:] = [_harness.compile_zexport()]  # as an installed zexport has it
    info = {**machine(), "load before": load_average()}
    if opts.only != "zexport":
        version = subprocess.run([opts.convoviz, "--version"], capture_output=True, text=True)
        info["convoviz"] = version.stdout.strip() or version.stderr.strip()
    runs: list[Run] = []
    for size in opts.sizes:
        opts.root.mkdir(parents=True, exist_ok=True)
        export = make_export(opts.root / f"chatgpt-{size}.zip", size)
        work = opts.root / f"work-{os.getpid()}"
        try:
            for _ in range(opts.repeat):
                batch = []
                if opts.only != "zexport":
                    batch.append(run_convoviz(opts.convoviz, export, work, size))
                if opts.only != "convoviz":
                    batch.append(run_zexport("cold", export, work, size, opts.workers))
                    batch.append(run_zexport("warm", export, work, size, opts.workers))
                    batch.append(run_conversion(export, work, size, opts.workers))
                for r in batch:
                    print(json.dumps({**asdict(r), "cpu": round(r.cpu, 2),
                                      "peak": r.peak}), flush=True)
                runs += batch
        finally:
            shutil.rmtree(work, ignore_errors=True)
    info["load after"] = load_average()
    if opts.markdown:
        command = "python benchmarks/bench_convoviz.py " + " ".join(sys.argv[1:])
        opts.markdown.write_text(markdown(runs, command, info))


if __name__ == "__main__":
    main()
