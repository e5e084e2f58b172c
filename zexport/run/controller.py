"""The controller: runs one export through its phases, from a :class:`RunSpec` to a report.

One asyncio loop (``zmq.asyncio``) serves every socket, so the dispatcher,
the result reader, the per-worker control channels and the monitor never
block one another:

- **t<N>** (one PUSH per worker, bound): first the parts of the archive's
  side indexes to build (``index``, :mod:`zexport.run.indexing`), then
  batches of ``[conversation_id, folder]``, each sent only to a worker that
  asked for work (``ready``): no batch ever waits behind a busy worker.
  What is queued, sent, taken, done, split or failed, and who is to blame
  when a worker dies, is :class:`~zexport.run.batches.BatchTable`'s business.
- **results** (PULL, bound): ``ready``, ``indexed``, ``took`` and ``done``
  from every worker, recorded by :class:`~zexport.run.ledger.RunLedger`.
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
import gc
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
from zexport.core.collector import fewer_collections
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
from zexport.errors import ArchiveError, PluginError
from zexport.run.batches import BatchTable
from zexport.run.bridge import AttachmentBridge, download_service
from zexport.run.checkpoints import Cancelled
from zexport.run.control import ControlServer
from zexport.run.dispatch import Dispatcher
from zexport.run.launch import EarlyWorkers, start_worker
from zexport.run.ledger import RunLedger
from zexport.run.outfolder import OutputFolder
from zexport.run.plan import Plan
from zexport.run.planning import has_run_steps, plan_run
from zexport.run.pool import WorkerHandle, WorkerPool
from zexport.run.progress import NullProgress, ProgressSink
from zexport.run.report import RunReport
from zexport.run.setup import RunSetup
from zexport.run.signals import CancelSignals, handlers_restored
from zexport.run.steps import FormatSteps
from zexport.sources.archive import plan_parts

if TYPE_CHECKING:
    from zexport.net.service import AttachmentService

log = logging.getLogger("zexport.run.controller")


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
        self.internal_error = False  # a controller loop failed (see _loop_ended)
        self.planning_cut = False  # cancelled while planning
        self.start_failed = False  # the format's start step raised
        self.dispatch: Dispatcher | None = None
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
        index = self.dispatch.index if self.dispatch is not None else None
        workers = self.pool.snapshot(self.table.taken_by(), cast("set[int]", died),
                                     bool(self.cancelled),
                                     index.building() if index is not None else set()
                                     ) if self.pool else []
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

    @property
    def failed(self) -> str | None:
        """Why the run could not go on (workers kept dying), or None."""
        return self.dispatch.failed_run if self.dispatch is not None else None

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
        # Results, plans and frames are many short-lived acyclic objects: the cyclic
        # collector rescanned them for nothing (30 ms of the controller's 0.43 CPU-s on
        # 10,000 conversations), as it did in the workers. What was made before (imports,
        # the setup) is frozen out of its scans for good.
        gc.freeze()
        try:
            with handlers_restored(release_signals), fewer_collections():
                return asyncio.run(self._main())
        finally:
            gc.unfreeze()  # a program that runs exports in-process collects them as before

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
            results = ctx.socket(zmq.PULL)
            stack.callback(results.close, linger=0)
            results.setsockopt(zmq.LINGER, 0)
            results.setsockopt(zmq.MAXMSGSIZE, protocol.MAX_FRAME_BYTES)
            results.bind(endpoint(self.run_dir, "results"))
            self.control = ControlServer(self.run_dir, self)
            stack.callback(self.control.close)
            stack.callback(self.signals.hold)  # from here on, nothing cuts teardown short
            self.pool = WorkerPool(ctx, self.run_dir, self._start_worker, self._greeting,
                                   self.bridge.handle, self.early)
            self.dispatch = Dispatcher(self.setup, self.table, self.pool, self.ledger, results,
                                       self.finished, self._over, self._stop)
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
        assert self.dispatch is not None
        # Heartbeats from the start: workers booted for this run hear the controller
        # while it plans, however long that takes, instead of deciding it is gone.
        self._task(self.dispatch.monitor()).add_done_callback(self._loop_ended)
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
        if self.dispatch is not None and not self.internal_error:
            # Results already delivered, so none is lost (unless the results loop
            # failed: recording more would fail the same way).
            self.dispatch.drain()
        if not self.cancelled:
            failures = {f["conversation_id"]: f["reason"] for f in self.report.failures}
            shards = [shard_path(self.out, self.setup.fmt.name, b.id)
                      for b in self.table.accepted()]
            error = await steps.finish(total, failures, shards, lambda: bool(self.cancelled))
            if error:
                self.report.run_errors.append(error)

    async def _plan(self) -> None:
        """Plan in a thread while the workers build the archive's side indexes, a part
        each (:mod:`zexport.run.indexing`): the loop answers status, cancel and hello
        meanwhile."""
        loop = asyncio.get_running_loop()
        assert self.dispatch is not None
        self.dispatch.start_index(plan_parts(self.setup.db, self.setup.index_parts),
                                  self.run_dir)
        try:
            batches = await loop.run_in_executor(None, self._plan_now)
            for first, end in batches:  # here, not in the thread: the loop reads the table
                self.table.add(first, end)
        except Cancelled:
            self.planning_cut = True  # nothing to export; the report says cancelled
            self.report.notes.append("cancelled while planning: nothing was exported")
        except apsw.Error as exc:
            raise ArchiveError(f"cannot list the archive's conversations: {exc}") from None

    def _plan_now(self) -> list[tuple[int, int]]:
        """Plan the run (in a thread); the batches' plan-row ranges."""
        steps = self.ledger.steps
        assert steps is not None
        self.plan = Plan(os.path.join(self.run_dir, "plan.db"))
        planned = plan_run(
            self.setup, self.conn, self.plan, self.report, lambda: bool(self.cancelled),
            self.state_dir, steps.plan_path if has_run_steps(self.setup.fmt) else None)
        self.ledger.resume = planned.resume
        self.ledger.total, self.ledger.done = planned.total, planned.done
        return planned.batches

    async def _export(self) -> None:
        assert self.pool is not None
        if self.spec.downloads_on:
            self.service = download_service(self.setup, self.ledger.show_downloads)
            self.bridge.service, self.ledger.downloads = self.service, self.service.stats
        self.phase = Phase.EXPORTING
        self.ledger.export_started = time.time()
        self.ledger.progress.phase("exporting", self.ledger.total)
        for _ in range(min(max(1, self.spec.workers), len(self.table.batches))
                       - len(self.pool.live())):
            self.pool.spawn()
        dispatch = self.dispatch
        assert dispatch is not None
        dispatch.feed()  # workers that asked for work while we planned
        self._task(dispatch.serve()).add_done_callback(self._loop_ended)
        await self.finished.wait()
        if not self.cancelled:
            self.phase = Phase.FINISHING

    # -- workers ----------------------------------------------------------------
    def _start_worker(self, wid: int) -> subprocess.Popen[bytes]:
        return start_worker(self.run_dir, wid, self.setup.worker_log(wid), self.setup.fmt.name)

    def _greeting(self, w: WorkerHandle) -> list[bytes]:
        """``config`` for a worker that said hello, and ``cancel`` if the run is ending."""
        settings = self.setup.worker_settings(self.run_dir)
        frames = [protocol.encode(
            "config", config=settings.for_worker(self.setup.worker_log(w.id)).to_wire())]
        if self.cancelled or (self.pool is not None and self.pool.stopping):
            frames.append(protocol.encode("cancel", reason=self.cancelled or "finished"))
        return frames

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
        if self.dispatch is not None:
            self.dispatch.close()
        for task in self.tasks:
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)
        if self.dispatch is not None:
            await self.dispatch.parts_built_here()

    async def _close_downloads(self) -> None:
        await self.bridge.close()
        if self.service is not None:
            await self.service.close()
            self.ledger.downloads_ended(self.service.stats)

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
            None if self.internal_error or self.failed else self.cancelled,
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
