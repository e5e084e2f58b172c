"""The exporting phase: batches to the workers that ask, their results to the ledger.

Work goes out on credit: a worker is sent one batch per ``ready``, on its own
task pipe, so no batch waits behind a busy worker. Results come back on the
one ``results`` socket and go to the :class:`~zexport.run.ledger.RunLedger`;
what was sent, taken and finished, and who is to blame when a worker dies,
is the :class:`~zexport.run.batches.BatchTable`'s. A dead worker is
replaced, unless workers keep dying without the run moving forward: then
the run stops, with one reason (:attr:`Dispatcher.failed_run`).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Any, cast

import zmq
import zmq.asyncio

from zexport import protocol
from zexport.errors import ProtocolError
from zexport.run.batches import Batch, BatchTable, Failure
from zexport.run.indexing import IndexTable, record_errors
from zexport.run.ledger import RunLedger
from zexport.run.pool import WorkerHandle, WorkerPool
from zexport.run.setup import RunSetup
from zexport.sources.archive import (
    IndexInterrupted,
    IndexPart,
    PartErrors,
    PlannedParts,
    build_part,
    part_path,
)

log = logging.getLogger("zexport.run.dispatch")

# What workers send on the results socket (each with its id, ``w``).
RESULT_TYPES = frozenset(("ready", "took", "done", "hb", "timed_out", "indexed"))
# Workers that die one after another without the run moving forward (at start-up,
# or idle) before no more are started: then the run ends, saying why.
FUTILE_DEATHS = 3


class Dispatcher:
    """Feeds the workers, reads their results, replaces the dead."""

    def __init__(self, setup: RunSetup, table: BatchTable, pool: WorkerPool,
                 ledger: RunLedger, results: zmq.asyncio.Socket, finished: asyncio.Event,
                 over: Callable[[], bool], stop: Callable[[str], None]) -> None:
        self.setup = setup
        self.table = table
        self.pool = pool
        self.ledger = ledger
        self.results = results
        self.queued: zmq.Socket[bytes] = zmq.Socket.shadow(results.underlying)  # same, sync
        self.finished = finished  # set when every batch is done (or the run stops)
        self.over = over  # a cancel is under way, or every conversation is done
        self.stop = stop  # the controller's stop, for a run that cannot go on
        self.failed_run: str | None = None  # why the run could not go on (not a cancel)
        self.futile_deaths = 0  # deaths in a row that moved nothing forward
        self.progress_seen = 0  # table.progress when a death last counted
        self.feed_later: asyncio.TimerHandle | None = None
        self.index: IndexTable | None = None  # the side index parts; None: none planned
        self.built_here: list[asyncio.Future[PartErrors]] = []  # parts workers died on
        self.run_dir = ""

    def start_index(self, planned: PlannedParts, run_dir: str) -> None:
        """Queue the side index parts: the first work of every worker that asks."""
        self.run_dir = run_dir
        self.index = IndexTable(planned.parts)
        record_errors(self.ledger.report, planned.errors)
        self.feed()

    def lost(self, w: WorkerHandle, why: str) -> None:
        """A worker died: put back what it held and maybe replace it."""
        if not self.pool.kill(w) or self.over():
            return  # leaving workers are not deaths (the monitor runs until the very end)
        self.ledger.report.worker_deaths.append({"worker": w.id, "reason": why})
        self._fail(self.table.worker_lost(w.id, why).failures)
        if self.table.finished:
            return
        here = self.index.worker_lost(w.id) if self.index is not None else []
        for part in here:
            self._build_here(part)
        if self.table.progress != self.progress_seen or here:
            self.progress_seen = self.table.progress
            self.futile_deaths = 0  # it died working: its batch was split or failed
        else:
            self.futile_deaths += 1
        if self.futile_deaths < FUTILE_DEATHS:
            self.pool.spawn()
        elif not self.pool.live():
            self._give_up(w, why)
        self.feed()

    def _give_up(self, w: WorkerHandle, why: str) -> None:
        """Workers keep dying without moving the run forward: end it, with one reason."""
        where = self.setup.worker_log(w.id)
        if not w.asked:
            reason = (f"workers die at start-up: the last one (worker {w.id}) {why} before"
                      f" asking for work, {self.futile_deaths} in a row; see {where}")
        else:
            reason = (f"workers keep dying without finishing any work: the last one"
                      f" (worker {w.id}) {why}, {self.futile_deaths} in a row; see {where}")
        self.failed_run = reason
        self.ledger.report.run_errors.append(reason)
        self.stop("failed")

    async def monitor(self) -> None:
        """Heartbeats out; dead and silent worker detection."""
        while True:
            for w, why in self.pool.check(self.setup.spec.hb_timeout):
                self.lost(w, why)
            await asyncio.sleep(self.setup.spec.hb_interval / 2)

    def feed(self) -> None:
        """Send queued batches to the workers that asked for work, one per ``ready``.

        A worker is never sent a batch it did not ask for, so none waits
        behind a busy worker. Sends never block: a worker's pipe holds at
        most what it asked for. A pipe not connected yet (the worker's
        ``ready`` overtook its connection) is tried again shortly.
        """
        if self.over():
            return
        index = self.index
        for w in self.pool.live():
            while w.credit > 0:
                if index is not None and not index.complete:
                    part = index.next_for(w.id)
                    if part is None:
                        break  # every part is out: batches wait until all are built
                    if not self._send(w, _index_frame(part)):
                        index.unsent(part.number)
                        break
                    w.credit -= 1
                    continue
                batch = self.table.next_for(w.id, time.monotonic())
                if batch is None:
                    return
                frame = protocol.encode("batch", batch=batch.id, items=self._wire_items(batch))
                if not self._send(w, frame):
                    self.table.unsent(batch)
                    break
                w.credit -= 1

    def _send(self, w: WorkerHandle, frame: bytes) -> bool:
        """Send on ``w``'s task pipe without blocking; False (and a feed tried again
        shortly) when it is not connected yet."""
        fut = cast("asyncio.Future[Any]", w.tasks.send(frame, zmq.NOBLOCK))
        if fut.done() and fut.exception() is not None:
            if self.feed_later is None:
                self.feed_later = asyncio.get_running_loop().call_later(
                    0.01, self._feed_again)
            return False
        return True

    def _feed_again(self) -> None:
        self.feed_later = None
        self.feed()

    def _wire_items(self, batch: Batch) -> list[list[Any]]:
        """``[id, folder]``, with ``{path: hash}`` of what zexport wrote there last time
        when there is any (docs/protocol.md, ``batch``)."""
        items = batch.items
        resume = self.ledger.resume
        known = (resume.known_files([cid for cid, _ in items])
                 if resume is not None and resume.has_files else {})
        return [[cid, folder, known[cid]] if cid in known else [cid, folder]
                for cid, folder in items]

    async def serve(self) -> None:
        """Read ``ready``/``took``/``done`` frames from every worker: one wakeup, then
        every frame already queued."""
        while True:
            self.handle(await self.results.recv())
            self.drain()

    def drain(self) -> None:
        """Take in the frames already delivered, without waiting (after workers stopped:
        so that none is lost).

        Read through a plain socket sharing the asyncio one's: each asyncio ``recv`` is a
        future and a callback (11 us a frame against 0.5 us), and the asyncio socket
        checks the socket's events itself before it waits again. Only while ``results``
        is open: the plain socket does not own it.
        """
        while True:
            try:
                frame = self.queued.recv(zmq.NOBLOCK)
            except zmq.ZMQError:  # zmq.Again: nothing more queued
                return
            self.handle(frame)

    def handle(self, frame: bytes) -> None:
        try:
            msg = protocol.decode(frame)
        except ProtocolError as exc:
            log.warning("dropped bad result frame: %s", exc)
            return
        kind = msg["t"]
        if kind not in RESULT_TYPES or type(msg.get("w")) is not int:
            log.warning("dropped a %r frame on the results socket", kind)
            return
        w = self.pool.get(msg["w"])
        if w is None:
            return  # a dead (or unknown) worker's word no longer counts
        w.last_heard = time.monotonic()
        if kind == "hb":
            return  # the render watchdog's: a long render is not a silent worker
        if kind == "timed_out":
            self._timed_out(w, msg)
        elif kind == "ready":
            w.credit += 1
            w.asked = True
            self.feed()
        elif kind == "indexed":
            self._indexed(msg["part"], w.id, PartErrors(msg.get("messages_error"),
                                                        msg.get("attachments_error")))
        elif kind == "took":
            self.table.took(msg["batch"], w.id)
        else:
            rows = self.table.done(msg["batch"], w.id)
            if rows is None:
                return  # late or duplicate answer about a batch handed to another worker
            w.conversations += len(msg["results"])
            self.ledger.record(msg["batch"], rows, msg["results"])
            self._check_finished()

    def _timed_out(self, w: WorkerHandle, msg: dict[str, Any]) -> None:
        """A plugin hung on one conversation: fail it, redo the rest of its batch elsewhere.

        The conversations before and after it are queued again, blaming
        nobody, and the worker is killed and replaced: a plugin stuck once
        may have left its process in any state.
        """
        cid = msg["conversation_id"]
        out = self.table.timed_out(msg["batch"], w.id, cid, (
            f"format {self.setup.fmt.name!r} of {self.setup.plugin} timed out after "
            f"{self.setup.spec.render_timeout:g}s on this conversation "
            "(--render-timeout); its worker was replaced"))
        if not out.failures:
            return  # about a batch that is no longer this worker's
        self._fail(out.failures)
        self.lost(w, f"timed out rendering conversation {cid}")

    def _indexed(self, number: int, wid: int | None, errors: PartErrors) -> None:
        """A part is built (by worker ``wid``, or here: None); the last one lets batches go."""
        if self.index is None or not self.index.done(number, wid):
            return  # late word about a part taken from that worker
        record_errors(self.ledger.report, errors)
        if self.index.complete:
            self.feed()

    def _build_here(self, part: IndexPart) -> None:
        """Build a part that workers keep dying on in a thread of the controller (SQLite
        runs without the GIL), stopping at a cancel."""
        fut = asyncio.get_running_loop().run_in_executor(
            None, build_part, self.setup.db, part_path(self.run_dir, part.number), part,
            self.over)
        fut.add_done_callback(lambda done: self._built_here(part, done))
        self.built_here.append(fut)

    def _built_here(self, part: IndexPart, fut: asyncio.Future[PartErrors]) -> None:
        if fut.cancelled() or self.over():
            return
        exc = fut.exception()
        if isinstance(exc, IndexInterrupted):
            return
        if exc is not None:  # the part file itself could not be written: both unbuilt
            why = f"{type(exc).__name__}: {exc}"
            self._indexed(part.number, None, PartErrors(why, why))
        else:
            self._indexed(part.number, None, fut.result())

    def _fail(self, failures: list[Failure]) -> None:
        if failures:  # (and no "finished" check: while planning, the table is still empty)
            self.ledger.fail(failures)
            self._check_finished()

    def _check_finished(self) -> None:
        if self.table.finished:
            self.finished.set()

    def close(self) -> None:
        """Cancel a feed that was to be tried again."""
        if self.feed_later is not None:
            self.feed_later.cancel()

    async def parts_built_here(self) -> None:
        """Wait for the parts being built in the controller's threads (they stop at a
        cancel), so none writes into the run folder while it is removed."""
        await asyncio.gather(*self.built_here, return_exceptions=True)


def _index_frame(part: IndexPart) -> bytes:
    """``index``: build one part (docs/protocol.md); a range left out is not built."""
    fields: dict[str, Any] = {"part": part.number}
    if part.messages is not None:
        fields["messages"] = list(part.messages)
    if part.attachments is not None:
        fields["attachments"] = list(part.attachments)
    return protocol.encode("index", **fields)
