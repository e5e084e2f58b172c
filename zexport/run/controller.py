"""The controller: runs one export through its phases, from a :class:`RunSpec` to a report.

One asyncio loop (``zmq.asyncio``) serves every socket, so the dispatcher,
the result reader, the per-worker control channels and the monitor never
block one another:

- **t<N>** (one PUSH per worker, bound): batches of ``[conversation_id,
  folder]``, sent only to a worker that asked for one (``ready``): no batch
  ever waits behind a busy worker. What is queued, sent, taken, done, split
  or failed, and who is to blame when a worker dies, is
  :class:`~zexport.run.batches.BatchTable`'s business.
- **results** (PULL, bound): ``ready``, ``took`` and ``done`` from every worker,
  recorded by :class:`~zexport.run.ledger.RunLedger`.
- **w<N>** (one PAIR per worker, :class:`~zexport.run.pool.WorkerPool`): ``hello``
  then ``config``, heartbeats both ways, ``cancel``, attachment ``fetch``
  (:class:`~zexport.run.bridge.AttachmentBridge`).
- **control** (ROUTER, bound; :mod:`zexport.run.control`): ``status`` and
  ``cancel_request`` from ``zexport status``/``zexport cancel`` and GUIs.

Folder names are decided once, before any work is sent (§4), and so is what a
re-run may skip (:mod:`zexport.run.planning`). Cancel (``zexport cancel``,
Ctrl-C, SIGTERM, SIGHUP) goes through one path, :meth:`Controller.cancel`.
Teardown is one exit stack, in the order :meth:`Controller._main` declares.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
import os
import subprocess
import sys
import time
from collections.abc import Callable, Coroutine
from typing import TYPE_CHECKING, Any, cast

import apsw
import zmq
import zmq.asyncio

from zexport import protocol
from zexport.core.runfiles import shard_path
from zexport.core.runtime import (
    endpoint,
    list_runs,
    new_run_dir,
    register_run,
    remove_run_dir,
    runtime_base,
    sweep_orphan_run_dirs,
    unregister_run,
)
from zexport.core.statedir import renders_everything
from zexport.errors import ArchiveError, PluginError, ProtocolError
from zexport.net.limits import Limits
from zexport.run.batches import Batch, BatchTable, Failure
from zexport.run.bridge import AttachmentBridge
from zexport.run.checkpoints import Cancelled
from zexport.run.control import ControlServer
from zexport.run.launch import EarlyWorkers, start_worker
from zexport.run.ledger import RunLedger
from zexport.run.outfolder import OutputFolder
from zexport.run.plan import Plan
from zexport.run.planning import has_run_steps, plan_run
from zexport.run.pool import WorkerHandle, WorkerPool
from zexport.run.progress import NullProgress, ProgressSink
from zexport.run.report import RunReport
from zexport.run.setup import ATTACHMENT_INDEX, RunSetup
from zexport.run.signals import CancelSignals, handlers_restored
from zexport.run.steps import FormatSteps
from zexport.sources.archive import MESSAGE_INDEX, build_attachment_index, build_message_index

if TYPE_CHECKING:
    from zexport.net.service import AttachmentService

log = logging.getLogger("zexport.run.controller")

# What workers send on the results socket (each with its id, ``w``).
RESULT_TYPES = frozenset(("ready", "took", "done", "hb", "timed_out"))
# Workers that die one after another without the run moving forward (at start-up,
# or idle) before no more are started: then the run ends, saying why.
FUTILE_DEATHS = 3


class Phase(str, enum.Enum):
    """Where a run is (``zexport status``'s ``phase``)."""

    STARTING = "starting"
    COUNTING = "counting"  # planning: listing, naming, deciding what a re-run skips
    EXPORTING = "exporting"
    FINISHING = "finishing"  # every conversation done: the format's finish step
    CANCELLING = "cancelling"


class Controller:
    """Runs one export; :meth:`run` returns the process exit status."""

    def __init__(self, setup: RunSetup, conn: apsw.Connection,
                 progress: ProgressSink | None = None, say: Callable[[str], None] | None = None,
                 early: EarlyWorkers | None = None) -> None:
        self.setup = setup
        self.spec = spec = setup.spec
        self.conn = conn  # the archive, open (RunSetup.prepare checked it)
        self.early = early  # workers the CLI started while we were imported (run.launch)
        self.report = RunReport(options=spec.public(), started=setup.started,
                                strict=spec.strict)
        self.report.notes.extend(spec.notes)
        self.report.run_errors.extend(spec.input_errors)
        if setup.auth_warning:
            self.report.notes.append(setup.auth_warning)
        self.ledger = RunLedger(self.report, progress)
        self.table = BatchTable(lambda start, stop: self._plan_file().items(start, stop))
        self.bridge = AttachmentBridge()
        self.service: AttachmentService | None = None  # started only if downloads are on
        self.folder = OutputFolder(setup.out, setup.state_dir, spec.out)
        self.signals = CancelSignals(self.cancel, self._over, self._stop_hard, self._hung_up,
                                     say or (lambda text: None))
        self.pool: WorkerPool | None = None
        self.plan: Plan | None = None
        self.control: ControlServer | None = None
        self.tasks: list[asyncio.Task[None]] = []
        self.phase = Phase.STARTING
        self.finished = asyncio.Event()
        self.cancelled: str | None = None  # why the run is being stopped early
        self.failed_run: str | None = None  # why the run could not go on (not a cancel)
        self.internal_error = False  # a controller loop failed (see _loop_ended)
        self.planning_cut = False  # cancelled while planning
        self.start_failed = False  # the format's start step raised
        self.index_unreadable = False  # the attachment side index could not be built
        self.futile_deaths = 0  # deaths in a row that moved nothing forward
        self.progress_seen = 0  # self.table.progress when a death last counted
        self.feed_later: asyncio.TimerHandle | None = None
        self.run_id = self.run_dir = ""
        self.exit_status = 1

    @property
    def out(self) -> str:
        return self.setup.out

    @property
    def state_dir(self) -> str:
        return self.setup.state_dir

    @property
    def progress(self) -> ProgressSink:
        return self.ledger.progress

    @progress.setter
    def progress(self, sink: ProgressSink) -> None:
        self.ledger.progress = sink

    def _plan_file(self) -> Plan:
        assert self.plan is not None
        return self.plan

    # -- the two requests of the control endpoint -------------------------------
    def status(self) -> dict[str, Any]:
        """Where the run is (docs/protocol.md, ``status_reply``)."""
        now = time.time()
        counts = self.ledger.counts()
        died = {d.get("worker") for d in self.report.worker_deaths}
        workers = self.pool.snapshot(self.table.taken_by(), cast("set[int]", died),
                                     bool(self.cancelled)) if self.pool else []
        return {
            "run_id": self.run_id, "pid": os.getpid(), "out": self.out, "db": self.setup.db,
            "format": self.setup.fmt.name, "phase": self.phase.value,
            "cancelled": self.cancelled, "started_at": self.setup.started,
            "elapsed": round(now - self.setup.started, 3), **counts, "workers": workers,
        }

    def cancel(self, reason: str = "cancelled") -> tuple[str, bool]:
        """The one way in for cancel (control endpoint, Ctrl-C, SIGTERM, SIGHUP).

        Returns ``(state, already)``: a repeated cancel is answered with the
        state of the one under way instead of being an error.
        """
        if self.cancelled:
            return "cancelling", True
        if self.finished.is_set():
            return "finishing", True  # every conversation is done; nothing left to stop
        self._stop(reason)
        return "cancelling", False

    def _stop(self, reason: str) -> None:
        """Stop dispatching, tell every worker to stop, abort downloads in flight."""
        if self.cancelled:
            return
        self.cancelled = reason
        self.phase = Phase.CANCELLING
        if self.pool is not None:
            self.pool.broadcast(protocol.encode("cancel", reason=reason))
        self.bridge.abort()
        self.finished.set()

    def _over(self) -> bool:
        return bool(self.cancelled) or self.finished.is_set()

    def _stop_hard(self) -> None:
        if self.pool is not None:
            self.pool.terminate_all()

    def _hung_up(self) -> None:
        if getattr(self.ledger.progress, "draws_on_terminal", False):
            self.ledger.progress.close()
            self.ledger.progress = NullProgress()

    # -- main -------------------------------------------------------------------
    def run(self, release_signals: bool = True) -> int:
        """Run the export to the end (or to a cancel); return the exit status.

        Ctrl-C and SIGTERM are held from the close-down on (:mod:`zexport.run.signals`)
        and given back their previous handlers on return, unless ``release_signals``
        is False: the CLI, which only prints the summary and exits after this, passes
        False so that a late Ctrl-C cannot replace the exit status with death by SIGINT.
        """
        with handlers_restored(release_signals):
            return asyncio.run(self._main())

    async def _main(self) -> int:
        self.signals.install(asyncio.get_running_loop())
        runtime_base()  # refuses an unusable runtime folder before the output is touched
        self.folder.open(self.report)  # takes the output lock, or refuses
        # Teardown, last step first: each callback is pushed before what it outlives.
        async with contextlib.AsyncExitStack() as stack:
            stack.callback(lambda: self.folder.release(undo_fresh=self.start_failed))
            self.run_id, self.run_dir = (self.early.adopt() if self.early is not None
                                         else new_run_dir())
            stack.callback(unregister_run, self.run_id)  # `zexport cancel` waits for this
            stack.push(self._conclude)  # sweep, the report: only when nothing raised
            stack.callback(lambda: self.ledger.progress.close())
            stack.callback(remove_run_dir, self.run_dir)
            stack.callback(self._keep_boot_logs)
            stack.callback(self._close_files)  # manifest, plan, format steps, archive
            self.ledger.steps = FormatSteps(self.setup, os.path.join(self.run_dir, "plan.jsonl"))
            self.folder.lock.note(self.run_id)
            ctx = zmq.asyncio.Context()
            stack.callback(ctx.term)
            self.results = ctx.socket(zmq.PULL)
            stack.callback(self.results.close, linger=0)
            self.results.setsockopt(zmq.LINGER, 0)
            self.results.setsockopt(zmq.MAXMSGSIZE, protocol.MAX_FRAME_BYTES)
            self.results.bind(endpoint(self.run_dir, "results"))
            self.control = ControlServer(self.run_dir, self)
            stack.callback(self.control.close)
            stack.callback(self.signals.hold)  # from here on, nothing cuts teardown short
            self.pool = WorkerPool(ctx, self.run_dir, self._start_worker, self._greeting,
                                   self.bridge.handle, self.early)
            stack.callback(self.pool.close)  # after an error: no worker outlives us
            stack.push_async_callback(self._close_downloads)
            stack.push_async_callback(self._cancel_tasks)
            await self._run()
        return self.exit_status

    async def _run(self) -> None:
        assert self.control is not None and self.pool is not None
        list_runs()  # sweeps registrations left by controllers that were killed
        sweep_orphan_run_dirs()  # and run folders of runs killed before registering
        register_run(self.run_id, self.setup.registration(self.control.endpoint))
        self._task(self.control.serve())
        self.phase = Phase.COUNTING
        if renders_everything(self.out, self.spec.force):
            # Everything will be rendered: worker interpreters boot while we plan.
            for _ in range(max(1, self.spec.workers)):
                self.pool.spawn()
        self.ledger.progress.phase("counting", 0)
        await self._plan()
        total = self.ledger.total
        self.ledger.progress.update("counting", total, total, "", {})
        self.conn.close()
        steps = self.ledger.steps
        assert steps is not None
        try:
            if not self.cancelled:
                steps.start(total)
        except PluginError:
            self.start_failed = True
            raise
        await asyncio.sleep(0)  # let control requests that arrived meanwhile in
        if self.table.batches and not self.cancelled:
            await self._export()
        await self.pool.stop(self.cancelled or "finished",
                             grace=0.25 if self.cancelled else 2.0)
        self._drain_results()
        if not self.cancelled:
            failures = {f["conversation_id"]: f["reason"] for f in self.report.failures}
            shards = [shard_path(self.out, self.setup.fmt.name, b.id)
                      for b in self.table.accepted()]
            error = await steps.finish(total, failures, shards, lambda: bool(self.cancelled))
            if error:
                self.report.run_errors.append(error)

    async def _plan(self) -> None:
        """Plan in a thread while two more build the archive's side indexes (SQLite
        runs without the GIL): the loop answers status, cancel and hello meanwhile."""
        loop = asyncio.get_running_loop()
        db = self.setup.db
        indexing = loop.run_in_executor(None, build_attachment_index, db,
                                        os.path.join(self.run_dir, ATTACHMENT_INDEX))
        indexing_messages = loop.run_in_executor(None, build_message_index, db,
                                                 os.path.join(self.run_dir, MESSAGE_INDEX))
        try:
            await loop.run_in_executor(None, self._plan_now)
        except Cancelled:
            self.planning_cut = True  # nothing to export; the report says cancelled
            self.report.notes.append("cancelled while planning: nothing was exported")
        except apsw.Error as exc:
            raise ArchiveError(f"cannot list the archive's conversations: {exc}") from None
        finally:
            try:
                await indexing
            except apsw.Error as exc:  # unreadable attachments must not stop the export
                # ... but they are missing from it: the run is partial, not "ok".
                self.index_unreadable = True
                self.report.run_errors.append(
                    f"the archive's attachments could not be read ({exc}); conversations"
                    " were exported without their attachment files")
            try:
                await indexing_messages
            except (apsw.Error, ArchiveError, OSError) as exc:
                # Without it workers read by conversation_id: right, but a scan per batch.
                self.report.notes.append(
                    f"the message index could not be built ({exc}); messages were read by"
                    " conversation, which is slow on an archive without its own index")

    def _plan_now(self) -> None:
        steps = self.ledger.steps
        assert steps is not None
        self.plan = Plan(os.path.join(self.run_dir, "plan.db"))
        planned = plan_run(
            self.setup, self.conn, self.plan, self.report, lambda: bool(self.cancelled),
            self.state_dir, steps.plan_path if has_run_steps(self.setup.fmt) else None)
        self.ledger.resume = planned.resume
        self.ledger.total, self.ledger.done = planned.total, planned.done
        for first, end in planned.batches:
            self.table.add(first, end)

    async def _export(self) -> None:
        assert self.pool is not None
        if self.spec.downloads_on:
            from zexport.net.service import AttachmentService  # httpx: only when needed

            dl = self.spec.downloads
            self.bridge.service = self.service = service = AttachmentService(
                self.setup.providers, self.setup.credentials, self.setup.attachment_cache(),
                Limits.from_options(dl), archive=self.setup.db if dl.update_archive else None,
                on_change=self.ledger.show_downloads)
            self.ledger.downloads = service.stats
        self.phase = Phase.EXPORTING
        self.ledger.export_started = time.time()
        self.ledger.progress.phase("exporting", self.ledger.total)
        for _ in range(min(max(1, self.spec.workers), len(self.table.batches))
                       - len(self.pool.live())):
            self.pool.spawn()
        self._feed()  # workers that asked for work while we planned
        for coro in (self._results(), self._monitor()):
            self._task(coro).add_done_callback(self._loop_ended)
        await self.finished.wait()
        if not self.cancelled:
            self.phase = Phase.FINISHING

    # -- workers ----------------------------------------------------------------
    def _start_worker(self, wid: int) -> subprocess.Popen[bytes]:
        return start_worker(self.run_dir, wid, self.setup.worker_log(wid), self.setup.fmt.name)

    def _greeting(self, w: WorkerHandle) -> list[bytes]:
        """``config`` for a worker that said hello, and ``cancel`` if the run is ending."""
        settings = self.setup.worker_settings(self.run_dir, not self.index_unreadable)
        frames = [protocol.encode(
            "config", config=settings.for_worker(self.setup.worker_log(w.id)).to_wire())]
        if self.cancelled or (self.pool is not None and self.pool.stopping):
            frames.append(protocol.encode("cancel", reason=self.cancelled or "finished"))
        return frames

    def _lost(self, w: WorkerHandle, why: str) -> None:
        """A worker died: put back what it held and maybe replace it."""
        assert self.pool is not None
        if not self.pool.kill(w) or self._over():
            return  # leaving workers are not deaths (the monitor runs until the very end)
        self.report.worker_deaths.append({"worker": w.id, "reason": why})
        self._fail(self.table.worker_lost(w.id, why).failures)
        if self.table.finished:
            return
        if self.table.progress != self.progress_seen:
            self.progress_seen = self.table.progress
            self.futile_deaths = 0  # it died working: its batch was split or failed
        else:
            self.futile_deaths += 1
        if self.futile_deaths < FUTILE_DEATHS:
            self.pool.spawn()
        elif not self.pool.live():
            self._give_up(w, why)
        self._feed()

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
        self.report.run_errors.append(reason)
        self._stop("failed")

    async def _monitor(self) -> None:
        """Heartbeats out; dead and silent worker detection."""
        assert self.pool is not None
        while True:
            for w, why in self.pool.check(self.spec.hb_timeout):
                self._lost(w, why)
            await asyncio.sleep(self.spec.hb_interval / 2)

    # -- dispatch and results -------------------------------------------------------
    def _feed(self) -> None:
        """Send queued batches to the workers that asked for work, one per ``ready``.

        A worker is never sent a batch it did not ask for, so none waits
        behind a busy worker. Sends never block: a worker's pipe holds at
        most what it asked for. A pipe not connected yet (the worker's
        ``ready`` overtook its connection) is tried again shortly.
        """
        if self.cancelled or self.pool is None:
            return
        for w in self.pool.live():
            while w.credit > 0:
                batch = self.table.next_for(w.id, time.monotonic())
                if batch is None:
                    return
                frame = protocol.encode("batch", batch=batch.id, items=self._wire_items(batch))
                fut = cast("asyncio.Future[Any]", w.tasks.send(frame, zmq.NOBLOCK))
                if fut.done() and fut.exception() is not None:
                    self.table.unsent(batch)
                    if self.feed_later is None:
                        self.feed_later = asyncio.get_running_loop().call_later(
                            0.01, self._feed_again)
                    break
                w.credit -= 1

    def _feed_again(self) -> None:
        self.feed_later = None
        self._feed()

    def _wire_items(self, batch: Batch) -> list[list[Any]]:
        """``[id, folder]``, with ``{path: hash}`` of what zexport wrote there last time
        when there is any (docs/protocol.md, ``batch``)."""
        items = batch.items
        resume = self.ledger.resume
        known = (resume.known_files([cid for cid, _ in items])
                 if resume is not None and resume.has_files else {})
        return [[cid, folder, known[cid]] if cid in known else [cid, folder]
                for cid, folder in items]

    async def _results(self) -> None:
        """Read ``ready``/``took``/``done`` frames from every worker."""
        while True:
            self._handle_result(await self.results.recv())

    def _drain_results(self) -> None:
        """Take in results already delivered (after workers stopped), so none is lost."""
        if self.internal_error:
            return  # the results loop failed: recording more would fail the same way
        while True:
            try:
                fut = cast("asyncio.Future[bytes]", self.results.recv(zmq.NOBLOCK))
                self._handle_result(fut.result())
            except (zmq.ZMQError, asyncio.InvalidStateError):
                return

    def _handle_result(self, frame: bytes) -> None:
        try:
            msg = protocol.decode(frame)
        except ProtocolError as exc:
            log.warning("dropped bad result frame: %s", exc)
            return
        kind = msg["t"]
        if kind not in RESULT_TYPES or type(msg.get("w")) is not int:
            log.warning("dropped a %r frame on the results socket", kind)
            return
        assert self.pool is not None
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
            self._feed()
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
            f"{self.spec.render_timeout:g}s on this conversation "
            "(--render-timeout); its worker was replaced"))
        if not out.failures:
            return  # about a batch that is no longer this worker's
        self._fail(out.failures)
        self._lost(w, f"timed out rendering conversation {cid}")

    def _fail(self, failures: list[Failure]) -> None:
        if failures:  # (and no "finished" check: while planning, the table is still empty)
            self.ledger.fail(failures)
            self._check_finished()

    def _check_finished(self) -> None:
        if self.table.finished:
            self.finished.set()

    def _loop_ended(self, task: asyncio.Task[None]) -> None:
        """A controller loop (results, monitor) must not die quietly: the run
        would wait forever. Stop the run instead, and say why in the report."""
        if task.cancelled() or task.exception() is None:
            return
        exc = task.exception()
        log.debug("controller loop failed", exc_info=exc)
        self.report.run_errors.append(
            f"the controller stopped the run: {type(exc).__name__}: {exc}")
        self.internal_error = True
        self._stop("internal error")

    def _task(self, coro: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        task = asyncio.ensure_future(coro)
        self.tasks.append(task)
        return task

    # -- teardown steps (see _main) ---------------------------------------------------
    async def _cancel_tasks(self) -> None:
        if self.feed_later is not None:
            self.feed_later.cancel()
        for task in self.tasks:
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)

    async def _close_downloads(self) -> None:
        await self.bridge.close()
        service = self.service
        if service is not None:
            await service.close()
            self.ledger.downloads_ended(service.stats, service.stats.archive_errors)

    def _close_files(self) -> None:
        if self.ledger.resume is not None:
            self.ledger.resume.close(final_context=self.setup.attachment_context())
        if self.ledger.steps is not None:
            self.ledger.steps.close()
        if self.plan is not None:
            self.plan.close()
        self.conn.close()

    def _keep_boot_logs(self) -> None:
        if self.pool is not None:
            self.pool.keep_boot_logs(self.setup.worker_log)

    def _conclude(self, exc_type: type[BaseException] | None, *exc: object) -> bool:
        """Sweep, unmark and write the report: the run ended without an error."""
        if exc_type is not None:
            return False
        self.folder.leave(sweep=bool(self.cancelled) or bool(self.pool and self.pool.dirty),
                          clean=not self.internal_error)
        status = self.report.finish(
            self.ledger.total, self.ledger.done,
            None if self.internal_error or self.failed_run else self.cancelled,
            planned=not self.planning_cut)
        report_path = os.path.join(self.state_dir, "report.json")
        try:
            self.report.write(report_path)
        except OSError as exc:  # a full disk: say so, not a traceback
            sys.stderr.write(f"zexport: error: could not write the run report {report_path}:"
                             f" {exc.strerror or exc}\n")
            status = max(status, 1)
        self.exit_status = status
        return False
