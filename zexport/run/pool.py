"""The worker pool: the controller's worker processes, each with its two sockets.

A worker is a process, its PAIR control channel ``w<N>`` and its PUSH task
pipe ``t<N>`` (docs/protocol.md). The pool starts workers (or adopts those
the CLI started early, :mod:`zexport.run.launch`), reads their control
channels, tells which ones died or went silent (:func:`liveness`), sends
them frames, stops them (ask, SIGTERM, SIGKILL) and describes them for
``zexport status``. What a worker's death means for the run (its batches,
whether to replace it) is the controller's business, not the pool's.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol, cast

import zmq
import zmq.asyncio

from zexport import protocol
from zexport.core.output import UnsafePathError, open_append
from zexport.core.runtime import endpoint
from zexport.errors import ProtocolError

log = logging.getLogger("zexport.run.pool")

# Until its first ``ready``, a worker may be silent this long at least: it boots an
# interpreter and loads plugins, which on a loaded machine can outlast a short
# heartbeat deadline (tests shorten it), and a false death there replaced nothing.
START_TIMEOUT = 10.0


class Process(Protocol):
    """What the pool needs of a worker process (``subprocess.Popen``)."""

    @property
    def pid(self) -> int: ...

    def poll(self) -> int | None: ...

    def wait(self, timeout: float | None = None) -> int: ...

    def terminate(self) -> None: ...

    def kill(self) -> None: ...


class Adoptable(Protocol):
    """Workers started before the pool existed (:class:`zexport.run.launch.EarlyWorkers`)."""

    def take(self, index: int) -> Any: ...

    def boot_log(self, index: int) -> str: ...


@dataclass(eq=False)
class WorkerHandle:
    """A worker process, its control channel and its task pipe."""

    id: int
    proc: Process
    control: zmq.asyncio.Socket
    tasks: zmq.asyncio.Socket
    last_heard: float
    alive: bool = True
    greeted: bool = False
    credit: int = 0  # batches it asked for (``ready``) and was not sent yet
    asked: bool = False  # it asked for work at least once: it got through start-up
    reader: asyncio.Task[None] | None = None
    conversations: int = 0
    outbox: list[dict[str, Any]] = field(default_factory=list)  # fetched_many items

    def close_sockets(self) -> None:
        if self.reader is not None:
            self.reader.cancel()
        if not self.control.closed:
            self.control.close(linger=0)
        if not self.tasks.closed:
            self.tasks.close(linger=0)


def liveness(w: WorkerHandle, now: float, hb_timeout: float) -> str | None:
    """Why ``w`` is to be declared dead (exited, or silent too long), or None."""
    code = w.proc.poll()
    if code is not None:
        return f"exited with status {code}"
    limit = hb_timeout if w.asked else max(hb_timeout, START_TIMEOUT)
    if now - w.last_heard > limit:
        return f"silent for {now - w.last_heard:.1f}s"
    return None


def send_nowait(sock: zmq.asyncio.Socket, frame: bytes) -> None:
    """Send without waiting; a full or closed pipe drops the frame (heartbeats, cancel)."""
    if sock.closed:
        return
    try:
        fut = cast("asyncio.Future[Any]", sock.send(frame, zmq.NOBLOCK))
    except zmq.ZMQError:
        return
    fut.add_done_callback(lambda f: f.cancelled() or f.exception())


# The frames sent to a worker when it says ``hello`` (its config, maybe a cancel).
Greeting = Callable[[WorkerHandle], list[bytes]]
# Where a worker's other control frames go (``fetch``, ``fetch_many``: the bridge).
Handler = Callable[[WorkerHandle, dict[str, Any]], None]


class WorkerPool:
    """The run's workers, by id; ids are never reused (a replacement gets a new one)."""

    def __init__(self, ctx: zmq.asyncio.Context, run_dir: str,
                 start: Callable[[int], Process], greeting: Greeting, handler: Handler,
                 early: Adoptable | None = None) -> None:
        self.ctx = ctx
        self.run_dir = run_dir
        self.start = start
        self.greeting = greeting
        self.handler = handler
        self.early = early
        self.workers: dict[int, WorkerHandle] = {}
        self.next_id = 0
        self.dirty = False  # a worker was SIGKILLed: temporaries may be left to sweep
        self.stopping = False  # every worker was asked to leave (the run is ending)
        self.hard_stop = False  # the user asked twice: stop without waiting

    def spawn(self) -> WorkerHandle:
        """Bind a new worker's sockets and start (or adopt) its process."""
        wid = self.next_id
        self.next_id += 1
        control = self.ctx.socket(zmq.PAIR)
        control.setsockopt(zmq.LINGER, 0)
        control.setsockopt(zmq.MAXMSGSIZE, protocol.MAX_FRAME_BYTES)
        control.bind(endpoint(self.run_dir, f"w{wid}"))
        tasks = self.ctx.socket(zmq.PUSH)  # only this worker's: a batch goes where asked
        tasks.setsockopt(zmq.LINGER, 0)
        tasks.bind(endpoint(self.run_dir, f"t{wid}"))
        # A worker started early is adopted as it is, even one that already died
        # (the controller then treats it as any dead worker: reported, replaced).
        proc = self.early.take(wid) if self.early is not None else None
        if proc is None:
            proc = self.start(wid)
        w = WorkerHandle(wid, proc, control, tasks, time.monotonic())
        w.reader = asyncio.ensure_future(self._serve(w))
        self.workers[wid] = w
        return w

    def live(self) -> list[WorkerHandle]:
        """Workers not declared dead."""
        return [w for w in self.workers.values() if w.alive]

    def get(self, wid: int) -> WorkerHandle | None:
        """A live worker by id (a dead or unknown worker's word no longer counts)."""
        w = self.workers.get(wid)
        return w if w is not None and w.alive else None

    async def _serve(self, w: WorkerHandle) -> None:
        """Read one worker's PAIR channel until it is closed."""
        while w.alive:
            try:
                frame = await w.control.recv()
            except (zmq.ZMQError, asyncio.CancelledError):
                return
            try:
                msg = protocol.decode(frame)
            except ProtocolError as exc:
                log.warning("worker %d: dropped bad control frame: %s", w.id, exc)
                continue
            if not w.alive:
                return
            w.last_heard = time.monotonic()
            kind = msg["t"]
            if kind == "hello":
                w.greeted = True
                for reply in self.greeting(w):
                    await w.control.send(reply)
            elif kind == "bye":
                w.greeted = False
            elif kind in ("fetch", "fetch_many"):
                self.handler(w, msg)

    def check(self, hb_timeout: float) -> list[tuple[WorkerHandle, str]]:
        """The workers found dead, with why; a heartbeat to every other one."""
        now = time.monotonic()
        dead = []
        beat = protocol.encode("hb")
        for w in self.live():
            why = liveness(w, now, hb_timeout)
            if why is None:
                send_nowait(w.control, beat)
            else:
                dead.append((w, why))
        return dead

    def broadcast(self, frame: bytes) -> None:
        """One frame to every live worker, dropped where it cannot go at once."""
        for w in self.live():
            send_nowait(w.control, frame)

    def kill(self, w: WorkerHandle) -> bool:
        """Stop trusting ``w``: kill it and close its sockets. False if it was dead already."""
        if not w.alive:
            return False
        w.alive = False
        w.credit = 0
        if w.proc.poll() is None:
            w.proc.kill()
        self.dirty = True
        w.close_sockets()
        return True

    def terminate_all(self) -> None:
        """SIGTERM every worker still running (the second Ctrl-C: stop hard)."""
        self.hard_stop = True
        for w in self.workers.values():
            if w.proc.poll() is None:
                w.proc.terminate()

    async def _wait(self, seconds: float, yield_to_hard_stop: bool = False) -> None:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline and any(
                w.proc.poll() is None for w in self.workers.values()):
            if yield_to_hard_stop and self.hard_stop:
                return
            await asyncio.sleep(0.01)

    async def stop(self, reason: str, grace: float) -> None:
        """Ask workers to leave; then SIGTERM, which aborts even a long conversation
        cleanly (the worker removes its temporary file); then SIGKILL."""
        self.stopping = True
        self.broadcast(protocol.encode("cancel", reason=reason))
        await self._wait(grace, yield_to_hard_stop=True)
        for w in self.workers.values():
            if w.proc.poll() is None:
                w.proc.terminate()
        await self._wait(0.5 if self.hard_stop else 1.0)
        self.close()

    def close(self) -> None:
        """Kill what still runs (after an error: no worker outlives the controller)."""
        for w in self.workers.values():
            if w.proc.poll() is None:
                w.proc.kill()
                self.dirty = True
            w.proc.wait()
            w.close_sockets()

    def keep_boot_logs(self, log_of: Callable[[int], str]) -> None:
        """Append what early workers wrote before their ``config`` to their logs."""
        if self.early is None:
            return
        for wid in self.workers:
            try:
                with open(self.early.boot_log(wid), "rb") as fh:
                    text = fh.read()
                if text:
                    # Never through a link planted at the log's name.
                    with os.fdopen(open_append(log_of(wid)), "ab") as log_file:
                        log_file.write(b"[while starting]\n" + text)
            except (OSError, UnsafePathError):
                continue

    def snapshot(self, taken: dict[int, int], died: set[int], cancelled: bool,
                 indexing: frozenset[int] | set[int] = frozenset()) -> list[dict[str, Any]]:
        """Each worker for ``zexport status`` (docs/protocol.md, ``status_reply``).

        ``taken``: worker -> the batch it is working on; ``indexing``: the workers
        building a part of the side index; ``died``: workers whose
        death the report counts (they died or went silent while there was work).
        A worker let go at the end of the run, or at a cancel, is stopping, then exited.
        """
        mono = time.monotonic()
        workers = []
        for w in self.workers.values():
            if w.id in died:
                state = "dead"
            elif w.proc.poll() is not None:
                state = "exited"
            elif not w.alive or cancelled or self.stopping:
                state = "stopping"
            elif not w.greeted:
                state = "starting"
            else:
                state = "busy" if w.id in taken else (
                    "indexing" if w.id in indexing else "idle")
            workers.append({
                "id": w.id, "pid": w.proc.pid, "state": state, "batch": taken.get(w.id),
                "conversations": w.conversations, "last_heard": round(mono - w.last_heard, 3),
            })
        return workers
