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
- **w<N>** (one PAIR per worker; bound when the worker is started or, for
  the workers the CLI starts early (:mod:`zexport.launch`), adopted): ``hello``
  then ``config``, heartbeats both ways, ``cancel``, attachment ``fetch``
  (answered by :class:`~zexport.attachments.service.AttachmentService`,
  each in its own task, so a slow download never stalls the channel).
- **control** (ROUTER, bound; :mod:`zexport.control`): ``status`` and
  ``cancel_request`` from ``zexport status``/``zexport cancel`` and GUIs.

Folder names are decided here, once, before any work is sent (§4), and so is
what a re-run may skip (:mod:`zexport.manifest`): skipped conversations are
never sent to a worker. Cancel (``zexport cancel``, Ctrl-C, SIGTERM) goes
through one path, :meth:`Controller.request_cancel`.
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
from typing import TYPE_CHECKING, Any, cast

import apsw
import zmq
import zmq.asyncio

from . import __version__, protocol
from .archive import (
    MESSAGE_INDEX,
    ConversationHead,
    Selection,
    build_attachment_index,
    build_message_index,
    list_conversations,
    open_archive,
    unaddressable_conversations,
)
from .attachments.auth import auth_file_warning, load_auth
from .attachments.cache import AttachmentCache
from .attachments.options import DownloadOptions
from .attachments.sources import AttachmentSources
from .control import ControlServer
from .dryrun import DryRun
from .errors import ArchiveError, OutputError, ProtocolError, UsageError
from .formats.base import Format
from .launch import EarlyWorkers, start_worker
from .layout import MANIFEST_NAME, STATE_DIR, renders_everything
from .locations import cache_dir
from .lock import OutputLock
from .manifest import (
    RENDER_AGAIN,
    Resume,
    options_fingerprint,
    source_fingerprint,
    tz_identity,
)
from .output import UnsafePathError, ensure_dir, open_append, sweep_temporaries
from .plan import Plan
from .plugins import load_registry
from .progress import NullProgress, ProgressSink
from .report import RunReport
from .runfiles import PlanWriter, shard_path
from .runsteps import FormatSteps
from .runtime import (
    endpoint,
    list_runs,
    new_run_dir,
    register_run,
    remove_run_dir,
    sweep_orphan_run_dirs,
    unregister_run,
)
from .timezones import resolve_tz

if TYPE_CHECKING:
    from .attachments.service import AttachmentService, Stats

log = logging.getLogger("zexport.controller")

# Download progress is shown at most this often (seconds), and once at the end.
DOWNLOAD_PROGRESS_EVERY = 0.1
# Answers per fetched_many frame: far below the frame size limit with long paths.
FETCHED_PER_FRAME = 2000


def _env_seconds(name: str, default: float) -> float:
    """A positive number of seconds from the environment (test and tuning knobs)."""
    try:
        value = float(os.environ.get(name, ""))
    except ValueError:
        return default
    return value if value > 0 else default


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
    date_prefix: bool = True  # folder names start with the creation day
    attachments: str = "copy"
    attachment_roots: tuple[str, ...] = ()  # --attachment-root: more folders to copy from
    batch_size: int | None = None
    # ZEXPORT_HB_INTERVAL / ZEXPORT_HB_TIMEOUT: tests shorten them to provoke faults fast.
    hb_interval: float = field(default_factory=lambda: _env_seconds("ZEXPORT_HB_INTERVAL", 0.5))
    hb_timeout: float = field(default_factory=lambda: _env_seconds("ZEXPORT_HB_TIMEOUT", 10.0))
    force: bool = False
    render_timeout: float = 60.0  # per conversation, in the worker; 0 = none
    downloads: DownloadOptions = field(default_factory=DownloadOptions)

    def public(self) -> dict[str, Any]:
        """The options as recorded in the report (no secrets live here)."""
        sel = self.selection
        return {
            "db": self.db, "out": self.out, "format": self.format,
            "format_options": self.format_options, "workers": self.workers,
            "providers": list(sel.providers), "since": sel.since, "until": sel.until,
            "ids": list(sel.ids), "title": sel.title, "branches": self.branches, "tz": self.tz,
            "date_prefix": self.date_prefix, "attachments": self.attachments,
            "attachment_roots": list(self.attachment_roots),
            "render_timeout": self.render_timeout, **self.downloads.public(),
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
    start: int = 0  # export-order position of items[0]: record shards are merged by it
    accepted: bool = False  # done by a worker (not failed or split): its shard counts
    stop: int = 0  # items are plan positions [start, stop), read when first dispatched
    loaded: bool = True  # False until items (and sources) are read from the plan
    sources: dict[str, str | None] = field(default_factory=dict)


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
    conversations: int = 0
    outbox: list[dict[str, Any]] = field(default_factory=list)  # fetched_many items


class Controller:
    """Runs one export; :meth:`run` returns the process exit status."""

    def __init__(self, opts: RunOptions, progress: ProgressSink | None = None,
                 say: Callable[[str], None] | None = None,
                 early: EarlyWorkers | None = None) -> None:
        self.opts = opts
        self.early = early  # workers the CLI started while we were imported (zexport.launch)
        self.progress = progress or NullProgress()
        self.say = say or (lambda text: None)
        registry = load_registry()
        self.fmt = registry.get_format(opts.format)
        self.plugin = registry.format_plugin[self.fmt.name].label
        self.providers = registry.providers
        # Credentials are read here, in the controller, and stay here (never in _config).
        self.credentials = load_auth(opts.downloads.auth_file)
        self.auth_warning = auth_file_warning(opts.downloads.auth_file)
        self.attachments: AttachmentService | None = None  # started only if downloads are on
        self.fetch_tasks: set[asyncio.Task[None]] = set()
        self.attachments_unreadable = False  # the side index could not be built
        self._refused: dict[str, str] | None = None  # see _refused_providers()
        self.download_shown = 0.0  # when download progress was last shown
        self.download_pending = False  # counts changed since
        self.format_options = self.fmt.parse_options(opts.format_options)
        self.tz = resolve_tz(opts.tz)
        self.started = time.time()
        self.exported_at = datetime.fromtimestamp(int(self.started), self.tz).isoformat()
        # Validate the archive before anything is created on disk.
        self.conn = open_archive(opts.db)
        if not opts.out.strip():
            raise UsageError("--out is empty (an unset variable?); give the output folder")
        self.out = os.path.abspath(opts.out)
        if os.path.exists(self.out) and not os.path.isdir(self.out):
            raise OutputError(f"output path exists and is not a folder: {opts.out}")
        if os.path.islink(self.out):
            raise OutputError(f"output path is a symlink; give the real folder: {opts.out}")
        parent = os.path.dirname(self.out)
        if not os.path.isdir(parent):
            raise OutputError(f"parent folder of the output does not exist: {parent}")
        self.report = RunReport(options=opts.public(), started=self.started)
        if self.auth_warning:  # on stderr even with -q: a credential is exposed
            sys.stderr.write(f"zexport: warning: {self.auth_warning}\n")
            self.report.notes.append(self.auth_warning)
        self.batches: list[Batch] = []
        self.active: dict[int, Batch] = {}  # batches sent or taken, by id
        self.queue: collections.deque[Batch] = collections.deque()
        self.workers: dict[int, WorkerHandle] = {}
        self.next_worker_id = 0
        self.replacements = 0
        self.cancelled: str | None = None
        self.internal_error = False  # a controller loop failed (see _loop_ended)
        self.hard_stop = False
        self.stopping = False
        self.dirty = False  # a worker was SIGKILLed: temporaries may be left to sweep
        self.done_batches = 0
        self.done_conversations = 0
        self.total = 0
        self.wake = asyncio.Event()
        self.finished = asyncio.Event()
        self.run_id = ""
        self.run_dir = ""
        self.phase = "starting"
        self.export_started = 0.0
        self.state_dir = os.path.join(self.out, STATE_DIR)
        self.lock = OutputLock(self.state_dir)
        self.resume: Resume | None = None
        self.control: ControlServer | None = None
        # Cancel hooks: callables run once when cancel starts, and tasks it cancels
        # (the attachment downloader registers its in-flight downloads here).
        self.on_cancel: list[Callable[[], None]] = []
        self.cancel_scope: set[asyncio.Future[Any]] = set()

    # -- setup --------------------------------------------------------------
    def _prepare_output(self) -> None:
        try:
            os.makedirs(self.out, exist_ok=True)
            ensure_dir(self.state_dir)
            # Lock before sweeping: another run's temporaries are files in flight.
            self.lock.acquire(self.out)
            self.report.spool_to(self.state_dir)
        except (OSError, UnsafePathError) as exc:  # read-only, no permission, not a folder
            self.lock.release()
            reason = str(exc)
            if isinstance(exc, OSError) and exc.strerror:
                reason = exc.strerror + (f" ({exc.filename})" if exc.filename else "")
            raise OutputError(
                f"cannot write to the output folder {self.opts.out}: {reason}") from None
        swept = sweep_temporaries(self.out)
        if swept:
            self.report.notes.append(f"removed {swept} temporary files left by an earlier run")

    def _options_fingerprint(self) -> str:
        return options_fingerprint({
            "format": self.fmt.name, "format_version": self.fmt.version,
            "format_options": self.format_options, "branches": self.opts.branches,
            "tz": [self.opts.tz, tz_identity(self.tz)], "attachments": self.opts.attachments,
        })

    def _plan(self, dry_run: bool = False, state_dir: str | None = None) -> None:
        """List and name every selected conversation, write the plan for start/finish,
        decide what a re-run may skip, and cut the rest into batches.

        Everything per conversation lives in the on-disk :class:`Plan`; what
        stays in memory is one small :class:`Batch` per batch. ``dry_run``
        writes no plan file for start/finish and moves no folder; the
        manifest is read from ``state_dir`` (a copy, for a dry run).
        """
        plan = self.plan = Plan(os.path.join(self.run_dir, "plan.db"))
        # ZEXPORT_TEST_PLAN_DELAY (seconds, test-only): a plan as slow as a huge archive's.
        delay = _env_seconds("ZEXPORT_TEST_PLAN_DELAY", 0.0)
        if delay:
            time.sleep(delay)
        rejected: list[tuple[str, str]] = []  # ids that are not valid UTF-8
        self.total = plan.add(list_conversations(self.conn, self.opts.selection, rejected),
                              self.tz, fingerprint=_source_fingerprint,
                              dated=self.opts.date_prefix)
        plan.assign_folders(self.fmt.reserved_names)
        if _has_run_steps(self.fmt) and not dry_run:  # only start/finish read it
            writer = PlanWriter(self.steps.plan_path)
            try:
                for cid, title, provider, created, updated, count, folder, _ in plan.rows():
                    writer.add(cid, title, provider, created, updated, count, folder)
            finally:
                writer.close()
        # A format that gathers records for one whole-export file needs every
        # conversation rendered each run: skipping would leave holes in it.
        force = self.opts.force or not self.fmt.files_per_conversation
        self.resume = Resume(
            state_dir or self.state_dir, self.out, self.fmt.extension, self._options_fingerprint(),
            f"zexport {__version__}; {self.fmt.name} {self.fmt.version}", force)
        self.report.notes.extend(self.resume.manifest.notes)
        self.resume.select(plan, dry_run=dry_run)
        todo = plan.todo
        self.report.skipped = self.total - todo
        self.done_conversations = self.report.skipped
        # Rows whose id is NULL, a BLOB or not UTF-8: selected, never exportable (nothing
        # can address them), each a failure in the report instead of a stopped run.
        rejected += unaddressable_conversations(self.conn, self.opts.selection)
        for quoted, title in rejected:
            self.report.failure(quoted, "", f"the conversation row's id ({quoted}) is not"
                                f" UTF-8 text: it cannot be exported (title {title!r})")
        self.total += len(rejected)
        self.done_conversations += len(rejected)
        if self.resume.moved:
            self.report.notes.append(
                f"moved {self.resume.moved} folders of conversations whose title changed")
        workers = max(1, self.opts.workers)
        size = self.opts.batch_size or max(1, min(64, todo // (workers * 8) or 1))
        for start in range(0, todo, size):
            batch = Batch(len(self.batches), [], start=start, stop=min(todo, start + size),
                          loaded=False)
            self.batches.append(batch)
            self.queue.append(batch)

    def _load(self, batch: Batch) -> None:
        """Read a batch's conversations from the plan when it is first needed."""
        if not batch.loaded:
            rows = self.plan.items(batch.start, batch.stop)
            batch.items = [(cid, folder) for cid, folder, _ in rows]
            batch.sources = {cid: source for cid, _, source in rows}
            batch.loaded = True

    def _config(self) -> dict[str, Any]:
        return {
            "db": os.path.abspath(self.opts.db), "out": self.out,
            "format": self.fmt.name, "format_options": self.opts.format_options,
            "tz": self.opts.tz, "branches": self.opts.branches,
            "exported_at": self.exported_at, "attachments": self.opts.attachments,
            "attachment_index": None if self.attachments_unreadable
            else os.path.join(self.run_dir, "attachments.db"),
            # Early workers get this before the run folder has it: it appears (renamed
            # into place) before their first batch, or never (then they read by column).
            "message_index": os.path.join(self.run_dir, MESSAGE_INDEX),
            "downloads": self._downloads_on(),
            **self._sources_config(),
            "refused_providers": self._refused_providers(),
            "render_timeout": self.opts.render_timeout,
            "hb_interval": self.opts.hb_interval, "hb_timeout": self.opts.hb_timeout / 2,
            "controller_pid": os.getpid(),
        }

    async def _index_messages(self, building: asyncio.Future[bool]) -> None:
        """Wait for the message index; without one, workers read by ``conversation_id``
        (right, but a scan of the messages table per batch), and the report says so."""
        try:
            await building
        except (apsw.Error, ArchiveError, OSError) as exc:
            self.report.notes.append(
                f"the message index could not be built ({exc}); messages were read by"
                " conversation, which is slow on an archive without its own index")

    def _downloads_on(self) -> bool:
        return self.opts.attachments != "off" and self.opts.downloads.enabled

    def _attachment_sources(self) -> AttachmentSources:
        """The folders attachment files may be copied from, for this run's archive."""
        return AttachmentSources.for_archive(
            self._archive_dir(), self._attachment_cache().root, self.opts.attachment_roots)

    def _sources_config(self) -> dict[str, Any]:
        """The same, as config keys for the workers."""
        sources = self._attachment_sources()
        return {"attachment_roots": list(sources.roots),
                "app_attachments": list(sources.app_dirs), "attachment_cache": sources.cache}

    def _archive_dir(self) -> str:
        return os.path.dirname(os.path.abspath(self.opts.db))

    def _attachment_cache(self) -> AttachmentCache:
        dl = self.opts.downloads
        return AttachmentCache(dl.cache_dir or os.path.join(cache_dir(), "attachments"))

    def _refused_providers(self) -> dict[str, str]:
        """Providers whose downloads workers refuse themselves (computed once per run)."""
        if self._refused is None:
            self._refused = {}
            if self._downloads_on():
                from .attachments.service import refused_providers

                self._refused = refused_providers(self.providers, self.credentials,
                                                  self._attachment_cache())
        return self._refused

    def _worker_config(self, wid: int) -> dict[str, Any]:
        return {**self._config(), "log": self._worker_log(wid)}

    # -- workers ------------------------------------------------------------
    def _spawn(self) -> WorkerHandle:
        wid = self.next_worker_id
        self.next_worker_id += 1
        control = self.ctx.socket(zmq.PAIR)
        control.setsockopt(zmq.LINGER, 0)
        control.setsockopt(zmq.MAXMSGSIZE, protocol.MAX_FRAME_BYTES)
        control.bind(endpoint(self.run_dir, f"w{wid}"))
        # A worker started early is adopted as it is, even one that already died
        # (the monitor then treats it as any dead worker: reported, replaced).
        proc = self.early.take(wid) if self.early is not None else None
        if proc is None:
            proc = start_worker(self.run_dir, wid, self._worker_log(wid), self.fmt.name)
        handle = WorkerHandle(wid, proc, control, time.monotonic())
        handle.reader = asyncio.ensure_future(self._control_loop(handle))
        self.workers[wid] = handle
        return handle

    def _worker_log(self, wid: int) -> str:
        return os.path.join(self.out, STATE_DIR, f"worker-{wid}.log")

    def _keep_boot_logs(self) -> None:
        """Append what early workers wrote before their ``config`` to their logs."""
        if self.early is None:
            return
        for wid in self.workers:
            boot = self.early.boot_log(wid)
            try:
                with open(boot, "rb") as fh:
                    text = fh.read()
                if text:
                    # Never through a link planted at the log's name.
                    with os.fdopen(open_append(self._worker_log(wid)), "ab") as log_file:
                        log_file.write(b"[while starting]\n" + text)
            except (OSError, UnsafePathError):
                continue

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
                await w.control.send(protocol.encode("config", config=self._worker_config(w.id)))
                if self.cancelled or self.stopping:
                    reason = self.cancelled or "finished"
                    await w.control.send(protocol.encode("cancel", reason=reason))
                self.wake.set()
            elif kind == "fetch":
                await self.handle_fetch(w, msg)
            elif kind == "fetch_many":
                self.handle_fetch_many(w, msg)
            elif kind == "timed_out":
                self._timed_out(w, msg)
            elif kind == "bye":
                w.greeted = False

    async def handle_fetch(self, w: WorkerHandle, msg: dict[str, Any]) -> None:
        """Start answering a worker's attachment request; return at once."""
        self._start_fetch(w, msg, batched=False)

    def handle_fetch_many(self, w: WorkerHandle, msg: dict[str, Any]) -> None:
        """Start answering every request of a ``fetch_many`` frame; return at once.

        Malformed items are dropped (and logged) one by one, like bad frames.
        """
        for item in msg["items"]:
            if (isinstance(item, dict) and type(item.get("req")) is int
                    and isinstance(item.get("conversation_id"), str)
                    and isinstance(item.get("attachment"), dict)):
                self._start_fetch(w, item, batched=True)
            else:
                log.warning("worker %d: dropped a malformed fetch_many item", w.id)

    def _start_fetch(self, w: WorkerHandle, msg: dict[str, Any], batched: bool) -> None:
        if batched and self.attachments is not None and not self.cancelled:
            provider = msg["attachment"].get("provider")
            if isinstance(provider, str):
                try:
                    known = self.attachments.fetch_now(provider, msg["attachment"])
                except Exception:  # e.g. an unreadable cache folder: the slow path reports it
                    log.debug("fetch_now failed", exc_info=True)
                    known = None
                if known is not None:  # no waiting needed: straight into the outbox
                    self._queue_answer(w, {"req": msg["req"], **known.wire()})
                    return
        task = asyncio.ensure_future(self._answer_fetch(w, msg, batched))
        self.fetch_tasks.add(task)
        task.add_done_callback(self.fetch_tasks.discard)

    async def _answer_fetch(self, w: WorkerHandle, msg: dict[str, Any], batched: bool) -> None:
        """Download (or find in the cache) one attachment and answer it: ``fetched``,
        or an item of the next ``fetched_many`` for requests that came batched."""
        att = msg["attachment"]
        provider = att.get("provider")
        if self.attachments is None or self.cancelled or not isinstance(provider, str):
            fields: dict[str, Any] = {"path": None, "error": "downloads are not available"}
        else:
            fields = (await self.attachments.fetch(provider, att)).wire()
        if not w.alive or w.control.closed:
            return
        if not batched:
            await w.control.send(protocol.encode("fetched", req=msg["req"], **fields))
            return
        self._queue_answer(w, {"req": msg["req"], **fields})

    def _queue_answer(self, w: WorkerHandle, answer: dict[str, Any]) -> None:
        """Answers that are ready in the same turn of the loop (cache hits, known
        failures: most of them) leave in one ``fetched_many``; a download that
        finishes later leaves in its own."""
        if not w.alive or w.control.closed:
            return
        if not w.outbox:
            asyncio.get_running_loop().call_soon(self._send_answers, w)
        w.outbox.append(answer)

    def _send_answers(self, w: WorkerHandle) -> None:
        items, w.outbox = w.outbox, []
        if items and w.alive and not w.control.closed:
            task = asyncio.ensure_future(self._send_answer_frames(w, items))
            self.fetch_tasks.add(task)
            task.add_done_callback(self.fetch_tasks.discard)

    async def _send_answer_frames(self, w: WorkerHandle, items: list[dict[str, Any]]) -> None:
        for start in range(0, len(items), FETCHED_PER_FRAME):
            if not w.alive or w.control.closed:
                return
            await w.control.send(protocol.encode(
                "fetched_many", items=items[start:start + FETCHED_PER_FRAME]))

    def _download_progress(self, stats: Stats, final: bool = False) -> None:
        """Show download counts at most every DOWNLOAD_PROGRESS_EVERY seconds (and once
        at the end): the sample's thousands of instant failures made a JSON line each."""
        now = time.monotonic()
        if not final and now - self.download_shown < DOWNLOAD_PROGRESS_EVERY:
            self.download_pending = True
            return
        self.download_shown, self.download_pending = now, False
        done = stats.downloaded + stats.cached + stats.failed
        self.progress.update("downloading", done, stats.requested, "", {
            "done": stats.downloaded + stats.cached, "failed": stats.failed,
            "bytes": stats.bytes, "cached": stats.cached})

    def _start_attachments(self) -> None:
        """The download service, inside the running loop (httpx shares it with zmq)."""
        if not self._downloads_on():
            return
        dl = self.opts.downloads
        from .attachments.service import AttachmentService

        self.attachments = AttachmentService(
            self.providers, self.credentials, self._attachment_cache(), dl.limits(),
            archive=os.path.abspath(self.opts.db) if dl.update_archive else None,
            on_change=self._download_progress)

    def _timed_out(self, w: WorkerHandle, msg: dict[str, Any]) -> None:
        """A plugin hung on one conversation: fail it, redo the rest of its batch elsewhere.

        The batch goes back to the queue without that conversation and
        without counting an attempt (the batch is not to blame), and the
        worker is killed and replaced: a plugin stuck once may have left
        its process in any state.
        """
        if not 0 <= msg["batch"] < len(self.batches):
            return
        batch = self.batches[msg["batch"]]
        cid = msg["conversation_id"]
        if batch.state != "taken" or batch.worker != w.id:
            return
        for i, (item_id, folder) in enumerate(batch.items):
            if item_id == cid:
                del batch.items[i]
                if i == 0:
                    batch.start += 1
                else:  # keep every batch a contiguous run of the export order
                    tail = Batch(len(self.batches), batch.items[i:], start=batch.start + i,
                                 sources=batch.sources)
                    del batch.items[i:]
                    self.batches.append(tail)
                    self.queue.appendleft(tail)
                self.report.failure(cid, folder, (
                    f"format {self.fmt.name!r} of {self.plugin} timed out after "
                    f"{self.opts.render_timeout:g}s on this conversation "
                    "(--render-timeout); its worker was replaced"))
                self.done_conversations += 1
                break
        batch.worker = None
        if batch.items:
            self._set_state(batch, "queued")
            self.queue.appendleft(batch)
        else:
            self._set_state(batch, "done")
            self.done_batches += 1
            self._check_finished()
        self._declare_dead(w, f"timed out rendering conversation {cid}")

    def _declare_dead(self, w: WorkerHandle, why: str) -> None:
        """Stop trusting a worker: kill it, requeue its work, maybe replace it."""
        if not w.alive:
            return
        w.alive = False
        if w.proc.poll() is None:
            w.proc.kill()
        self.dirty = True
        if w.reader is not None:
            w.reader.cancel()
        w.control.close(linger=0)
        if self.cancelled or self.finished.is_set():
            return  # leaving workers are not deaths (the monitor runs until the very end)
        self.report.worker_deaths.append({"worker": w.id, "reason": why})
        for batch in list(self.active.values()):
            # A "sent" batch may sit in the dead worker's pipe, or in a live one's; PUSH
            # does not say which. Requeue it: at worst a live worker renders it twice
            # (same bytes, atomically; only the first "done" counts).
            lost = (batch.state == "taken" and batch.worker == w.id) or batch.state == "sent"
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
            self._set_state(batch, "done")  # replaced by single-conversation batches
            self.done_batches += 1
            for i, item in enumerate(batch.items):
                single = Batch(len(self.batches), [item], attempts=1, start=batch.start + i,
                               sources=batch.sources)
                self.batches.append(single)
                self.queue.append(single)
        elif batch.attempts >= 3:
            self._fail_batch(batch, f"{why} while exporting it, {batch.attempts} times")
        else:
            self._set_state(batch, "queued")
            self.queue.appendleft(batch)

    def _set_state(self, batch: Batch, state: str) -> None:
        """Move a batch on, keeping :attr:`active` (sent or taken) in step."""
        batch.state = state
        if state in ("sent", "taken"):
            self.active[batch.id] = batch
        else:
            self.active.pop(batch.id, None)

    def _fail_batch(self, batch: Batch, reason: str) -> None:
        self._load(batch)
        self._set_state(batch, "done")
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
            in_flight = len(self.active)  # a counter: this runs once per batch
            if self.queue and in_flight < window and any(
                    w.greeted for w in self.live_workers()):
                batch = self.queue.popleft()
                if batch.state != "queued":
                    continue
                self._load(batch)
                frame = protocol.encode(
                    "batch", batch=batch.id, items=[list(i) for i in batch.items])
                await self.tasks.send(frame)
                self._set_state(batch, "sent")
                batch.sent_at = time.monotonic()
                continue
            self.wake.clear()
            await wait_event(self.wake, 0.25)

    async def _results(self) -> None:
        """Read ``took``/``done`` frames from every worker."""
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
        if msg["t"] not in ("took", "done"):
            log.warning("dropped a %r frame on the results socket", msg["t"])
            return
        w = self.workers.get(msg["w"])
        if w is None or not w.alive or not 0 <= msg["batch"] < len(self.batches):
            return  # a dead (or unknown) worker's word no longer counts
        w.last_heard = time.monotonic()
        batch = self.batches[msg["batch"]]
        if batch.state == "done" or (batch.worker not in (None, w.id)):
            return  # late or duplicate answer about a batch handed to another worker
        if msg["t"] == "took":
            self._set_state(batch, "taken")
            batch.worker = w.id
        elif msg["t"] == "done":
            self._set_state(batch, "done")
            batch.accepted = True
            self.done_batches += 1
            w.conversations += len(msg["results"])
            self._record(batch, msg["results"])
            self.wake.set()

    def _record(self, batch: Batch, results: list[Any]) -> None:
        folders = dict(batch.items)
        title = ""
        for res in results:
            if not isinstance(res, dict):
                continue
            cid = str(res.get("id"))
            if cid not in folders:
                continue
            folder = folders[cid]
            self.report.outcome(cid, folder, res)
            self.done_conversations += 1
            title = str(res.get("title") or title)
            # A conversation with a missing attachment is not finished: a re-run renders it
            # (and retries the download) again. Its folder is still recorded, so that a
            # title change moves it instead of leaving it behind.
            if res.get("ok") and self.resume is not None:
                source = batch.sources.get(cid)
                if res.get("attachments_failed") and source is not None:
                    source = RENDER_AGAIN
                self.resume.done(cid, folder, source)
        if self.resume is not None:
            self.resume.flush_due()
        batch.items, batch.sources = [], {}  # done: only the small Batch stays in memory
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
            # A batch sent into a pipe nobody reads any more (a worker that died before
            # libzmq noticed) is lost. It can only be waiting in a live worker's pipe while
            # that worker is busy; when no worker is busy it is surely lost after a moment.
            busy = {b.worker for b in self.active.values() if b.state == "taken"}
            nobody_busy = not any(w.id in busy for w in self.live_workers())
            lost_after = max(1.0, 4 * self.opts.hb_interval) if nobody_busy else (
                self.opts.hb_timeout)
            for batch in list(self.active.values()):
                if batch.state == "sent" and now - batch.sent_at > lost_after:
                    self._requeue(batch, "batch never taken")
                    self.wake.set()
            await asyncio.sleep(self.opts.hb_interval / 2)

    def _loop_ended(self, task: asyncio.Task[None]) -> None:
        """A controller loop (dispatch, results, monitor) must not die quietly: the run
        would wait forever. Stop the run instead, and say why in the report."""
        if task.cancelled() or task.exception() is None:
            return
        exc = task.exception()
        log.debug("controller loop failed", exc_info=exc)
        self.report.run_errors.append(
            f"the controller stopped the run: {type(exc).__name__}: {exc}")
        self.internal_error = True
        self.cancel("internal error")

    # -- cancel / shutdown ----------------------------------------------------
    def request_cancel(self, reason: str = "cancelled") -> tuple[str, bool]:
        """The one way in for cancel (control endpoint, Ctrl-C, SIGTERM).

        Returns ``(state, already)``: a repeated cancel is answered with the
        state of the one under way instead of being an error.
        """
        if self.cancelled:
            return "cancelling", True
        if self.finished.is_set():
            return "finishing", True  # every conversation is done; nothing left to stop
        self.cancel(reason)
        return "cancelling", False

    def cancel(self, reason: str = "cancelled") -> None:
        """Stop dispatching, tell every worker to stop, abort what is in flight."""
        if self.cancelled:
            return
        self.cancelled = reason
        self.phase = "cancelling"
        for w in self.live_workers():
            _send_nowait(w.control, protocol.encode("cancel", reason=reason))
        for task in list(self.fetch_tasks):  # abort downloads in flight
            task.cancel()
        for hook in list(self.on_cancel):
            try:
                hook()
            except Exception:  # one failing hook must not stop the others
                log.exception("cancel hook failed")
        for fut in list(self.cancel_scope):
            fut.cancel()
        self.finished.set()

    def _on_sigint(self) -> None:
        if self.cancelled or self.finished.is_set():
            if not self.hard_stop:
                self.hard_stop = True
                self.say("Stopping hard...")
                for w in self.workers.values():
                    if w.proc.poll() is None:
                        w.proc.terminate()
            return
        self.say("Cancelling (Ctrl-C again to stop hard)...")
        self.request_cancel("interrupted")

    async def _wait_workers(self, seconds: float, yield_to_hard_stop: bool = False) -> None:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline and any(
                w.proc.poll() is None for w in self.workers.values()):
            if yield_to_hard_stop and self.hard_stop:
                return
            await asyncio.sleep(0.01)

    async def _stop_workers(self, grace: float) -> None:
        """Ask workers to leave; then SIGTERM, which aborts even a long conversation
        cleanly (the worker removes its temporary file); then SIGKILL."""
        self.stopping = True
        reason = self.cancelled or "finished"
        for w in self.live_workers():
            _send_nowait(w.control, protocol.encode("cancel", reason=reason))
        await self._wait_workers(grace, yield_to_hard_stop=True)
        for w in self.workers.values():
            if w.proc.poll() is None:
                w.proc.terminate()
        await self._wait_workers(0.5 if self.hard_stop else 1.0)
        for w in self.workers.values():
            if w.proc.poll() is None:
                w.proc.kill()
                self.dirty = True
            w.proc.wait()
            if w.reader is not None:
                w.reader.cancel()
            if not w.control.closed:
                w.control.close(linger=0)

    async def _finish_step(self) -> None:
        """Call the format's finish with the run's outcome; a failure fails the run partly."""
        failures = {f["conversation_id"]: f["reason"] for f in self.report.failures}
        accepted = sorted((b for b in self.batches if b.accepted), key=lambda b: b.start)
        shards = [shard_path(self.out, self.fmt.name, b.id) for b in accepted]
        error = await self.steps.finish(self.total, failures, shards, lambda: bool(
            self.cancelled))
        if error:
            self.report.run_errors.append(error)

    # -- dry run ------------------------------------------------------------------
    def dry_run(self) -> DryRun:
        """Plan the export and say what it would do: no output, no lock, no worker.

        The plan, a copy of the output folder's manifest (for what a re-run
        would skip) and the attachment index live in a temporary folder that
        is removed before returning.
        """
        import shutil
        import tempfile

        with tempfile.TemporaryDirectory(prefix="zexport-dry-run-") as tmp:
            self.run_dir = tmp
            state = os.path.join(tmp, "state")
            os.mkdir(state)
            for suffix in ("", "-wal"):
                src = os.path.join(self.state_dir, MANIFEST_NAME + suffix)
                if os.path.isfile(src) and not os.path.islink(src):
                    shutil.copyfile(src, os.path.join(state, MANIFEST_NAME + suffix))
            try:
                self._plan(dry_run=True, state_dir=state)
                assert self.resume is not None
                summary = DryRun(
                    out=self.out, selected=self.total, render=self.plan.todo,
                    unchanged=self.plan.total - self.plan.todo, moved=self.resume.moved,
                    suffixed=self.plan.suffixed(), unexportable=self.total - self.plan.total)
                if self.opts.attachments != "off":
                    index = os.path.join(tmp, "attachments.db")
                    build_attachment_index(self.opts.db, index)
                    summary.count_attachments(
                        self.plan, index, self._attachment_sources(),
                        self.opts.downloads.enabled, refused=self._refused_providers())
            except apsw.Error as exc:
                raise ArchiveError(f"cannot plan the export: {exc}") from None
            finally:
                if self.resume is not None:
                    self.resume.manifest.close()
                plan: Plan | None = getattr(self, "plan", None)
                if plan is not None:
                    plan.close()
                self.conn.close()
        return summary

    # -- main -------------------------------------------------------------------
    def run(self, release_signals: bool = True) -> int:
        """Run the export to the end (or to a cancel); return the exit status.

        Ctrl-C and SIGTERM are held from the close-down on (see :meth:`_hold_signals`)
        and given back their previous handlers on return, unless ``release_signals``
        is False: the CLI, which only prints the summary and exits after this, passes
        False so that a late Ctrl-C cannot replace the exit status with death by SIGINT.
        """
        saved = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
        try:
            return asyncio.run(self._main())
        finally:
            if release_signals:
                for sig, handler in saved.items():
                    signal.signal(sig, handler)

    def _hold_signals(self, loop: asyncio.AbstractEventLoop) -> None:
        """From the close-down to the end of :meth:`run`, Ctrl-C and SIGTERM change nothing.

        Why: by then the workers are stopped and what is left (closing sockets,
        removing the run folder, sweeping temporaries, writing the report,
        unregistering) must not be cut short. Removing the loop's handlers
        alone would put back Python's default one, and a Ctrl-C pressed a
        moment after the first (users press it repeatedly) raised
        KeyboardInterrupt there: "Aborted!", exit status 1 or death by SIGINT,
        no report, and the run folder left in the runtime directory for good.
        """
        held = {signal.SIGINT, signal.SIGTERM}
        # Blocked meanwhile: remove_signal_handler puts Python's default handler back
        # for a moment. SIG_IGN, not a Python function: the interpreter puts SIG_DFL
        # back in place of Python handlers while it shuts down, and SIGINT would kill it.
        signal.pthread_sigmask(signal.SIG_BLOCK, held)
        try:
            for sig in held:
                loop.remove_signal_handler(sig)
                signal.signal(sig, signal.SIG_IGN)
        finally:
            signal.pthread_sigmask(signal.SIG_UNBLOCK, held)

    async def _main(self) -> int:
        # Ctrl-C and SIGTERM mean cancel from the start: before the run folder exists
        # asyncio's own handler would cancel this task, leak the folder and exit 1.
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGINT, self._on_sigint)
        loop.add_signal_handler(signal.SIGTERM, self._on_sigint)
        self._prepare_output()  # takes the output lock, or refuses
        try:
            return await self._run_locked()
        finally:
            if self.run_id:
                unregister_run(self.run_id)  # last: `zexport cancel` waits for this
            self.lock.release()

    def _registration(self) -> dict[str, Any]:
        assert self.control is not None
        return {
            "protocol": protocol.VERSION, "pid": os.getpid(), "control": self.control.endpoint,
            "out": self.out, "db": os.path.abspath(self.opts.db), "format": self.fmt.name,
            "workers": self.opts.workers, "started_at": self.started,
            "zexport": __version__,
        }

    async def _run_locked(self) -> int:
        self.run_id, self.run_dir = (self.early.adopt() if self.early is not None
                                     else new_run_dir())
        self.steps = FormatSteps(
            self.fmt, self.format_options, self.plugin, self.out, self.tz, self.opts.branches,
            self.exported_at, os.path.join(self.run_dir, "plan.jsonl"))
        self.lock.note(self.run_id)
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
        self.control = ControlServer(self.ctx, self.run_dir, self)
        list_runs()  # sweeps registrations left by controllers that were killed
        sweep_orphan_run_dirs()  # and run folders of runs killed before registering
        register_run(self.run_id, self._registration())
        loop = asyncio.get_running_loop()
        tasks: list[asyncio.Task[None]] = [asyncio.ensure_future(self.control.serve())]
        try:
            self.phase = "counting"
            if renders_everything(self.out, self.opts.force):
                # Everything will be rendered: worker interpreters boot while we plan.
                for _ in range(max(1, self.opts.workers)):
                    self._spawn()
            self.progress.phase("counting", 0)
            # The attachment index is built in a thread while this one plans (SQLite
            # runs without the GIL); workers get their first batch once both are done.
            indexing = loop.run_in_executor(
                None, build_attachment_index, self.opts.db,
                os.path.join(self.run_dir, "attachments.db"))
            indexing_messages = loop.run_in_executor(
                None, build_message_index, self.opts.db,
                os.path.join(self.run_dir, MESSAGE_INDEX))
            try:
                # In a thread too: at 100,000 conversations planning takes seconds, and
                # the loop must answer status, cancel and workers' hello meanwhile.
                await loop.run_in_executor(None, self._plan)
            except apsw.Error as exc:
                raise ArchiveError(f"cannot list the archive's conversations: {exc}") from None
            finally:
                try:
                    await indexing
                except apsw.Error as exc:  # unreadable attachments must not stop the export
                    # ... but they are missing from it: the run is partial, not "ok".
                    self.attachments_unreadable = True
                    self.report.run_errors.append(
                        f"the archive's attachments could not be read ({exc}); conversations"
                        " were exported without their attachment files")
                await self._index_messages(indexing_messages)
            self.progress.update("counting", self.total, self.total, "", {})
            self.conn.close()
            self.steps.start(self.total)
            await asyncio.sleep(0)  # let control requests that arrived meanwhile in
            if self.batches and not self.cancelled:
                self._start_attachments()
                self.phase = "exporting"
                self.export_started = time.time()
                self.progress.phase("exporting", self.total)
                for _ in range(min(max(1, self.opts.workers), len(self.batches))
                               - len(self.live_workers())):
                    self._spawn()
                loops = [asyncio.ensure_future(c) for c in
                         (self._dispatch(), self._results(), self._monitor())]
                for loop_task in loops:
                    loop_task.add_done_callback(self._loop_ended)
                tasks += loops
                await self.finished.wait()
                if not self.cancelled:
                    self.phase = "finishing"
            await self._stop_workers(grace=0.25 if self.cancelled else 2.0)
            self._drain_results()
            if not self.cancelled:
                await self._finish_step()
        finally:
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            for t in list(self.fetch_tasks):
                t.cancel()
            await asyncio.gather(*self.fetch_tasks, return_exceptions=True)
            if self.attachments is not None:
                await self.attachments.close()
                if self.download_pending:
                    self._download_progress(self.attachments.stats, final=True)
                self.report.downloads = self.attachments.stats.to_dict()
                self.report.notes.extend(self.attachments.stats.archive_errors)
            for w in self.workers.values():  # after an error: no worker outlives us
                if w.proc.poll() is None:
                    w.proc.kill()
                    w.proc.wait()
                if w.reader is not None:
                    w.reader.cancel()
                if not w.control.closed:
                    w.control.close(linger=0)
            self._hold_signals(loop)
            self.tasks.close(linger=0)
            self.results.close(linger=0)
            self.control.close()
            self.ctx.term()
            if self.resume is not None:
                self.resume.close()
            plan: Plan | None = getattr(self, "plan", None)
            if plan is not None:
                plan.close()
            self._keep_boot_logs()
            remove_run_dir(self.run_dir)
            self.progress.close()
        if self.cancelled or self.dirty:
            sweep_temporaries(self.out)
        status = self.report.finish(self.total, self.done_conversations,
                                    None if self.internal_error else self.cancelled)
        report_path = os.path.join(self.state_dir, "report.json")
        try:
            self.report.write(report_path)
        except OSError as exc:  # a full disk: say so, not a traceback
            sys.stderr.write(f"zexport: error: could not write the run report {report_path}:"
                             f" {exc.strerror or exc}\n")
            status = max(status, 1)
        return status


def _has_run_steps(fmt: Format) -> bool:
    """Whether a format overrides ``start`` or ``finish`` (the plan file is for them)."""
    return type(fmt).start is not Format.start or type(fmt).finish is not Format.finish


def _source_fingerprint(head: ConversationHead) -> str:
    return source_fingerprint(head.title, head.provider, head.created_at, head.updated_at,
                              head.message_count, head.current_node_id)


async def wait_event(event: asyncio.Event, timeout: float) -> None:
    """Wait until ``event`` is set, or ``timeout`` seconds.

    Not ``asyncio.wait_for(event.wait(), timeout)``: before Python 3.12 it
    swallows a cancellation that lands as the event is set (the inner wait
    is done, so wait_for returns its result instead of raising). The
    dispatcher's loop then never ended, and a finished run hung forever at
    exit, awaiting its cancelled tasks (seen once in a 100,000-conversation
    benchmark run: every file written, the controller idle, no worker left).
    """
    waiter = asyncio.ensure_future(event.wait())
    try:
        await asyncio.wait((waiter,), timeout=timeout)
    finally:
        waiter.cancel()


def _send_nowait(sock: zmq.asyncio.Socket, frame: bytes) -> None:
    """Send without waiting; a full or closed pipe drops the frame (heartbeats, cancel)."""
    if sock.closed:
        return
    try:
        fut = cast("asyncio.Future[Any]", sock.send(frame, zmq.NOBLOCK))
    except zmq.ZMQError:
        return
    fut.add_done_callback(lambda f: f.cancelled() or f.exception())
