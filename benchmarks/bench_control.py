"""Control-plane latency during a full-speed export (BRIEF §8: status p99 < 5 ms, cancel < 1 s).

What it does, on a synthetic archive made with ``zexport sample`` and outputs
on tmpfs (``/dev/shm``):

1. Starts ``zexport run`` at full speed and, while it is in the ``exporting``
   phase, measures the ``status`` round trip several ways: a raw request on a
   kept-open DEALER socket (what a GUI does), a raw request on a fresh socket
   each time (connect + request + close), and the ``zexport status`` console
   script as a user runs it, human and ``--json`` (interpreter start-up
   included). Under the same load it also times the console script's
   interpreter doing nothing (``python -c pass``): the floor no client code can
   go below, so the numbers above it are zexport's own. The target is the
   controller's answer over its socket (the raw kinds: p99 under 5 ms); the
   console script is reported by its median. Only samples taken
   while the run was exporting count; runs are restarted (``--force``) until
   there are enough.
   With ``--no-downloads`` the export fetches no missing attachment (by
   default the controller tries to, which costs CPU: status then competes
   with more work).
2. Starts full-speed runs again and, once ~20% is done, runs ``zexport cancel``
   and times from its start to the moment the last process of the run
   (controller and every worker) has exited, and to ``zexport cancel``'s own
   return.

Every command is the console script (``--zexport``, default: the ``zexport``
next to this Python), not ``python -m zexport``: runpy alone adds ~5 ms.
What the interpreter costs depends on the install: an editable install
(``pip install -e .``) runs setuptools' import finder at every start-up (~12 ms
here), and with ``PYTHONDONTWRITEBYTECODE`` set, zexport's own modules are
compiled at every start; both are printed with the results.

Usage::

    python benchmarks/bench_control.py [-n 10000] [--workers 2] [--dir DIR_ON_TMPFS]
        [--zexport PATH_TO_CONSOLE_SCRIPT]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import msgpack
import zmq

from zexport.core.runtime import pid_alive


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


class Bench:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.root = Path(args.dir)
        self.root.mkdir(parents=True, exist_ok=True)
        self.db = self.root / f"archive-{args.conversations}.db"
        self.out = self.root / "out"
        self.runtime = self.root / "runtime"
        self.env = dict(os.environ, ZEXPORT_RUNTIME_DIR=str(self.runtime))
        self.env.pop("ZEXPORT_TEST_DELAY_PER_CONVERSATION", None)
        self.ctx = zmq.Context()
        self.script = args.zexport
        with open(self.script, "rb") as fh:
            shebang = fh.readline()
        if not shebang.startswith(b"#!"):
            raise SystemExit(f"{self.script} is not a console script (no #! line)")
        self.python = shebang[2:].decode().strip()

    def zexport(self, *args: str) -> list[str]:
        return [self.script, *args]

    def describe(self) -> str:
        """Which zexport is measured, and what its interpreter pays at start-up."""
        where = subprocess.run(
            [self.python, "-c", "import sys, zexport; print(zexport.__file__, sys.prefix)"],
            capture_output=True, text=True, check=True, cwd="/").stdout.split()
        editable = not where[0].startswith(where[1])
        return (f"console script {self.script} (interpreter {self.python}; "
                f"{'editable' if editable else 'regular'} install, zexport from "
                f"{os.path.dirname(where[0])}; PYTHONDONTWRITEBYTECODE="
                f"{os.environ.get('PYTHONDONTWRITEBYTECODE', '')!r})")

    def ensure_sample(self) -> None:
        if not self.db.exists():
            subprocess.run(self.zexport("sample", str(self.db), "-n",
                                        str(self.args.conversations)), check=True,
                           env=self.env, stdout=subprocess.DEVNULL)

    def start(self) -> tuple[subprocess.Popen[bytes], dict[str, Any]]:
        shutil.rmtree(self.out, ignore_errors=True)
        proc = subprocess.Popen(
            self.zexport("run", "--db", str(self.db), "--out", str(self.out), "--workers",
                         str(self.args.workers), "--progress", "none", "--tz", "UTC",
                         *(["--no-downloads"] if self.args.no_downloads else [])),
            env=self.env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            start_new_session=True)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            for path in self.runtime.glob("*.json") if self.runtime.is_dir() else []:
                try:
                    return proc, json.loads(path.read_text())
                except (OSError, ValueError):
                    pass
            time.sleep(0.005)
        raise SystemExit("the run never registered")

    def request(self, sock: zmq.Socket[bytes], msg: dict[str, Any]) -> dict[str, Any]:
        sock.send(msgpack.packb(msg))
        if not sock.poll(2000):
            raise TimeoutError
        reply: dict[str, Any] = msgpack.unpackb(sock.recv())
        return reply

    def status_phase(self, sock: zmq.Socket[bytes]) -> dict[str, Any]:
        st: dict[str, Any] = self.request(sock, {"v": 1, "t": "status", "id": 1})["status"]
        return st

    def wait_exporting(self, sock: zmq.Socket[bytes], fraction: float = 0.0) -> dict[str, Any]:
        while True:
            st = self.status_phase(sock)
            if st["phase"] == "exporting" and (
                    st["conversations"]["done"] >= fraction * st["conversations"]["total"]):
                return st
            time.sleep(0.005)

    def finish(self, proc: subprocess.Popen[bytes]) -> None:
        try:
            proc.wait(timeout=120)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()

    def bench_status(self) -> dict[str, list[float]]:
        samples: dict[str, list[float]] = {"raw_kept_socket": [], "raw_fresh_socket": [],
                                           "cli_status": [], "cli_status_json": [],
                                           "python_c_pass": []}
        want = {"raw_kept_socket": self.args.raw, "raw_fresh_socket": self.args.raw,
                "cli_status": self.args.cli, "cli_status_json": self.args.cli,
                "python_c_pass": self.args.cli}
        cli_args = {"cli_status": ["status"], "cli_status_json": ["status", "--json"]}
        for _ in range(10 + self.args.cli // 20):
            if all(len(samples[k]) >= want[k] for k in want):
                break
            proc, reg = self.start()
            kept = self.ctx.socket(zmq.DEALER)
            kept.setsockopt(zmq.LINGER, 0)
            kept.connect(reg["control"])
            try:
                self.wait_exporting(kept)
                while proc.poll() is None:
                    kind = min(want, key=lambda k: len(samples[k]) / want[k])
                    if len(samples[kind]) >= want[kind]:
                        break
                    t0 = time.perf_counter()
                    if kind == "raw_kept_socket":
                        st = self.status_phase(kept)
                    elif kind == "raw_fresh_socket":
                        sock = self.ctx.socket(zmq.DEALER)
                        sock.setsockopt(zmq.LINGER, 0)
                        sock.connect(reg["control"])
                        st = self.status_phase(sock)
                        sock.close()
                    elif kind == "python_c_pass":
                        subprocess.run([self.python, "-c", "pass"], env=self.env, check=True)
                    else:
                        res = subprocess.run(self.zexport(*cli_args[kind]), env=self.env,
                                             capture_output=True, text=True)
                        if res.returncode != 0:
                            break
                        if kind == "cli_status_json":
                            st = json.loads(res.stdout)
                        else:  # "run ID (pid N): PHASE -> OUT"
                            st = {"phase": res.stdout.split(": ", 1)[1].split(" ", 1)[0]}
                    took = time.perf_counter() - t0
                    if kind.startswith("python_"):  # count it if the run was exporting
                        st = self.status_phase(kept)
                    if st["phase"] == "exporting":
                        samples[kind].append(took * 1000)
            except TimeoutError:
                pass
            finally:
                kept.close()
                self.finish(proc)
        return samples

    def bench_cancel(self) -> list[dict[str, float]]:
        results = []
        for _ in range(self.args.cancels):
            proc, reg = self.start()
            sock = self.ctx.socket(zmq.DEALER)
            sock.setsockopt(zmq.LINGER, 0)
            sock.connect(reg["control"])
            st = self.wait_exporting(sock, 0.2)
            sock.close()
            pids = [proc.pid] + [w["pid"] for w in st["workers"]]
            t0 = time.perf_counter()
            cli = subprocess.Popen(self.zexport("cancel"), env=self.env,
                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            last = None
            cli_done = None
            while last is None or cli_done is None:
                if cli_done is None and cli.poll() is not None:
                    cli_done = time.perf_counter() - t0
                if last is None and not any(pid_alive(p) for p in pids):
                    last = time.perf_counter() - t0
                time.sleep(0.001)
            self.finish(proc)
            results.append({"last_process_exit_s": last, "cancel_cli_return_s": cli_done,
                            "done_at_cancel": st["conversations"]["done"],
                            "exit_status": float(proc.returncode)})
        return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", "--conversations", type=int, default=10_000)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--dir", default="/dev/shm/zexport-bench-control")
    parser.add_argument("--raw", type=int, default=500, help="raw status samples per kind")
    parser.add_argument("--cli", type=int, default=40,
                        help="samples of each CLI kind (status, status --json, python -c pass)")
    parser.add_argument("--zexport", default=os.path.join(os.path.dirname(sys.executable),
                                                          "zexport"),
                        help="the zexport console script to measure (default: %(default)s)")
    parser.add_argument("--cancels", type=int, default=5)
    parser.add_argument("--no-downloads", action="store_true",
                        help="export with --no-downloads: the sample's missing attachments are "
                             "not fetched (by default the controller tries, which loads the "
                             "CPUs more: even `python -c pass` is ~1.8x slower under it)")
    args = parser.parse_args()
    bench = Bench(args)
    print(bench.describe())
    bench.ensure_sample()
    status = bench.bench_status()
    print(f"status round trip during a full-speed export of {args.conversations} "
          f"conversations, {args.workers} workers"
          f"{', --no-downloads' if args.no_downloads else ''} (ms):")
    for kind, values in status.items():
        if values:
            limit = 5 if kind.startswith("raw_") else 50
            over = sum(v >= limit for v in values)
            print(f"  {kind:18} n={len(values):4}  median {statistics.median(values):7.2f}"
                  f"  p90 {pct(values, 0.90):7.2f}  p99 {pct(values, 0.99):7.2f}"
                  f"  max {max(values):7.2f}  >={limit}ms {over}")
    cancels = bench.bench_cancel()
    print("zexport cancel at ~20% done (s):")
    for c in cancels:
        print(f"  last process exited {c['last_process_exit_s']:.3f}  cancel returned "
              f"{c['cancel_cli_return_s']:.3f}  (done {int(c['done_at_cancel'])}, "
              f"exit {int(c['exit_status'])})")
    bench.ctx.destroy(linger=0)


if __name__ == "__main__":
    main()
