"""Shared machinery of the benchmark scripts: samples, timed runs, peak memory, the machine.

Why a separate module: ``run.py`` (the suite) and ``profile_export.py`` must
build the same cached archives and launch ``zexport run`` the same way, or
their numbers would not describe the same thing. Everything here measures
zexport *from outside* (a child process, ``/proc``), so the package needs no
benchmark hooks beyond ``ZEXPORT_PROFILE_DIR``.

Conventions:

- Samples are made once by ``zexport sample PATH -n N --seed 0`` and cached
  under ``/dev/shm/zexport-bench/`` (tmpfs: reading them costs no disk I/O and
  they survive between runs until reboot). Other people's runs may share the
  cache; outputs go to a private per-process folder.
- A timed run is wall time from process start to exit, interpreter start-up
  included, because that is what a user waits for.
- Peak memory is the kernel's ``VmHWM`` (high-water resident set) of each
  process, read from ``/proc/<pid>/status`` every few milliseconds while it
  runs. VmHWM only grows, so the last reading before exit is the peak up to the
  final poll interval.
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
TMPFS_ROOT = Path("/dev/shm/zexport-bench")
DISK_ROOT = Path("/var/tmp/zexport-bench")
OK_EXIT = (0, 1)  # 1 = some attachments missing on disk: the sample has those on purpose


def zexport_cmd(*args: str) -> list[str]:
    """``python -m zexport ARGS`` with the interpreter running the benchmark."""
    return [sys.executable, "-m", "zexport", *args]


def _offline_flags() -> list[str]:
    """Options that keep ``zexport run`` off the network, if this build has them.

    The sample's missing attachments carry ``*.example.invalid`` URLs; a build
    that downloads by default must not try them during a benchmark.
    """
    help_text = subprocess.run(zexport_cmd("run", "--help"), capture_output=True,
                               text=True, check=False).stdout
    return [flag for flag in ("--no-downloads", "--offline") if flag in help_text][:1]


OFFLINE: list[str] = []


def init() -> None:
    """Work out the per-build flags once (call before the first run)."""
    OFFLINE[:] = _offline_flags()
    BYTECODE[:] = [compile_zexport()]


def compile_zexport() -> str:
    """Compile zexport's modules to bytecode, as ``pip install`` does for a regular install.

    An editable install leaves that to the first import, and with
    ``PYTHONDONTWRITEBYTECODE`` set (as on the machine these numbers come
    from) it never happens: every controller and worker would compile
    zexport's ~40 modules again at start-up, which no installed zexport does.
    Returns what was done, for the results' machine table.
    """
    import compileall
    import importlib.util

    spec = importlib.util.find_spec("zexport")
    if spec is None or not spec.submodule_search_locations:
        return "zexport not found"
    folder = list(spec.submodule_search_locations)[0]
    ok = compileall.compile_dir(folder, quiet=1, force=False)
    return (f"compiled {folder} before timing" if ok else f"compileall failed on {folder}") + (
        f"; PYTHONDONTWRITEBYTECODE={os.environ['PYTHONDONTWRITEBYTECODE']!r}"
        if "PYTHONDONTWRITEBYTECODE" in os.environ else "")


# -- archives ---------------------------------------------------------------


def ensure_sample(root: Path, conversations: int) -> Path:
    """The cached ``zexport sample`` archive of ``conversations`` (seed 0), made if missing."""
    root.mkdir(parents=True, exist_ok=True)
    from zexport.sample import SAMPLE_VERSION  # a sample made by an older zexport is stale

    db = root / f"sample-{conversations}-v{SAMPLE_VERSION}.db"
    if not db.exists():
        print(f"  making {db} ...", file=sys.stderr, flush=True)
        proc = subprocess.run(zexport_cmd("sample", str(db), "-n", str(conversations),
                                          "--seed", "0"), capture_output=True, text=True)
        if proc.returncode != 0 and not db.exists():  # another run may have won the race
            raise SystemExit(f"zexport sample failed: {proc.stderr[-2000:]}")
    return db


def ensure_long_conversation(root: Path, messages: int) -> Path:
    """An archive of one conversation with ``messages`` messages in one chain.

    Built directly with APSW and ``zexport.schema.DDL`` (``zexport sample``
    caps lengths): alternating user/assistant text of a few hundred bytes,
    each message the parent of the next, the last one current.
    """
    import apsw

    from zexport.schema import DDL

    root.mkdir(parents=True, exist_ok=True)
    db = root / f"long-{messages}.db"
    if db.exists():
        return db
    tmp = root / f"long-{messages}.db.tmp-{os.getpid()}"
    conn = apsw.Connection(str(tmp))
    try:
        # One statement per call: APSW runs later statements only as rows are consumed.
        for pragma in ("PRAGMA journal_mode=DELETE", "PRAGMA synchronous=OFF"):
            conn.execute(pragma).fetchall()
        conn.execute("BEGIN")
        conn.execute(DDL)
        base = 1_700_000_000_000
        para = ("Here is a paragraph of assistant prose with `code`, **bold** text and a "
                "[link](https://example.invalid/page). ") * 3
        rows = []
        parent: str | None = None
        for i in range(messages):
            mid = f"m{i:06d}"
            role = "user" if i % 2 == 0 else "assistant"
            text = f"Question {i}: how does this work?" if role == "user" else f"{i}. {para}"
            rows.append((mid, "c-long", role, json.dumps([{"type": "text", "text": text}]),
                         base + i * 1000, base + i * 1000, i, parent, f'["{mid}"]', 0))
            parent = mid
        conn.executemany("INSERT INTO messages VALUES (?,?,?,?,?,?,?,?,?,?)", rows)
        conn.execute("INSERT INTO conversations VALUES (?,?,?,?,?,?,?,?,?,?)",
                     ("c-long", "One very long conversation", "chatgpt", base,
                      base + messages * 1000, base, messages, parent, None, 0))
        conn.execute("COMMIT")
    finally:
        conn.close()
    os.replace(tmp, db)
    return db


# -- runs -------------------------------------------------------------------


def fresh(path: Path, on_disk: bool = False) -> Path:
    """Remove ``path``; on disk, also flush dirty pages so the next timing starts clean."""
    shutil.rmtree(path, ignore_errors=True)
    if on_disk:
        os.sync()
    return path


TIMEOUT = 1200.0  # seconds; no single run of the suite should come near it


def timed(cmd: Sequence[str], env: dict[str, str] | None = None,
          timeout: float = TIMEOUT) -> float:
    """Wall seconds of one command, which must exit 0 or 1 (partial export).

    A run that does not finish within ``timeout`` is killed and reported as
    an error rather than stalling the whole suite (zexport's workers die with
    their controller).
    """
    start = time.perf_counter()
    try:
        proc = subprocess.run(list(cmd), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                              env=env, check=False, timeout=timeout)
    except subprocess.TimeoutExpired as exc:
        raise RuntimeError(f"{' '.join(cmd[:6])} ... did not finish in {timeout:.0f} s "
                           "(killed)") from exc
    elapsed = time.perf_counter() - start
    if proc.returncode not in OK_EXIT:
        raise RuntimeError(f"{' '.join(cmd[:6])} ... exited {proc.returncode}: "
                           f"{proc.stderr.decode(errors='replace')[-2000:]}")
    return elapsed


def run_args(db: Path, out: Path, fmt: str, workers: int) -> list[str]:
    """The ``zexport run`` command line every benchmark uses."""
    return zexport_cmd("run", "--db", str(db), "--out", str(out), "--format", fmt,
                       "--workers", str(workers), "--progress", "none", "--tz", "UTC",
                       "-q", *OFFLINE)


def report_counts(out: Path) -> dict[str, int]:
    """The ``counts`` of the run report zexport left in ``out``."""
    try:
        report = json.loads((out / ".zexport" / "report.json").read_text())
    except (OSError, ValueError):
        return {}
    counts = report.get("counts", {})
    return {k: int(v) for k, v in counts.items() if isinstance(v, int)}


def tree_size(path: Path, skip: str = ".zexport") -> tuple[int, int]:
    """(bytes, files) of the regular files under ``path``, minus zexport's state folder."""
    total = files = 0
    for dirpath, dirnames, filenames in os.walk(path):
        if skip in dirnames:
            dirnames.remove(skip)
        for name in filenames:
            st = os.lstat(os.path.join(dirpath, name))
            total += st.st_size
            files += 1
    return total, files


def median(values: Sequence[float]) -> float:
    return statistics.median(values)


def repeat(n: int, once: Callable[[], float]) -> list[float]:
    """``n`` timings of ``once()``."""
    return [once() for _ in range(n)]


# -- peak memory --------------------------------------------------------------


def _vm_hwm_kb(pid: int) -> int | None:
    try:
        with open(f"/proc/{pid}/status", "rb") as fh:
            for line in fh:
                if line.startswith(b"VmHWM:"):
                    return int(line.split()[1])
    except (OSError, ValueError):
        return None
    return None


@dataclass
class MemoryRun:
    """Peak resident memory (MiB) of the controller and each worker of one run."""

    seconds: float
    controller_mib: float
    workers_mib: list[float] = field(default_factory=list)


def run_with_memory(cmd: Sequence[str], interval: float = 0.01) -> MemoryRun:
    """Run ``cmd`` (a ``zexport run``), polling VmHWM of it and its descendants."""
    import psutil

    start = time.perf_counter()
    proc = subprocess.Popen(list(cmd), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    parent = psutil.Process(proc.pid)
    peaks: dict[int, int] = {}
    roles: dict[int, str] = {proc.pid: "controller"}
    while proc.poll() is None:
        if time.perf_counter() - start > TIMEOUT:
            proc.kill()
            proc.wait()
            raise RuntimeError(f"did not finish in {TIMEOUT:.0f} s (killed)")
        try:
            children = parent.children(recursive=True)
        except psutil.Error:
            children = []
        for child in children:
            if child.pid not in roles:
                try:
                    cmdline = " ".join(child.cmdline())
                except psutil.Error:
                    continue
                roles[child.pid] = "worker" if "zexport.work.worker" in cmdline else "other"
        for pid in roles:
            hwm = _vm_hwm_kb(pid)
            if hwm is not None:
                peaks[pid] = max(peaks.get(pid, 0), hwm)
        time.sleep(interval)
    seconds = time.perf_counter() - start
    stderr = proc.stderr.read().decode(errors="replace") if proc.stderr else ""
    if proc.returncode not in OK_EXIT:
        raise RuntimeError(f"exited {proc.returncode}: {stderr[-2000:]}")
    workers = [peaks[pid] / 1024 for pid, role in roles.items()
               if role == "worker" and pid in peaks]
    return MemoryRun(seconds, peaks.get(proc.pid, 0) / 1024, sorted(workers))


# -- the machine --------------------------------------------------------------


def fs_type(path: Path) -> str:
    """File system type of ``path`` (longest mount point prefix in /proc/mounts)."""
    best, kind = "", "?"
    target = str(path.resolve())
    try:
        with open("/proc/mounts") as fh:
            for line in fh:
                parts = line.split()
                mount, fstype = parts[1], parts[2]
                if (target == mount or target.startswith(mount.rstrip("/") + "/")) \
                        and len(mount) > len(best):
                    best, kind = mount, fstype
    except OSError:
        pass
    return kind


def load_average() -> str:
    one, five, fifteen = os.getloadavg()
    return f"{one:.2f} {five:.2f} {fifteen:.2f}"


def git_commit() -> str:
    proc = subprocess.run(["git", "-C", str(REPO), "describe", "--always", "--dirty"],
                          capture_output=True, text=True, check=False)
    return proc.stdout.strip() or "?"


BYTECODE: list[str] = []  # what compile_zexport did (set by init)


def machine() -> dict[str, str]:
    """What the numbers were measured on."""
    import apsw
    import zmq

    cpu_model = "?"
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    cpu_model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    mem = "?"
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemTotal:"):
                    mem = f"{int(line.split()[1]) / 1024 / 1024:.1f} GiB"
                    break
    except OSError:
        pass
    return {
        "host": socket.gethostname(),
        "CPUs": f"{os.cpu_count()} ({cpu_model})",
        "memory": mem,
        "OS": f"{platform.system()} {platform.release()}",
        "Python": platform.python_version(),
        "SQLite (APSW)": apsw.sqlite_lib_version(),
        "apsw": apsw.apsw_version(),
        "pyzmq / libzmq": f"{zmq.__version__} / {zmq.zmq_version()}",
        "zexport commit": git_commit(),
        "zexport bytecode": BYTECODE[0] if BYTECODE else "not prepared",
    }
