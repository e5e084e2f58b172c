"""The worker pool in-process: fake processes, real ZeroMQ sockets on ipc in a temp folder.

What the pool decides (who is dead, what state ``zexport status`` shows, how
workers are stopped and when one is SIGKILLed) is checked here without
starting an interpreter; tests/test_dispatch.py and tests/test_control.py
check it with real worker processes.
"""

from __future__ import annotations

import asyncio
import signal
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import msgpack
import pytest
import zmq
import zmq.asyncio

from zexport import protocol
from zexport.run.pool import START_TIMEOUT, WorkerHandle, WorkerPool, liveness

pytestmark = pytest.mark.timeout(30)
T = TypeVar("T")


class FakeProcess:
    """A worker process that exits when told to (or, ``stubborn``, only on SIGKILL)."""

    def __init__(self, pid: int, stubborn: bool = False) -> None:
        self.pid = pid
        self.stubborn = stubborn
        self.code: int | None = None
        self.signals: list[str] = []

    def poll(self) -> int | None:
        return self.code

    def wait(self, timeout: float | None = None) -> int:
        assert self.code is not None, "waited on a process nobody stopped"
        return self.code

    def terminate(self) -> None:
        self.signals.append("TERM")
        if not self.stubborn:
            self.code = -signal.SIGTERM

    def kill(self) -> None:
        self.signals.append("KILL")
        self.code = -signal.SIGKILL


class Early:
    """Workers started before the pool: only id 0."""

    def __init__(self, proc: FakeProcess, boot_dir: Path) -> None:
        self.procs: dict[int, FakeProcess] = {0: proc}
        self.boot_dir = boot_dir

    def take(self, index: int) -> FakeProcess | None:
        return self.procs.pop(index, None)

    def boot_log(self, index: int) -> str:
        return str(self.boot_dir / f"boot-{index}.log")


def handle(proc: FakeProcess, last_heard: float, asked: bool) -> WorkerHandle:
    ctx = zmq.asyncio.Context.instance()
    w = WorkerHandle(0, proc, ctx.socket(zmq.PAIR), ctx.socket(zmq.PUSH), last_heard)
    w.asked = asked
    return w


def test_liveness_says_exited_silent_or_nothing() -> None:
    now = 1000.0
    exited = FakeProcess(1)
    exited.code = 3
    assert liveness(handle(exited, now, True), now, 2.0) == "exited with status 3"
    assert liveness(handle(FakeProcess(2), now - 2.5, True), now, 2.0) == "silent for 2.5s"
    assert liveness(handle(FakeProcess(3), now - 1.5, True), now, 2.0) is None


def test_liveness_gives_a_starting_worker_the_start_timeout() -> None:
    """Before its first ``ready`` a worker boots an interpreter: a short heartbeat
    deadline does not apply, START_TIMEOUT does."""
    now = 1000.0
    assert liveness(handle(FakeProcess(1), now - 5.0, False), now, 2.0) is None
    late = now - START_TIMEOUT - 0.5
    assert liveness(handle(FakeProcess(1), late, False), now, 2.0) == (
        f"silent for {START_TIMEOUT + 0.5:.1f}s")


class Harness:
    """A pool on a real context; ``peer(wid)`` is the worker's end of its PAIR channel."""

    def __init__(self, run_dir: Path, early: Early | None = None) -> None:
        self.run_dir = run_dir
        self.ctx = zmq.asyncio.Context()
        self.started: list[int] = []
        self.procs: dict[int, FakeProcess] = {}
        self.handled: list[tuple[int, str]] = []
        self.pool = WorkerPool(self.ctx, str(run_dir), self.start, self.greeting,
                               self.handle, early)
        self.peers: dict[int, zmq.asyncio.Socket] = {}

    def start(self, wid: int) -> FakeProcess:
        self.started.append(wid)
        proc = self.procs[wid] = FakeProcess(100 + wid)
        return proc

    def greeting(self, w: WorkerHandle) -> list[bytes]:
        return [protocol.encode("cancel", reason=f"greeting {w.id}")]

    def handle(self, w: WorkerHandle, msg: dict[str, Any]) -> None:
        self.handled.append((w.id, msg["t"]))

    def peer(self, wid: int) -> zmq.asyncio.Socket:
        if wid not in self.peers:
            sock = self.ctx.socket(zmq.PAIR)
            sock.setsockopt(zmq.LINGER, 0)
            sock.connect(f"ipc://{self.run_dir / f'w{wid}'}")
            self.peers[wid] = sock
        return self.peers[wid]

    async def recv(self, wid: int) -> dict[str, Any]:
        frame = await asyncio.wait_for(self.peer(wid).recv(), 5)
        msg: dict[str, Any] = msgpack.unpackb(frame)
        return msg

    def close(self) -> None:
        for w in self.pool.workers.values():
            w.close_sockets()
        for sock in self.peers.values():
            sock.close(linger=0)
        self.ctx.term()


def run(run_dir: Path, body: Callable[[Harness], Awaitable[T]],
        early: Early | None = None) -> T:
    async def main() -> T:
        harness = Harness(run_dir, early)
        try:
            return await body(harness)
        finally:
            harness.close()
    return asyncio.run(main())


async def until(cond: Callable[[], bool], what: str, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.005)


def test_spawn_adopts_the_early_worker_then_starts_new_ones_with_new_ids(
        tmp_path: Path) -> None:
    adopted = FakeProcess(42)

    async def body(h: Harness) -> None:
        first, second = h.pool.spawn(), h.pool.spawn()
        assert (first.id, first.proc) == (0, adopted)
        assert (second.id, h.started) == (1, [1])
        assert h.pool.kill(first) is True
        assert h.pool.kill(first) is False  # dead already: nothing more happens
        third = h.pool.spawn()  # a replacement: ids are never reused
        assert third.id == 2 and h.started == [1, 2]
        assert [w.id for w in h.pool.live()] == [1, 2]
        assert h.pool.get(0) is None and h.pool.get(2) is third and h.pool.get(7) is None
        assert adopted.signals == ["KILL"] and h.pool.dirty
        assert first.control.closed and first.tasks.closed

    run(tmp_path, body, Early(adopted, tmp_path))


def test_hello_is_answered_with_the_greeting_and_fetches_go_to_the_handler(
        tmp_path: Path) -> None:
    async def body(h: Harness) -> None:
        w = h.pool.spawn()
        peer = h.peer(w.id)
        await peer.send(protocol.encode("hello", w=0, pid=100))
        assert await h.recv(w.id) == {"v": 1, "t": "cancel", "reason": "greeting 0"}
        assert w.greeted
        await peer.send(b"\x00garbage")  # dropped, the channel goes on
        await peer.send(protocol.encode("fetch_many", items=[]))
        await peer.send(protocol.encode("bye", w=0, reason="cancelled"))
        await until(lambda: not w.greeted, "bye")
        assert h.handled == [(0, "fetch_many")]

    run(tmp_path, body)


def test_check_reports_dead_workers_and_beats_the_others(tmp_path: Path) -> None:
    async def body(h: Harness) -> None:
        alive, exited, silent = h.pool.spawn(), h.pool.spawn(), h.pool.spawn()
        h.procs[exited.id].code = 9
        silent.asked = True
        silent.last_heard = time.monotonic() - 3.0
        h.peer(alive.id)
        await until(lambda: bool(alive.control.getsockopt(zmq.EVENTS) & zmq.POLLOUT),
                    "the worker's end to connect")
        dead = h.pool.check(hb_timeout=2.0)
        assert [(w.id, why.split(" for ")[0]) for w, why in dead] == [
            (1, "exited with status 9"), (2, "silent")]
        assert (await h.recv(alive.id))["t"] == "hb"

    run(tmp_path, body)


def test_snapshot_names_each_state_zexport_status_shows(tmp_path: Path) -> None:
    async def body(h: Harness) -> None:
        starting, idle, busy, dead, exited = (h.pool.spawn() for _ in range(5))
        for w in (idle, busy):
            w.greeted = True
        busy.conversations = 12
        h.pool.kill(dead)
        h.procs[exited.id].code = 0
        states = {s["id"]: (s["state"], s["batch"]) for s in h.pool.snapshot(
            {busy.id: 7}, died={dead.id}, cancelled=False)}
        assert states == {0: ("starting", None), 1: ("idle", None), 2: ("busy", 7),
                          3: ("dead", None), 4: ("exited", None)}
        row = h.pool.snapshot({busy.id: 7}, set(), False)[busy.id]
        assert (row["pid"], row["conversations"]) == (102, 12)
        assert 0 <= row["last_heard"] < 5
        cancelling = h.pool.snapshot({}, set(), cancelled=True)
        assert [s["state"] for s in cancelling] == [
            "stopping", "stopping", "stopping", "exited", "exited"]

    run(tmp_path, body)


def test_stop_asks_then_terminates_then_kills_the_stubborn(tmp_path: Path) -> None:
    async def body(h: Harness) -> None:
        polite, stubborn = h.pool.spawn(), h.pool.spawn()
        h.procs[stubborn.id].stubborn = True
        h.peer(polite.id)
        await until(lambda: bool(polite.control.getsockopt(zmq.EVENTS) & zmq.POLLOUT),
                    "the worker's end to connect")
        started = time.monotonic()
        await h.pool.stop("finished", grace=0.05)
        assert time.monotonic() - started < 3.0
        assert await h.recv(polite.id) == {"v": 1, "t": "cancel", "reason": "finished"}
        assert h.procs[polite.id].signals == ["TERM"]
        assert h.procs[stubborn.id].signals == ["TERM", "KILL"]
        assert h.pool.dirty and h.pool.stopping
        assert all(w.control.closed and w.tasks.closed for w in h.pool.workers.values())

    run(tmp_path, body)


def test_a_hard_stop_cuts_the_grace_short(tmp_path: Path) -> None:
    async def body(h: Harness) -> float:
        h.pool.spawn()
        h.procs[0].stubborn = True
        asyncio.get_running_loop().call_later(0.05, h.pool.terminate_all)
        started = time.monotonic()
        await h.pool.stop("interrupted", grace=20.0)
        return time.monotonic() - started

    assert run(tmp_path, body) < 5.0  # not the 20 s grace


def test_boot_logs_of_adopted_workers_are_kept_in_their_logs(tmp_path: Path) -> None:
    (tmp_path / "boot-0.log").write_bytes(b"importing plugins\n")
    logs = tmp_path / "logs"
    logs.mkdir()

    async def body(h: Harness) -> None:
        h.pool.spawn()
        h.pool.spawn()  # not started early: no boot log
        h.pool.keep_boot_logs(lambda wid: str(logs / f"worker-{wid}.log"))

    run(tmp_path, body, Early(FakeProcess(42), tmp_path))
    assert (logs / "worker-0.log").read_bytes() == b"[while starting]\nimporting plugins\n"
    assert not (logs / "worker-1.log").exists()
