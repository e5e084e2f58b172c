"""Control-plane latency during a full-speed export (BRIEF §8: status < 50 ms, cancel < 1 s).

What it does, on a synthetic archive made with ``zexport sample`` and outputs
on tmpfs (``/dev/shm``):

1. Starts ``zexport run`` at full speed and, while it is in the ``exporting``
   phase, measures the ``status`` round trip three ways: a raw request on a
   kept-open DEALER socket (what a GUI does), a raw request on a fresh socket
   each time (connect + request + close, what the CLI does inside), and the
   whole ``zexport status --json`` process (interpreter start-up included).
   Only samples taken while the run was exporting count; runs are restarted
   (``--force``) until there are enough.
2. Starts full-speed runs again and, once ~20% is done, runs ``zexport cancel``
   and times from its start to the moment the last process of the run
   (controller and every worker) has exited, and to ``zexport cancel``'s own
   return.

Usage::

    python benchmarks/bench_control.py [-n 10000] [--workers 2] [--dir DIR_ON_TMPFS]
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

from zexport.runtime import pid_alive


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

    def zexport(self, *args: str) -> list[str]:
        return [sys.executable, "-m", "zexport", *args]

    def ensure_sample(self) -> None:
        if not self.db.exists():
            subprocess.run(self.zexport("sample", str(self.db), "-n",
                                        str(self.args.conversations)), check=True,
                           env=self.env, stdout=subprocess.DEVNULL)

    def start(self) -> tuple[subprocess.Popen[bytes], dict[str, Any]]:
        shutil.rmtree(self.out, ignore_errors=True)
        proc = subprocess.Popen(
            self.zexport("run", "--db", str(self.db), "--out", str(self.out), "--workers",
                         str(self.args.workers), "--progress", "none", "--tz", "UTC"),
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
        return self.request(sock, {"v": 1, "t": "status", "id": 1})["status"]

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
                                           "cli_process": []}
        want = {"raw_kept_socket": self.args.raw, "raw_fresh_socket": self.args.raw,
                "cli_process": self.args.cli}
        for _ in range(10):
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
                    else:
                        res = subprocess.run(self.zexport("status", "--json"), env=self.env,
                                             capture_output=True, text=True)
                        if res.returncode != 0:
                            break
                        st = json.loads(res.stdout)
                    took = time.perf_counter() - t0
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
    parser.add_argument("--cli", type=int, default=40, help="CLI status samples")
    parser.add_argument("--cancels", type=int, default=5)
    args = parser.parse_args()
    bench = Bench(args)
    bench.ensure_sample()
    status = bench.bench_status()
    print(f"status round trip during a full-speed export of {args.conversations} "
          f"conversations, {args.workers} workers (ms):")
    for kind, values in status.items():
        if values:
            print(f"  {kind:18} n={len(values):4}  median {statistics.median(values):7.2f}"
                  f"  p99 {pct(values, 0.99):7.2f}  max {max(values):7.2f}")
    cancels = bench.bench_cancel()
    print("zexport cancel at ~20% done (s):")
    for c in cancels:
        print(f"  last process exited {c['last_process_exit_s']:.3f}  cancel returned "
              f"{c['cancel_cli_return_s']:.3f}  (done {int(c['done_at_cancel'])}, "
              f"exit {int(c['exit_status'])})")
    bench.ctx.destroy(linger=0)


if __name__ == "__main__":
    main()
