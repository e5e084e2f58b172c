"""The controller: plans the export, runs the workers, collects the results.

One asyncio loop (``zmq.asyncio``) serves every socket, so the dispatcher,
the result reader, the per-worker control channels and the monitor never
block one another:

- **tasks** (PUSH, bound; send high-water mark 1, IMMEDIATE): batches of
  ``[conversation_id, folder]``. PUSH has no acknowledgement, so every batch
  is tracked: *queued* → *sent* → *taken* (the worker says ``took``) →
  *done*. A batch taken by a worker that dies, or sent and never taken, is
  queued again; a late or duplicate ``done`` is ignored.
- **results** (PULL, bound): ``took`` and ``done`` from every worker.
- **w<N>** (one PAIR per worker, bound before the worker starts): ``hello``
  then ``config``, heartbeats both ways, ``cancel``, attachment ``fetch``.

Folder names are decided here, once, before any work is sent (§4).
"""

from __future__ import annotations

import asyncio
import collections
import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, cast

import apsw
import zmq
import zmq.asyncio

from . import protocol
from .archive import Selection, build_attachment_index, list_conversations, open_archive
from .errors import ArchiveError, OutputError, ProtocolError
from .naming import FolderNamer
from .output import ensure_dir, sweep_temporaries
from .plugins import load_registry
from .progress import NullProgress, ProgressSink
from .report import RunReport
from .runtime import endpoint, new_run_dir, remove_run_dir
from .timezones import resolve_tz

log = logging.getLogger("zexport.controller")

STATE_DIR = ".zexport"


@dataclass
class RunOptions:
    """Everything ``zexport run`` was asked to do."""

    db: str
    out: str
    format: str = "markdown"
    format_options: dict[str, str] = field(default_factory=dict)
    workers: int = 2
    selection: Selection = field(default_factory=Selection)
    branches: str = "active"
    tz: str = "local"
    attachments: str = "copy"
    batch_size: int | None = None
    hb_interval: float = 0.5
    hb_timeout: float = 10.0

    def public(self) -> dict[str, Any]:
        """The options as recorded in the report (no secrets live here)."""
        sel = self.selection
        return {
            "db": self.db, "out": self.out, "format": self.format,
            "format_options": self.format_options, "workers": self.workers,
            "providers": list(sel.providers), "since": sel.since, "until": sel.until,
            "ids": list(sel.ids), "branches": self.branches, "tz": self.tz,
            "attachments": self.attachments,
        }


@dataclass
class Batch:
    """A unit of work and where it is."""

    id: int
    items: list[tuple[str, str]]
    state: str = "queued"  # queued | sent | taken | done
    worker: int | None = None
    sent_at: float = 0.0
    attempts: int = 0


@dataclass
class WorkerHandle:
    """A worker process and its control channel."""

    id: int
    proc: subprocess.Popen[bytes]
    control: zmq.asyncio.Socket
    last_heard: float
    alive: bool = True
    greeted: bool = False
    reader: asyncio.Task[None] | None = None


class Controller:
    """Runs one export; :meth:`run` returns the process exit status."""

    def __init__(self, opts: RunOptions, progress: ProgressSink | None = None,
                 say: Callable[[str], None] | None = None) -> None:
        self.opts = opts
        self.progress = progress or NullProgress()
        self.say = say or (lambda text: None)
        registry = load_registry()
        self.fmt = registry.get_format(opts.format)
        self.format_options = self.fmt.parse_options(opts.format_options)
        self.tz = resolve_tz(opts.tz)
        self.started = time.time()
        self.exported_at = datetime.fromtimestamp(int(self.started), self.tz).isoformat()
        # Validate the archive before anything is created on disk.
        self.conn = open_archive(opts.db)
        self.out = os.path.abspath(opts.out)
        if os.path.exists(self.out) and not os.path.isdir(self.out):
            raise OutputError(f"output path exists and is not a folder: {opts.out}")
        if os.path.islink(self.out):
            raise OutputError(f"output path is a symlink; give the real folder: {opts.out}")
        parent = os.path.dirname(self.out)
        if not os.path.isdir(parent):
            raise OutputError(f"parent folder of the output does not exist: {parent}")
        self.report = RunReport(options=opts.public(), started=self.started)
        self.batches: list[Batch] = []
        self.queue: collections.deque[Batch] = collections.deque()
        self.workers: dict[int, WorkerHandle] = {}
        self.next_worker_id = 0
        self.replacements = 0
        self.cancelled: str | None = None
        self.hard_stop = False
        self.stopping = False
        self.done_batches = 0
        self.done_conversations = 0
        self.total = 0
        self.wake = asyncio.Event()
        self.finished = asyncio.Event()
        self.run_id = ""
        self.run_dir = ""

    # -- setup --------------------------------------------------------------
    def _prepare_output(self) -> None:
        os.makedirs(self.out, exist_ok=True)
        ensure_dir(os.path.join(self.out, STATE_DIR))
        swept = sweep_temporaries(self.out)
        if swept:
            self.report.notes.append(f"removed {swept} temporary files left by an earlier run")

    def _plan(self) -> None:
        """List, name and batch every selected conversation."""
        namer = FolderNamer(self.tz)
        order: list[str] = []
        for head in list_conversations(self.conn, self.opts.selection):
            namer.add(head.id, head.title, head.created_at)
            order.append(head.id)
        folders = namer.assign()
        self.total = len(order)
        workers = max(1, self.opts.workers)
        size = self.opts.batch_size or max(1, min(64, self.total // (workers * 8) or 1))
        for start in range(0, self.total, size):
            ids = order[start:start + size]
            batch = Batch(len(self.batches), [(cid, folders[cid]) for cid in ids])
            self.batches.append(batch)
            self.queue.append(batch)

    def _config(self) -> dict[str, Any]:
        return {
            "db": os.path.abspath(self.opts.db), "out": self.out,
            "format": self.fmt.name, "format_options": self.opts.format_options,
            "tz": self.opts.tz, "branches": self.opts.branches,
            "exported_at": self.exported_at, "attachments": self.opts.attachments,
            "attachment_index": os.path.join(self.run_dir, "attachments.db"),
            "downloads": False,
            "hb_interval": self.opts.hb_interval, "hb_timeout": self.opts.hb_timeout / 2,
        }

    # -- workers ------------------------------------------------------------
    def _spawn(self) -> WorkerHandle:
        wid = self.next_worker_id
        self.next_worker_id += 1
        control = self.ctx.socket(zmq.PAIR)
        control.setsockopt(zmq.LINGER, 0)
        control.setsockopt(zmq.MAXMSGSIZE, protocol.MAX_FRAME_BYTES)
        control.bind(endpoint(self.run_dir, f"w{wid}"))
        log_path = os.path.join(self.out, STATE_DIR, f"worker-{wid}.log")
        with open(log_path, "ab") as log_file:
            proc = subprocess.Popen(
                [sys.executable, "-m", "zexport.worker", self.run_dir, str(wid)],
                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=log_file,
                env=_worker_env(), close_fds=True,
            )
        handle = WorkerHandle(wid, proc, control, time.monotonic())
        handle.reader = asyncio.ensure_future(self._control_loop(handle))
        self.workers[wid] = handle
        return handle

    def live_workers(self) -> list[WorkerHandle]:
        """Workers not declared dead."""
        return [w for w in self.workers.values() if w.alive]

    async def _control_loop(self, w: WorkerHandle) -> None:
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
                await w.control.send(protocol.encode("config", config=self._config()))
                if self.cancelled or self.stopping:
                    reason = self.cancelled or "finished"
                    await w.control.send(protocol.encode("cancel", reason=reason))
                self.wake.set()
            elif kind == "fetch":
                await self.handle_fetch(w, msg)
            elif kind == "bye":
                w.greeted = False

    async def handle_fetch(self, w: WorkerHandle, msg: dict[str, Any]) -> None:
        """Answer a worker's attachment request (downloads are not enabled in this build)."""
        await w.control.send(protocol.encode(
            "fetched", req=msg["req"], path=None, error="downloads are not available"))

    def _declare_dead(self, w: WorkerHandle, why: str) -> None:
        """Stop trusting a worker: kill it, requeue its work, maybe replace it."""
        if not w.alive:
            return
        w.alive = False
        if w.proc.poll() is None:
            w.proc.kill()
        if w.reader is not None:
            w.reader.cancel()
        w.control.close(linger=0)
        if self.cancelled:
            return
        self.report.worker_deaths.append({"worker": w.id, "reason": why})
        now = time.monotonic()
        for batch in self.batches:
            lost = (batch.state == "taken" and batch.worker == w.id) or (
                batch.state == "sent" and now - batch.sent_at > 0.5)
            if lost:
                self._requeue(batch, f"worker {w.id} {why}")
        remaining = self.done_batches < len(self.batches)
        if remaining and self.replacements < max(4, 2 * self.opts.workers):
            self.replacements += 1
            self._spawn()
        elif remaining and not self.live_workers():
            for batch in self.batches:
                if batch.state != "done":
                    self._fail_batch(batch, f"no worker could export it ({why})")
        self.wake.set()

    def _requeue(self, batch: Batch, why: str) -> None:
        """Put a lost batch back; split or fail it if it keeps killing workers."""
        batch.attempts += 1
        batch.worker = None
        if batch.attempts >= 2 and len(batch.items) > 1:
            batch.state = "done"  # replaced by single-conversation batches
            self.done_batches += 1
            for item in batch.items:
                single = Batch(len(self.batches), [item], attempts=1)
                self.batches.append(single)
                self.queue.append(single)
        elif batch.attempts >= 3:
            self._fail_batch(batch, f"{why} while exporting it, {batch.attempts} times")
        else:
            batch.state = "queued"
            self.queue.appendleft(batch)

    def _fail_batch(self, batch: Batch, reason: str) -> None:
        batch.state = "done"
        self.done_batches += 1
        for cid, folder in batch.items:
            self.report.failure(cid, folder, reason)
            self.done_conversations += 1
        self._check_finished()

    # -- loops ----------------------------------------------------------------
    async def _dispatch(self) -> None:
        """Send queued batches while the in-flight window has room."""
        while not self.cancelled:
            window = 2 * max(1, len(self.live_workers()))
            in_flight = sum(1 for b in self.batches if b.state in ("sent", "taken"))
            if self.queue and in_flight < window and any(
                    w.greeted for w in self.live_workers()):
                batch = self.queue.popleft()
                if batch.state != "queued":
                    continue
                frame = protocol.encode(
                    "batch", batch=batch.id, items=[list(i) for i in batch.items])
                await self.tasks.send(frame)
                batch.state, batch.sent_at = "sent", time.monotonic()
                continue
            self.wake.clear()
            try:
                await asyncio.wait_for(self.wake.wait(), 0.25)
            except asyncio.TimeoutError:
                pass

    async def _results(self) -> None:
        """Read ``took``/``done`` frames from every worker."""
        while True:
            frame = await self.results.recv()
            try:
                msg = protocol.decode(frame)
            except ProtocolError as exc:
                log.warning("dropped bad result frame: %s", exc)
                continue
            w = self.workers.get(msg["w"])
            if w is None or not w.alive or not 0 <= msg["batch"] < len(self.batches):
                continue  # a dead (or unknown) worker's word no longer counts
            w.last_heard = time.monotonic()
            batch = self.batches[msg["batch"]]
            if batch.state == "done":
                continue
            if msg["t"] == "took":
                batch.state, batch.worker = "taken", w.id
            elif msg["t"] == "done":
                batch.state = "done"
                self.done_batches += 1
                self._record(batch, msg["results"])
                self.wake.set()

    def _record(self, batch: Batch, results: list[Any]) -> None:
        folders = dict(batch.items)
        title = ""
        for res in results:
            if not isinstance(res, dict):
                continue
            cid = str(res.get("id"))
            folder = folders.get(cid, "")
            self.report.outcome(cid, folder, res)
            self.done_conversations += 1
            title = str(res.get("title") or title)
        elapsed = max(time.time() - self.started, 1e-6)
        self.progress.update("exporting", self.done_conversations, self.total, title, {
            "failed": len(self.report.failures), "rate": self.done_conversations / elapsed})
        self._check_finished()

    def _check_finished(self) -> None:
        if self.done_batches >= len(self.batches):
            self.finished.set()

    async def _monitor(self) -> None:
        """Heartbeats out; dead, silent and lost-work detection."""
        while True:
            now = time.monotonic()
            for w in self.live_workers():
                code = w.proc.poll()
                if code is not None:
                    self._declare_dead(w, f"exited with status {code}")
                elif now - w.last_heard > self.opts.hb_timeout:
                    self._declare_dead(w, f"silent for {now - w.last_heard:.1f}s")
                else:
                    _send_nowait(w.control, protocol.encode("hb"))
            for batch in self.batches:  # sent into a pipe nobody reads any more
                if batch.state == "sent" and now - batch.sent_at > self.opts.hb_timeout:
                    self._requeue(batch, "batch never taken")
                    self.wake.set()
            await asyncio.sleep(self.opts.hb_interval / 2)

    # -- cancel / shutdown ----------------------------------------------------
    def cancel(self, reason: str = "cancelled") -> None:
        """Stop dispatching and tell every worker to stop at the next conversation."""
        if self.cancelled:
            return
        self.cancelled = reason
        for w in self.live_workers():
            _send_nowait(w.control, protocol.encode("cancel", reason=reason))
        self.finished.set()

    def _on_sigint(self) -> None:
        if self.cancelled:
            self.hard_stop = True
            for w in self.live_workers():
                if w.proc.poll() is None:
                    w.proc.kill()
            return
        self.say("Cancelling (Ctrl-C again to stop hard)...")
        self.cancel("interrupted")

    async def _stop_workers(self, grace: float) -> None:
        """Ask workers to leave, then terminate, then kill."""
        self.stopping = True
        for w in self.live_workers():
            _send_nowait(w.control, protocol.encode("cancel", reason="finished"))
        deadline = time.monotonic() + grace
        while time.monotonic() < deadline and any(
                w.proc.poll() is None for w in self.workers.values()):
            await asyncio.sleep(0.02)
        for w in self.workers.values():
            if w.proc.poll() is None:
                w.proc.terminate()
        deadline = time.monotonic() + 1.0
        while time.monotonic() < deadline and any(
                w.proc.poll() is None for w in self.workers.values()):
            await asyncio.sleep(0.02)
        for w in self.workers.values():
            if w.proc.poll() is None:
                w.proc.kill()
            w.proc.wait()
            if w.reader is not None:
                w.reader.cancel()
            if not w.control.closed:
                w.control.close(linger=0)

    # -- main -------------------------------------------------------------------
    def run(self) -> int:
        """Run the export to the end (or to a cancel); return the exit status."""
        return asyncio.run(self._main())

    async def _main(self) -> int:
        self._prepare_output()
        self.run_id, self.run_dir = new_run_dir()
        self.ctx = zmq.asyncio.Context()
        self.tasks = self.ctx.socket(zmq.PUSH)
        self.tasks.setsockopt(zmq.SNDHWM, 1)
        self.tasks.setsockopt(zmq.IMMEDIATE, 1)
        self.tasks.setsockopt(zmq.LINGER, 0)
        self.tasks.bind(endpoint(self.run_dir, "tasks"))
        self.results = self.ctx.socket(zmq.PULL)
        self.results.setsockopt(zmq.LINGER, 0)
        self.results.setsockopt(zmq.MAXMSGSIZE, protocol.MAX_FRAME_BYTES)
        self.results.bind(endpoint(self.run_dir, "results"))
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGINT, self._on_sigint)
        loop.add_signal_handler(signal.SIGTERM, self._on_sigint)
        tasks: list[asyncio.Task[None]] = []
        try:
            # Workers start first: their interpreters boot while we plan.
            for _ in range(max(1, self.opts.workers)):
                self._spawn()
            self.progress.phase("counting", 0)
            try:
                build_attachment_index(self.conn, os.path.join(self.run_dir, "attachments.db"))
            except apsw.Error as exc:  # unreadable attachments must not stop the export
                self.report.notes.append(f"attachments could not be read: {exc}")
            try:
                self._plan()
            except apsw.Error as exc:
                raise ArchiveError(f"cannot list the archive's conversations: {exc}") from None
            self.progress.update("counting", self.total, self.total, "", {})
            self.conn.close()
            if self.total:
                self.progress.phase("exporting", self.total)
                tasks = [asyncio.ensure_future(c) for c in
                         (self._dispatch(), self._results(), self._monitor())]
                await self.finished.wait()
            await self._stop_workers(grace=0.5 if self.cancelled else 2.0)
        finally:
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            for w in self.workers.values():  # after an error: no worker outlives us
                if w.proc.poll() is None:
                    w.proc.kill()
                    w.proc.wait()
                if w.reader is not None:
                    w.reader.cancel()
                if not w.control.closed:
                    w.control.close(linger=0)
            loop.remove_signal_handler(signal.SIGINT)
            loop.remove_signal_handler(signal.SIGTERM)
            self.tasks.close(linger=0)
            self.results.close(linger=0)
            self.ctx.term()
            remove_run_dir(self.run_dir)
            self.progress.close()
        if self.cancelled:
            sweep_temporaries(self.out)
        status = self.report.finish(self.total, self.done_conversations, self.cancelled)
        self.report.write(os.path.join(self.out, STATE_DIR, "report.json"))
        return status


def _worker_env() -> dict[str, str]:
    """The environment a worker gets: ours, minus anything that looks like a secret."""
    secret_words = ("TOKEN", "SECRET", "PASSWORD", "COOKIE", "AUTH", "KEY", "CREDENTIAL")
    return {k: v for k, v in os.environ.items()
            if not any(word in k.upper() for word in secret_words)}


def _send_nowait(sock: zmq.asyncio.Socket, frame: bytes) -> None:
    """Send without waiting; a full or closed pipe drops the frame (heartbeats, cancel)."""
    if sock.closed:
        return
    try:
        fut = cast("asyncio.Future[Any]", sock.send(frame, zmq.NOBLOCK))
    except zmq.ZMQError:
        return
    fut.add_done_callback(lambda f: f.cancelled() or f.exception())
