"""Cancel while planning a huge archive (BRIEF §8: a cancel stops a run within 1 s).

Planning (listing, naming, deciding what a re-run skips) reads only the
``conversations`` table, so the archive here is a small ``zexport sample``
with its conversation rows copied to ``-n`` rows (default 200,000): no
messages, which planning never reads, and a file that takes seconds to make.

Each round starts ``zexport run`` (console script, outputs on ``--dir``,
tmpfs by default), waits until the run is registered and ``status`` says
``counting``, plus ``--after`` seconds, sends ``cancel_request`` on a raw
DEALER socket, and times from the send to the exit of the run's last process
(controller and workers, which share its process group). Exit status, wall
time and the run's CPU time (its children's rusage) are printed per round,
then the median.

Usage::

    python benchmarks/bench_plan_cancel.py [-n 200000] [--rounds 5] [--after 0.3]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import sqlite3
import statistics
import subprocess
import sys
import time
from pathlib import Path

import msgpack
import zmq


def make_archive(path: Path, rows: int, zexport: str) -> None:
    subprocess.run([zexport, "sample", str(path), "-n", "50"], check=True,
                   stdout=subprocess.DEVNULL)
    con = sqlite3.connect(path)
    template = con.execute("SELECT title, provider, created_at, updated_at, synced_at,"
                           " current_node_id FROM conversations LIMIT 1").fetchone()
    con.executemany(
        "INSERT INTO conversations (id, title, provider, created_at, updated_at, synced_at,"
        " message_count, current_node_id) VALUES (?, ?, ?, ?, ?, ?, 0, ?)",
        ((f"bench-{i:07d}", f"{template[0]} {i}", template[1], (template[2] or 0) + i,
          template[3], template[4], template[5]) for i in range(rows)))
    con.commit()
    con.close()


def registration(runtime: Path, timeout: float) -> dict[str, object]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for path in runtime.glob("*.json"):
            try:
                reg: dict[str, object] = json.loads(path.read_text())
                return reg
            except ValueError:
                continue
        time.sleep(0.005)
    raise SystemExit("the run never registered")


def ask(sock: zmq.Socket[bytes], msg: dict[str, object]) -> dict[str, object]:
    sock.send(msgpack.packb(msg))
    if not sock.poll(3000):
        raise SystemExit(f"no answer to {msg}")
    reply: dict[str, object] = msgpack.unpackb(sock.recv())
    return reply


def one_round(args: argparse.Namespace, db: Path, work: Path) -> dict[str, float]:
    runtime = work / "rt"
    shutil.rmtree(runtime, ignore_errors=True)
    runtime.mkdir(mode=0o700)
    out = work / "out"
    shutil.rmtree(out, ignore_errors=True)
    env = {**os.environ, "ZEXPORT_RUNTIME_DIR": str(runtime)}
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    proc = subprocess.Popen(
        [args.zexport, "run", "--db", str(db), "--out", str(out), "--progress", "none",
         "--workers", str(args.workers), "--no-attachments"],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)
    reg = registration(runtime, 30)
    sock = zmq.Context.instance().socket(zmq.DEALER)
    sock.setsockopt(zmq.LINGER, 0)
    sock.connect(str(reg["control"]))
    reply = ask(sock, {"v": 1, "t": "status", "id": 1})
    phase = reply["status"]["phase"]  # type: ignore[index]
    time.sleep(args.after)
    sent = time.monotonic()
    ask(sock, {"v": 1, "t": "cancel_request", "id": 2})
    sock.close()
    _, err = proc.communicate(timeout=60)
    while True:  # the workers share the run's process group
        try:
            os.killpg(proc.pid, 0)
        except ProcessLookupError:
            break
        time.sleep(0.002)
    wall = time.monotonic() - sent
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return {"status": proc.returncode, "phase_at_start": phase, "cancel_to_exit_s": wall,
            "run_cpu_s": cpu, "stderr": err.decode()[-200:]}  # type: ignore[dict-item]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", type=int, default=200_000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--after", type=float, default=0.3,
                        help="seconds into planning to cancel")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--dir", default="/dev/shm/zexport-bench-plan-cancel")
    parser.add_argument("--zexport", default=str(Path(sys.executable).with_name("zexport")))
    args = parser.parse_args()
    work = Path(args.dir)
    work.mkdir(parents=True, exist_ok=True)
    db = work / f"plan-{args.n}.db"
    if not db.exists():
        make_archive(db, args.n, args.zexport)
    results = [one_round(args, db, work) for _ in range(args.rounds)]
    for r in results:
        print(f"  exit {r['status']}  phase {r['phase_at_start']}  cancel->last exit "
              f"{r['cancel_to_exit_s']:.3f}s  run CPU {r['run_cpu_s']:.2f}s")
    print(f"median cancel->last exit: "
          f"{statistics.median(r['cancel_to_exit_s'] for r in results):.3f}s")


if __name__ == "__main__":
    main()
