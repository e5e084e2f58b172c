"""The controller: plans the export, runs the workers, collects the results.

One asyncio loop (``zmq.asyncio``) serves every socket, so the dispatcher,
the result reader, the per-worker control channels and the monitor never
block one another:

- **t<N>** (one PUSH per worker, bound): batches of ``[conversation_id,
  folder]``, sent only to a worker that asked for one (``ready``): no batch
  ever waits behind a busy worker. What is queued, sent, taken, done, split
  or failed, and who is to blame when a worker dies, is
  :class:`~zexport.run.batches.BatchTable`'s business.
- **results** (PULL, bound): ``ready``, ``took`` and ``done`` from every worker.
- **w<N>** (one PAIR per worker; bound when the worker is started or, for
  the workers the CLI starts early (:mod:`zexport.run.launch`), adopted): ``hello``
  then ``config``, heartbeats both ways, ``cancel``, attachment ``fetch``
  (answered by :class:`~zexport.net.service.AttachmentService`,
  each in its own task, so a slow download never stalls the channel).
- **control** (ROUTER, bound; :mod:`zexport.run.control`): ``status`` and
  ``cancel_request`` from ``zexport status``/``zexport cancel`` and GUIs.

Folder names are decided here, once, before any work is sent (§4), and so is
what a re-run may skip (:mod:`zexport.run.manifest`): skipped conversations are
never sent to a worker. Cancel (``zexport cancel``, Ctrl-C, SIGTERM) goes
through one path, :meth:`Controller.request_cancel`.
"""

from __future__ import annotations

import asyncio
import contextlib
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

from zexport import __version__, protocol
from zexport.core.attachment_files import AttachmentSources
from zexport.core.edits import CONFLICTS_DIR
from zexport.core.layouts import Layout
from zexport.core.locations import cache_dir
from zexport.core.lock import OutputLock
from zexport.core.output import UnsafePathError, ensure_dir, open_append, sweep_temporaries
from zexport.core.runfiles import PlanWriter, shard_path
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
from zexport.core.statedir import MANIFEST_NAME, STATE_DIR, renders_everything
from zexport.core.timezones import resolve_tz
from zexport.errors import ArchiveError, OutputError, PluginError, ProtocolError, UsageError
from zexport.formats.base import Format
from zexport.net.auth import auth_file_warning, load_auth
from zexport.net.cache import AttachmentCache
from zexport.net.limits import Limits
from zexport.net.options import DownloadOptions
from zexport.plugins import load_registry
from zexport.run.batches import Batch, BatchTable, Failure, cut
from zexport.run.checkpoints import Cancelled, checked, checkpoint
from zexport.run.control import ControlServer
from zexport.run.dryrun import DryRun
from zexport.run.launch import EarlyWorkers, start_worker
from zexport.run.log import RunLog, run_log_path
from zexport.run.manifest import (
    RENDER_AGAIN,
    Resume,
    check_layout,
    options_fingerprint,
    source_fingerprint,
    tz_identity,
)
from zexport.run.plan import Plan
from zexport.run.progress import NullProgress, ProgressSink
from zexport.run.report import RunReport
from zexport.run.steps import FormatSteps, undo_fresh_state
from zexport.sources.archive import (
    MESSAGE_INDEX,
    ConversationHead,
    Selection,
    build_attachment_index,
    build_message_index,
    list_conversations,
    open_archive,
    unaddressable_conversations,
)

if TYPE_CHECKING:
    from zexport.net.service import AttachmentService, Stats

log = logging.getLogger("zexport.run.controller")

# Signals that mean "cancel" (SIGHUP: the terminal closed), held during the close-down.
HELD_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
# In the state folder while a run may leave temporaries; a run that finds it sweeps them.
RUNNING_MARKER = "running"
# Download progress is shown at most this often (seconds), and once at the end.
DOWNLOAD_PROGRESS_EVERY = 0.1
# Answers per fetched_many frame: far below the frame size limit with long paths.
FETCHED_PER_FRAME = 2000
# What workers send on the results socket (each with its id, ``w``).
RESULT_TYPES = frozenset(("ready", "took", "done", "hb", "timed_out"))
# Batches: at most this many conversations, and messages beyond the first one; a
# conversation of LONG_CONVERSATION messages or more is exported alone, first.
BATCH_CONVERSATIONS = 64
BATCH_MESSAGES = 4000
LONG_CONVERSATION = 2000
# Workers that die one after another without the run moving forward (at start-up,
# or idle) before no more are started: then the run ends, saying why.
FUTILE_DEATHS = 3
# Until its first ``ready``, a worker may be silent this long at least: it boots an
# interpreter and loads plugins, which on a loaded machine can outlast a short
# heartbeat deadline (tests shorten it), and a false death there replaced nothing.
START_TIMEOUT = 10.0


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
    layout: str = "folder"  # --layout: folder, note or a template (zexport.core.layouts)
    downloads: DownloadOptions = field(default_factory=DownloadOptions)
    notes: tuple[str, ...] = ()  # for the report: what reading the input found (sources)
    input_errors: tuple[str, ...] = ()  # what could not be read from the input (exit 1)
    overwrite_edited: bool = False  # replace files that are not what zexport wrote
    retry_attachments: bool = False  # render again every conversation missing an attachment
    strict: bool = False  # attachment problems and conflicts make the exit status 1

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
            "render_timeout": self.render_timeout, "layout": self.layout,
            "overwrite_edited": self.overwrite_edited,
            "retry_attachments": self.retry_attachments, "strict": self.strict,
            **self.downloads.public(),
        }


@dataclass
class WorkerHandle:
    """A worker process, its control channel and its task pipe."""

    id: int
    proc: subprocess.Popen[bytes]
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


class Controller:
    """Runs one export; :meth:`run` returns the process exit status."""

    def __init__(self, opts: RunOptions, progress: ProgressSink | None = None,
                 say: Callable[[str], None] | None = None,
                 early: EarlyWorkers | None = None) -> None:
        self.opts = opts
        self.early = early  # workers the CLI started while we were imported (zexport.run.launch)
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
        self.layout = Layout.parse(opts.layout, dated=opts.date_prefix)
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
        # Before anything is created: one output folder holds one layout.
        check_layout(os.path.join(self.out, STATE_DIR, MANIFEST_NAME), self.layout, opts.out)
        self.report = RunReport(options=opts.public(), started=self.started,
                                strict=opts.strict)
        self.report.notes.extend(opts.notes)
        self.report.run_errors.extend(opts.input_errors)
        if self.auth_warning:  # on stderr even with -q: a credential is exposed
            sys.stderr.write(f"zexport: warning: {self.auth_warning}\n")
            self.report.notes.append(self.auth_warning)
        self.table = BatchTable(self._load)
        self.workers: dict[int, WorkerHandle] = {}
        self.next_worker_id = 0
        self.futile_deaths = 0  # deaths in a row that moved nothing forward
        self.progress_seen = 0  # self.table.progress when a death last counted
        self.failed_run: str | None = None  # why the run could not go on (not a cancel)
        self.feed_later: asyncio.TimerHandle | None = None
        self.cancelled: str | None = None
        self.internal_error = False  # a controller loop failed (see _loop_ended)
        self.hard_stop = False
        self.stopping = False
        self.dirty = False  # a worker was SIGKILLed: temporaries may be left to sweep
        self.done_conversations = 0
        self.total = 0
        self.finished = asyncio.Event()
        self.run_id = ""
        self.run_dir = ""
        self.phase = "starting"
        self.export_started = 0.0
        self.state_dir = os.path.join(self.out, STATE_DIR)
        self.lock = OutputLock(self.state_dir)
        self.resume: Resume | None = None
        self.control: ControlServer | None = None
        self.run_log: RunLog | None = None  # <out>/.zexport/run.log, once the lock is ours
        self.fresh_state = False  # the output folder had no state folder before this run
        self.start_failed = False  # the format's start step raised
        self.planning_cut = False  # cancelled while planning
        # Cancel hooks: callables run once when cancel starts, and tasks it cancels
        # (the attachment downloader registers its in-flight downloads here).
        self.on_cancel: list[Callable[[], None]] = []
        self.cancel_scope: set[asyncio.Future[Any]] = set()

    # -- setup --------------------------------------------------------------
    def _prepare_output(self) -> None:
        self.fresh_state = not os.path.lexists(self.state_dir)  # a first export here
        try:
            os.makedirs(self.out, exist_ok=True)
            ensure_dir(self.state_dir)
            # Lock before sweeping: another run's temporaries are files in flight.
            self.lock.acquire(self.out)
            self.run_log = RunLog(run_log_path(self.out))
            self.report.spool_to(self.state_dir)
        except (OSError, UnsafePathError) as exc:  # read-only, no permission, not a folder
            if self.run_log is not None:
                self.run_log.close()
            self.lock.release()
            reason = str(exc)
            if isinstance(exc, OSError) and exc.strerror:
                reason = exc.strerror + (f" ({exc.filename})" if exc.filename else "")
            raise OutputError(
                f"cannot write to the output folder {self.opts.out}: {reason}") from None
        # Temporaries are left only by a run that did not end cleanly (killed, a crash),
        # and that run left its marker: walking a 10,000-folder tree for them cost an
        # unchanged re-run 1 s, most of its time.
        marker = os.path.join(self.state_dir, RUNNING_MARKER)
        if os.path.lexists(marker) or not os.path.lexists(
                os.path.join(self.state_dir, MANIFEST_NAME)):
            swept = sweep_temporaries(self.out)
            if swept:
                self.report.notes.append(
                    f"removed {swept} temporary files left by an earlier run")
        try:
            os.close(os.open(marker, os.O_WRONLY | os.O_CREAT | os.O_NOFOLLOW, 0o644))
        except OSError:  # a symlink in its place: sweep every time rather than follow it
            pass

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
        stays in memory is one small batch per batch. ``dry_run``
        writes no plan file for start/finish and moves no folder; the
        manifest is read from ``state_dir`` (a copy, for a dry run).
        """
        plan = self.plan = Plan(os.path.join(self.run_dir, "plan.db"))
        stop = self._cancelled  # checked every few thousand rows: cancel needs no full plan
        # ZEXPORT_TEST_PLAN_DELAY (seconds, test-only): a plan as slow as a huge archive's.
        delay = _env_seconds("ZEXPORT_TEST_PLAN_DELAY", 0.0)
        for _ in checked(range(int(delay * 100)), stop, every=1):
            time.sleep(0.01)
        rejected: list[tuple[str, str]] = []  # ids that are not valid UTF-8
        ext = self.fmt.extension
        self.total = plan.add(
            checked(list_conversations(self.conn, self.opts.selection, rejected), stop),
            self.tz, fingerprint=_source_fingerprint, layout=self.layout, extension=ext,
            reserved=self.fmt.reserved_names)
        checkpoint(stop)
        plan.assign_folders(self.fmt.reserved_names, self.layout, ext)
        checkpoint(stop)
        if _has_run_steps(self.fmt) and not dry_run:  # only start/finish read it
            writer = PlanWriter(self.steps.plan_path)
            try:
                for cid, title, provider, created, updated, count, folder, _ in checked(
                        plan.rows(), stop):
                    writer.add(cid, title, provider, created, updated, count, folder,
                               self.layout.files(folder, ext).main)
            finally:
                writer.close()
        checkpoint(stop)
        # A format that gathers records for one whole-export file needs every
        # conversation rendered each run: skipping would leave holes in it.
        force = self.opts.force or not self.fmt.files_per_conversation
        self.resume = Resume(
            state_dir or self.state_dir, self.out, self.fmt.extension, self._options_fingerprint(),
            f"zexport {__version__}; {self.fmt.name} {self.fmt.version}", force,
            attachment_context=self._attachment_context(),
            retry_attachments=self.opts.retry_attachments,
            overwrite_edited=self.opts.overwrite_edited, layout=self.layout)
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
            what = "folders" if self.layout.folders else "notes (with their attachments)"
            self.report.notes.append(
                f"moved {self.resume.moved} {what} of conversations whose title changed")
        for cid, path, reason in self.resume.kept_folders:
            self.report.conflict(cid, path, reason, None)
        workers = max(1, self.opts.workers)
        size = self.opts.batch_size or max(1, min(BATCH_CONVERSATIONS,
                                                  todo // (workers * 8) or 1))
        if not dry_run:
            for first, end, _ in cut(plan.todo_sizes(), size, BATCH_MESSAGES,
                                     LONG_CONVERSATION):
                self.table.add(first, end)

    def _cancelled(self) -> bool:
        return bool(self.cancelled)

    def _load(self, start: int, stop: int) -> list[tuple[str, str, str | None]]:
        """A batch's conversations, read from the plan when it is first sent."""
        return self.plan.items(start, stop)

    @property
    def active(self) -> dict[int, Batch]:
        """Batches sent or taken, by id (for the status snapshot)."""
        return self.table.active

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
            "render_timeout": self.opts.render_timeout, "layout": self.layout.spec,
            "overwrite_edited": self.opts.overwrite_edited,
            "conflicts_exist": os.path.isdir(os.path.join(self.state_dir, CONFLICTS_DIR)),
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

    def _attachment_context(self) -> str:
        """A digest of what decides whether missing attachments can be had this run:
        conversations exported with one missing are rendered again only when it changes
        (zexport.run.manifest). Credentials enter it only as part of one digest."""
        dl = self.opts.downloads
        if self.opts.attachments == "off" or not dl.enabled:
            return options_fingerprint([self.opts.attachments, dl.enabled])
        cache = self._attachment_cache()
        return options_fingerprint([
            self.opts.attachments, dl.enabled, cache.root,
            {name: cache.version(name) for name in sorted(self.providers)},
            options_fingerprint({name: [c.base_url, c.headers, c.cookies]
                                 for name, c in self.credentials.items()}),
        ])

    def _refused_providers(self) -> dict[str, str]:
        """Providers whose downloads workers refuse themselves (computed once per run)."""
        if self._refused is None:
            self._refused = {}
            if self._downloads_on():
                from zexport.net.service import refused_providers

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
        tasks = self.ctx.socket(zmq.PUSH)  # only this worker's: a batch goes where asked
        tasks.setsockopt(zmq.LINGER, 0)
        tasks.bind(endpoint(self.run_dir, f"t{wid}"))
        # A worker started early is adopted as it is, even one that already died
        # (the monitor then treats it as any dead worker: reported, replaced).
        proc = self.early.take(wid) if self.early is not None else None
        if proc is None:
            proc = start_worker(self.run_dir, wid, self._worker_log(wid), self.fmt.name)
        handle = WorkerHandle(wid, proc, control, tasks, time.monotonic())
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
            elif kind == "fetch":
                await self.handle_fetch(w, msg)
            elif kind == "fetch_many":
                self.handle_fetch_many(w, msg)
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
        from zexport.net.service import AttachmentService

        self.attachments = AttachmentService(
            self.providers, self.credentials, self._attachment_cache(), Limits.from_options(dl),
            archive=os.path.abspath(self.opts.db) if dl.update_archive else None,
            on_change=self._download_progress)

    def _timed_out(self, w: WorkerHandle, msg: dict[str, Any]) -> None:
        """A plugin hung on one conversation: fail it, redo the rest of its batch elsewhere.

        The conversations before and after it are queued again, blaming
        nobody, and the worker is killed and replaced: a plugin stuck once
        may have left its process in any state.
        """
        cid = msg["conversation_id"]
        out = self.table.timed_out(msg["batch"], w.id, cid, (
            f"format {self.fmt.name!r} of {self.plugin} timed out after "
            f"{self.opts.render_timeout:g}s on this conversation "
            "(--render-timeout); its worker was replaced"))
        if not out.failures:
            return  # about a batch that is no longer this worker's
        self._fail(out.failures)
        self._declare_dead(w, f"timed out rendering conversation {cid}")

    def _fail(self, failures: list[Failure]) -> None:
        if not failures:
            return  # (and no "finished" check: while planning, the table is still empty)
        for failure in failures:
            self.report.failure(failure.conversation_id, failure.folder, failure.reason)
            self.done_conversations += 1
        self._check_finished()

    def _declare_dead(self, w: WorkerHandle, why: str) -> None:
        """Stop trusting a worker: kill it, put what it held back, maybe replace it."""
        if not w.alive:
            return
        w.alive = False
        w.credit = 0
        if w.proc.poll() is None:
            w.proc.kill()
        self.dirty = True
        if w.reader is not None:
            w.reader.cancel()
        w.control.close(linger=0)
        w.tasks.close(linger=0)
        if self.cancelled or self.finished.is_set():
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
            self._spawn()
        elif not self.live_workers():
            self._give_up(w, why)
        self._feed()

    def _give_up(self, w: WorkerHandle, why: str) -> None:
        """Workers keep dying without moving the run forward: end it, with one reason."""
        where = self._worker_log(w.id)
        if not w.asked:
            reason = (f"workers die at start-up: the last one (worker {w.id}) {why} before"
                      f" asking for work, {self.futile_deaths} in a row; see {where}")
        else:
            reason = (f"workers keep dying without finishing any work: the last one"
                      f" (worker {w.id}) {why}, {self.futile_deaths} in a row; see {where}")
        self.failed_run = reason
        self.report.run_errors.append(reason)
        self.cancel("failed")

    # -- dispatch -------------------------------------------------------------
    def _feed(self) -> None:
        """Send queued batches to the workers that asked for work, one per ``ready``.

        A worker is never sent a batch it did not ask for, so none waits
        behind a busy worker. Sends never block: a worker's pipe holds at
        most what it asked for. A pipe not connected yet (the worker's
        ``ready`` overtook its connection) is tried again shortly.
        """
        if self.cancelled:
            return
        for w in self.live_workers():
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

    def _wire_items(self, batch: Batch) -> list[list[Any]]:
        """``[id, folder]``, with ``{path: hash}`` of what zexport wrote there last time
        when there is any (docs/protocol.md, ``batch``)."""
        items = batch.items
        known = (self.resume.known_files([cid for cid, _ in items])
                 if self.resume is not None and self.resume.has_files else {})
        return [[cid, folder, known[cid]] if cid in known else [cid, folder]
                for cid, folder in items]

    def _feed_again(self) -> None:
        self.feed_later = None
        self._feed()

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
        w = self.workers.get(msg["w"])
        if w is None or not w.alive:
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
            self._record(msg["batch"], rows, msg["results"])

    def _record(self, batch_id: int, rows: list[tuple[str, str, str | None]],
                results: list[Any]) -> None:
        folders = {cid: folder for cid, folder, _ in rows}
        sources = {cid: source for cid, _, source in rows}
        # Kept before the manifest marks them done (zexport.core.records).
        self.steps.keep(batch_id, folders, {r["id"] for r in results if r["ok"]})
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
            # A missing attachment records the attachment context: a re-run renders the
            # conversation again only when that changes. A conflict renders it again
            # every run (so it stays reported) until the user resolves it.
            if res.get("ok") and self.resume is not None:
                source = sources.get(cid)
                if res.get("conflicts") and source is not None:
                    source = RENDER_AGAIN
                retry = (self.resume.attachment_context if res.get("attachments_failed")
                         else None)
                self.resume.done(cid, folder, source, retry, _file_rows(res.get("files")))
        if self.resume is not None:
            self.resume.flush_due()
        elapsed = max(time.time() - self.started, 1e-6)
        self.progress.update("exporting", self.done_conversations, self.total, title, {
            "failed": len(self.report.failures), "rate": self.done_conversations / elapsed,
            "attachments_copied": self.report.attachments_exported,
            "attachments_downloaded": (self.attachments.stats.downloaded
                                       if self.attachments is not None else 0),
            "attachments_unavailable": self.report.attachments_failed,
            "conflicts": len(self.report.conflicts)})
        self._check_finished()

    def _check_finished(self) -> None:
        if self.table.finished:
            self.finished.set()

    async def _monitor(self) -> None:
        """Heartbeats out; dead and silent worker detection."""
        while True:
            now = time.monotonic()
            for w in self.live_workers():
                code = w.proc.poll()
                if code is not None:
                    self._declare_dead(w, f"exited with status {code}")
                elif now - w.last_heard > (self.opts.hb_timeout if w.asked else max(
                        self.opts.hb_timeout, START_TIMEOUT)):
                    self._declare_dead(w, f"silent for {now - w.last_heard:.1f}s")
                else:
                    _send_nowait(w.control, protocol.encode("hb"))
            await asyncio.sleep(self.opts.hb_interval / 2)

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

    def _on_hangup(self) -> None:
        """SIGHUP, the terminal closed: cancel as SIGTERM does, with its report, and
        draw or say nothing more on a terminal that is gone (a write there fails)."""
        self.say = lambda text: None
        if getattr(self.progress, "draws_on_terminal", False):
            self.progress.close()
            self.progress = NullProgress()
        if not (self.cancelled or self.finished.is_set()):
            self.request_cancel("hangup")

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
            if not w.tasks.closed:
                w.tasks.close(linger=0)

    async def _finish_step(self) -> None:
        """Call the format's finish with the run's outcome; a failure fails the run partly."""
        failures = {f["conversation_id"]: f["reason"] for f in self.report.failures}
        shards = [shard_path(self.out, self.fmt.name, b.id) for b in self.table.accepted()]
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
        saved = {sig: signal.getsignal(sig) for sig in HELD_SIGNALS}
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
        held = set(HELD_SIGNALS)
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
        loop.add_signal_handler(signal.SIGHUP, self._on_hangup)
        runtime_base()  # refuses an unusable runtime folder before the output is touched
        self._prepare_output()  # takes the output lock, or refuses
        try:
            return await self._run_locked()
        finally:
            if self.run_id:
                unregister_run(self.run_id)  # last: `zexport cancel` waits for this
            if self.run_log is not None:
                self.run_log.close()
            if self.start_failed and self.fresh_state:
                undo_fresh_state(self.state_dir)  # under the lock still; keeps run.log
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
        self.results = self.ctx.socket(zmq.PULL)
        self.results.setsockopt(zmq.LINGER, 0)
        self.results.setsockopt(zmq.MAXMSGSIZE, protocol.MAX_FRAME_BYTES)
        self.results.bind(endpoint(self.run_dir, "results"))
        self.control = ControlServer(self.run_dir, self)
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
                    self.attachments_unreadable = True
                    self.report.run_errors.append(
                        f"the archive's attachments could not be read ({exc}); conversations"
                        " were exported without their attachment files")
                await self._index_messages(indexing_messages)
            self.progress.update("counting", self.total, self.total, "", {})
            self.conn.close()
            try:
                if not self.cancelled:
                    self.steps.start(self.total)
            except PluginError:
                self.start_failed = True
                raise
            await asyncio.sleep(0)  # let control requests that arrived meanwhile in
            if self.table.batches and not self.cancelled:
                self._start_attachments()
                self.phase = "exporting"
                self.export_started = time.time()
                self.progress.phase("exporting", self.total)
                for _ in range(min(max(1, self.opts.workers), len(self.table.batches))
                               - len(self.live_workers())):
                    self._spawn()
                self._feed()  # workers that asked for work while we planned
                loops = [asyncio.ensure_future(c) for c in (self._results(), self._monitor())]
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
                if not w.tasks.closed:
                    w.tasks.close(linger=0)
            if self.feed_later is not None:
                self.feed_later.cancel()
            self._hold_signals(loop)
            self.results.close(linger=0)
            self.control.close()
            self.ctx.term()
            if self.resume is not None:
                self.resume.close(final_context=self._attachment_context())
            self.steps.close()
            plan: Plan | None = getattr(self, "plan", None)
            if plan is not None:
                plan.close()
            self._keep_boot_logs()
            remove_run_dir(self.run_dir)
            self.progress.close()
        if self.cancelled or self.dirty:
            sweep_temporaries(self.out)
        if not self.internal_error:  # the tree is clean: the next run need not sweep
            with contextlib.suppress(OSError):
                os.unlink(os.path.join(self.state_dir, RUNNING_MARKER))
        status = self.report.finish(
            self.total, self.done_conversations,
            None if self.internal_error or self.failed_run else self.cancelled,
            planned=not self.planning_cut)
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


def _file_rows(value: Any) -> list[tuple[str, str]]:
    """The ``files`` of a ``done`` result as ``(path, hash)`` pairs; malformed ones dropped."""
    if not isinstance(value, list):
        return []
    return [(str(item[0]), str(item[1])) for item in value
            if isinstance(item, (list, tuple)) and len(item) == 2]


def _source_fingerprint(head: ConversationHead) -> str:
    return source_fingerprint(head.title, head.provider, head.created_at, head.updated_at,
                              head.message_count, head.current_node_id)


def _send_nowait(sock: zmq.asyncio.Socket, frame: bytes) -> None:
    """Send without waiting; a full or closed pipe drops the frame (heartbeats, cancel)."""
    if sock.closed:
        return
    try:
        fut = cast("asyncio.Future[Any]", sock.send(frame, zmq.NOBLOCK))
    except zmq.ZMQError:
        return
    fut.add_done_callback(lambda f: f.cancelled() or f.exception())
