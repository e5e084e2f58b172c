"""The worker process: pulls batches, renders conversations, pushes results.

Started as ``python -m zexport.work.worker RUN_DIR INDEX [FORMAT]`` (a fresh
interpreter: no inherited ZeroMQ context, no fork hazards; FORMAT, a hint,
lets it load only the built-in plugins when it names a built-in format). It

- connects its PAIR control channel, says ``hello`` and waits for ``config``;
- asks for work with ``ready`` (one task at a time, so no batch ever waits
  behind this worker while it is busy), pulls the frames sent to it alone:
  ``index`` (build a part of the side indexes, answered with ``indexed``) and
  ``batch`` (announced with ``took``, answered with ``done``);
- sends a heartbeat every interval, and exits by itself when the controller
  falls silent past the deadline (and, on Linux, when its parent dies);
- stops at the next conversation boundary on ``cancel``; SIGTERM (the
  controller's escalation when a worker is inside a long conversation, and
  the parent-death signal) aborts even mid-conversation: the atomic writer
  removes its temporary file, the worker says ``bye`` and exits.
- asks the controller for missing attachments a batch at a time and keeps
  rendering while they download (:mod:`zexport.work.fetch`).

It ignores SIGINT and SIGHUP: Ctrl-C and a closed terminal reach the whole
process group, and only the controller decides what they mean.

``ZEXPORT_TEST_DELAY_PER_CONVERSATION`` (seconds, test-only) makes each
conversation take that much longer, inside the conversation, so tests can
catch a run in the middle and cancel a "long" conversation.
"""

from __future__ import annotations

import ctypes
import gc
import logging
import os
import signal
import sys
import time
from typing import Any

import zmq

from zexport import protocol
from zexport.core.attachment_files import AttachmentSources
from zexport.core.collector import THRESHOLDS
from zexport.core.output import UnsafePathError, open_append
from zexport.core.runtime import endpoint
from zexport.core.settings import WorkerSettings
from zexport.errors import ProtocolError
from zexport.model import Conversation
from zexport.plugins import BUILTIN_FORMATS, load_registry
from zexport.sources.archive import BatchReader, IndexInterrupted, IndexPart, build_part
from zexport.work.exporter import ConversationExporter, ExportSettings, Outcome
from zexport.work.fetch import FetchPipeline
from zexport.work.watchdog import RenderWatchdog

log = logging.getLogger("zexport.work.worker")

PR_SET_PDEATHSIG = 1
# Between conversations, control frames (cancel) are read at most this often.
PUMP_INTERVAL = 0.02


def read_batch(reader: BatchReader, items: list[tuple[str, str]],
               failures: list[Outcome]) -> list[Conversation]:
    """Read a batch; if that fails (a corrupt page), read its conversations one by one
    so only the unreadable ones fail. Failures are appended to ``failures``."""
    try:
        conversations = reader.read(items)
    except Exception:  # apsw raises many kinds; fall back to one at a time
        conversations = []
        for item in items:
            try:
                try:
                    conversations += reader.read([item])
                except UnicodeDecodeError as bad:  # bytes that are not UTF-8, stored as TEXT
                    repaired = reader.read([item], tolerant=True)
                    for conv in repaired:
                        conv.warnings.append(f"text that is not valid UTF-8 ({bad.reason})"
                                             " kept with replacement characters")
                    conversations += repaired
            except Exception as exc:
                failures.append(Outcome(id=item[0], ok=False,
                                        error=f"read failed: {type(exc).__name__}: {exc}"))
    found = {c.id for c in conversations} | {o.id for o in failures}
    failures += [Outcome(id=cid, ok=False, error="conversation vanished from the archive")
                 for cid, _ in items if cid not in found]
    return conversations


class Interrupted(BaseException):
    """SIGTERM arrived: stop now, even inside a conversation.

    A BaseException, so that a format plugin's ``except Exception`` cannot
    swallow it, while ``atomic_write``'s cleanup (``except BaseException``)
    still removes the temporary file.
    """


def _on_sigterm(signum: int, frame: object) -> None:
    raise Interrupted()


def _test_delay(name: str = "ZEXPORT_TEST_DELAY_PER_CONVERSATION") -> float:
    try:
        return max(0.0, float(os.environ.get(name, "0")))
    except ValueError:
        return 0.0


def _test_dies_indexing() -> bool:
    """``ZEXPORT_TEST_DIE_INDEXING`` (test-only): ``always``, or a path that the first
    worker to create it takes as its cue to die in the middle of an index part."""
    cue = os.environ.get("ZEXPORT_TEST_DIE_INDEXING", "")
    if cue == "always":
        return True
    if not cue:
        return False
    try:
        os.close(os.open(cue, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600))
    except OSError:
        return False
    return True


def _die_with_parent() -> None:
    """Ask Linux to SIGTERM us when the controller dies (no orphans)."""
    if sys.platform.startswith("linux"):
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
        except OSError:
            pass


def _attachment_sources(settings: WorkerSettings) -> AttachmentSources:
    """The folders the controller allows attachment files from (``config``)."""
    archive_dir = os.path.dirname(settings.db)
    return AttachmentSources(archive_dir, list(settings.attachment_roots) or [archive_dir],
                             list(settings.app_attachments), settings.attachment_cache)


def _log_to(path: str) -> None:
    """Send stderr (warnings, tracebacks) to ``path`` from now on, appending.

    A worker started early writes to a log in the run's private folder until
    the controller, which has by then checked the output folder, names this one.
    Never through a link planted at that name (see output.open_append).
    """
    try:
        fd = open_append(path)
    except (OSError, UnsafePathError) as exc:
        log.warning("cannot log to %s: %s", path, exc)
        return
    sys.stderr.flush()
    os.dup2(fd, 2)
    os.close(fd)


class Worker:
    """One worker's sockets and loop."""

    def __init__(self, run_dir: str, index: int, format_hint: str = "") -> None:
        self.index = index
        self.format_hint = format_hint  # the format named on our command line, if any
        self.ctx = zmq.Context()
        self.control = self.ctx.socket(zmq.PAIR)
        self.control.setsockopt(zmq.LINGER, 1000)
        # Started early (zexport.run.launch), a worker may connect before the controller
        # binds: retry every 10 ms, not libzmq's default 100 ms.
        self.control.setsockopt(zmq.RECONNECT_IVL, 10)
        self.control.setsockopt(zmq.MAXMSGSIZE, protocol.MAX_FRAME_BYTES)
        self.control.connect(endpoint(run_dir, f"w{index}"))
        self.tasks = self.ctx.socket(zmq.PULL)
        self.tasks.setsockopt(zmq.RCVHWM, 1)
        self.tasks.setsockopt(zmq.LINGER, 0)
        self.tasks.setsockopt(zmq.MAXMSGSIZE, protocol.MAX_FRAME_BYTES)
        self.results = self.ctx.socket(zmq.PUSH)
        self.results.setsockopt(zmq.LINGER, 2000)
        self.run_dir = run_dir
        self.cancelled = False
        self.last_heard = time.monotonic()
        self.last_sent = 0.0
        self.hb_interval = 0.5
        self.hb_timeout = 5.0
        self.pipeline: FetchPipeline | None = None
        self.parent = os.getppid()
        self.interrupted = False
        self.delay = _test_delay()
        self.index_delay = _test_delay("ZEXPORT_TEST_INDEX_DELAY")  # per interrupt check
        self.settings: WorkerSettings | None = None
        self.next_pump = 0.0
        self.watchdog: RenderWatchdog | None = None

    # -- control channel -------------------------------------------------
    def send_control(self, msg_type: str, **fields: Any) -> None:
        """Send on the PAIR channel (never blocks for long: it is a local ipc pipe)."""
        self.control.send(protocol.encode(msg_type, **fields))
        self.last_sent = time.monotonic()

    def handle_control(self, frame: bytes) -> dict[str, Any] | None:
        """Act on one control frame; return it for callers waiting on a reply."""
        try:
            msg = protocol.decode(frame)
        except ProtocolError as exc:
            log.warning("worker %d: dropped bad control frame: %s", self.index, exc)
            return None
        self.last_heard = time.monotonic()
        if msg["t"] == "cancel":
            self.cancelled = True
        elif msg["t"] == "fetched" and self.pipeline is not None:
            self.pipeline.deliver(msg)
        elif msg["t"] == "fetched_many" and self.pipeline is not None:
            self.pipeline.deliver_many(msg)
        return msg

    def pump_control(self) -> None:
        """Between conversations: read pending control frames, send a heartbeat if due."""
        while self.control.poll(0):
            self.handle_control(self.control.recv())
        now = time.monotonic()
        if now - self.last_sent >= self.hb_interval:
            self.send_control("hb")
        if now - self.last_heard > self.hb_timeout:
            log.error("worker %d: controller silent for %.1fs; exiting", self.index,
                      now - self.last_heard)
            self.cancelled = True
        if os.getppid() != self.parent:  # orphaned (no PDEATHSIG off Linux)
            log.error("worker %d: controller is gone; exiting", self.index)
            self.cancelled = True

    def wait_control(self) -> bool:
        """Block briefly for control frames (``fetched`` answers); False once cancelled."""
        if self.control.poll(int(self.hb_interval * 1000)):
            self.handle_control(self.control.recv())
        self.pump_control()
        return not self.cancelled

    # -- main loop -------------------------------------------------------
    def run(self) -> int:
        """Handshake, then work until told to stop or the controller goes away."""
        self.send_control("hello", w=self.index, pid=os.getpid())
        # Plugins are loaded while the controller is still planning (it answers
        # hello when done): off the critical path, and the same for every format.
        registry = load_registry(builtin_only=self.format_hint in BUILTIN_FORMATS)
        config = None
        deadline = time.monotonic() + 30
        while config is None:
            if time.monotonic() > deadline or os.getppid() != self.parent:
                log.error("worker %d: no config from controller", self.index)
                return 1
            if self.control.poll(200):
                msg = self.handle_control(self.control.recv())
                if msg and msg["t"] == "config":
                    config = msg["config"]
                elif self.cancelled:
                    return 0
        wire = self.settings = WorkerSettings.from_wire(config)
        if wire.log:
            _log_to(wire.log)
        self.hb_interval = float(wire.hb_interval)
        self.hb_timeout = float(wire.hb_timeout)
        self.last_heard = time.monotonic()
        # The hot path allocates millions of short-lived, acyclic objects; the
        # cyclic collector would rescan them again and again for nothing.
        gc.freeze()
        gc.set_threshold(*THRESHOLDS)
        if wire.format not in registry.formats:  # the hint was wrong, or missing
            registry = load_registry()
        fmt = registry.get_format(wire.format)
        settings = ExportSettings.resolve(wire, fmt, registry.format_plugin[fmt.name].label)
        sources = _attachment_sources(wire)
        if wire.downloads:
            self.pipeline = FetchPipeline(self.send_control, sources,
                                          dict(wire.refused_providers))
        exporter = ConversationExporter(
            settings, fetch=self.pipeline.result if self.pipeline else None, sources=sources)
        watchdog = self.watchdog = RenderWatchdog(
            float(wire.render_timeout), self.hb_interval,
            connect=self.watchdog_socket,
            beat=lambda sock: sock.send(protocol.encode("hb", w=self.index)),
            expire=lambda sock, seconds: self.timed_out(sock, exporter, seconds),
            kill_after=max(5.0, 2 * self.hb_timeout))
        exporter.guard = watchdog.guard
        watchdog.start()
        reader = BatchReader(wire.db, wire.index_parts)
        self.tasks.connect(endpoint(self.run_dir, f"t{self.index}"))
        self.results.connect(endpoint(self.run_dir, "results"))
        self.ask_for_work()
        poller = zmq.Poller()
        poller.register(self.tasks, zmq.POLLIN)
        poller.register(self.control, zmq.POLLIN)
        try:
            while not self.cancelled:
                events = dict(poller.poll(int(self.hb_interval * 1000)))
                if self.control in events:
                    self.handle_control(self.control.recv())
                if self.tasks in events and not self.cancelled:
                    self.work(self.tasks.recv(), reader, exporter)
                self.pump_control()
        except Interrupted:
            self.cancelled = self.interrupted = True
        finally:
            signal.signal(signal.SIGTERM, signal.SIG_IGN)  # now finish leaving in peace
            reader.close()
        try:
            self.control.send(protocol.encode(
                "bye", w=self.index, reason="interrupted" if self.interrupted else "cancelled"),
                zmq.NOBLOCK)
        except zmq.ZMQError:
            pass
        return 0

    def ask_for_work(self) -> None:
        """One credit: the controller sends this worker one batch for each ``ready``."""
        self.results.send(protocol.encode("ready", w=self.index))

    def work(self, frame: bytes, reader: BatchReader, exporter: ConversationExporter) -> None:
        """Export one batch and report it."""
        try:
            msg = protocol.decode(frame)
        except ProtocolError as exc:
            log.warning("worker %d: dropped bad task frame: %s", self.index, exc)
            self.ask_for_work()  # the frame took a credit: ask again
            return
        if msg["t"] == "index":
            self.build_index(msg)
            return
        if msg["t"] != "batch":
            self.ask_for_work()
            return
        batch = msg["batch"]
        self.results.send(protocol.encode("took", w=self.index, batch=batch))
        items = [(str(i[0]), str(i[1])) for i in msg["items"]]
        known = {str(i[0]): i[2] for i in msg["items"] if len(i) > 2 and isinstance(i[2], dict)}
        outcomes: list[Outcome] = []
        conversations = read_batch(reader, items, outcomes)
        order = (self.pipeline.schedule(conversations, self.wait_control)
                 if self.pipeline else iter(conversations))
        done: dict[str, Outcome] = {}
        for conv in order:  # ready conversations first; the rest as their files arrive
            if self.cancelled:
                return  # the batch stays unfinished; a resumed run redoes it
            if self.delay:
                time.sleep(self.delay)  # test-only: a "long" conversation (SIGTERM ends it)
            done[conv.id] = exporter.export(conv, batch, known.get(conv.id))
            if self.pipeline:
                self.pipeline.forget(conv)
            now = time.monotonic()
            if now >= self.next_pump:  # a poll per conversation cost 3% of a worker's time
                self.next_pump = now + PUMP_INTERVAL
                self.pump_control()
        if len(done) < len(conversations):
            return  # cancelled while files were still downloading: the batch stays open
        # Before the results: the controller sends the next batch while we report this one.
        self.ask_for_work()
        outcomes += [done[c.id] for c in conversations if c.id in done]  # batch order
        error = exporter.flush_records(batch, [cid for cid, _ in items])
        if error:
            for outcome in outcomes:
                if outcome.ok:
                    outcome.ok, outcome.error = False, error
        self.results.send(protocol.encode(
            "done", w=self.index, batch=batch, results=[o.to_wire() for o in outcomes]))

    def build_index(self, msg: dict[str, Any]) -> None:
        """Build one part of the side indexes and say so (``indexed``), then ask for work.

        The build checks the control channel every few milliseconds (SQLite's
        progress handler), so a cancel stops it at once and heartbeats go on;
        cancelled, it leaves no file and sends nothing.
        """
        assert self.settings is not None
        paths, number = self.settings.index_parts, msg["part"]
        if not 0 <= number < len(paths):
            log.warning("worker %d: no index part %d in config", self.index, number)
            self.ask_for_work()
            return
        messages, attachments = msg.get("messages"), msg.get("attachments")
        part = IndexPart(number, None if messages is None else (messages[0], messages[1]),
                         None if attachments is None else (attachments[0], attachments[1]))
        dies = _test_dies_indexing()
        try:
            errors = build_part(self.settings.db, paths[number], part,
                                lambda: self.index_interrupt(dies))
        except IndexInterrupted:
            return
        if dies:
            os._exit(3)  # test-only: (a small part ends before any check) died unanswered
        self.results.send(protocol.encode(
            "indexed", w=self.index, part=number, messages_error=errors.messages,
            attachments_error=errors.attachments))
        self.ask_for_work()

    def index_interrupt(self, dies: bool = False) -> bool:
        """Between SQLite steps of an index part: whether to stop (cancelled)."""
        if dies:
            os._exit(3)  # test-only: a worker dying in the middle of a part
        now = time.monotonic()
        if now >= self.next_pump:
            self.next_pump = now + PUMP_INTERVAL
            self.pump_control()
        # Test-only: a part as slow as a huge archive's, as responsive as a real one.
        until = now + self.index_delay
        while not self.cancelled and time.monotonic() < until:
            time.sleep(0.005)
            self.pump_control()
        return self.cancelled

    def watchdog_socket(self) -> zmq.Socket[bytes]:
        """The watchdog thread's own PUSH to the results socket (sockets are per thread)."""
        sock: zmq.Socket[bytes] = self.ctx.socket(zmq.PUSH)
        sock.connect(endpoint(self.run_dir, "results"))
        return sock

    def timed_out(self, sock: zmq.Socket[bytes], exporter: ConversationExporter,
                  seconds: float) -> None:
        """A plugin overran the render timeout: say which conversation (from the watchdog
        thread, while the render is held: ``exporter.current`` is the one)."""
        conv = exporter.current
        if conv is not None:
            sock.send(protocol.encode("timed_out", w=self.index, batch=exporter.current_batch,
                                      conversation_id=conv.id, seconds=round(seconds, 3)))

    def close(self) -> None:
        """Close every socket, then the context (LINGER is set on each; 0 if interrupted)."""
        if self.watchdog is not None:
            self.watchdog.stop()  # its thread closes its own socket
        for sock in (self.tasks, self.results, self.control):
            sock.close(linger=0 if self.interrupted else None)
        self.ctx.term()


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``python -m zexport.work.worker RUN_DIR INDEX [FORMAT]``."""
    args = sys.argv[1:] if argv is None else argv
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGHUP, signal.SIG_IGN)  # a closed terminal: the controller decides
    signal.signal(signal.SIGTERM, _on_sigterm)
    _die_with_parent()
    logging.basicConfig(level=logging.WARNING, format="%(name)s: %(message)s")
    worker = Worker(args[0], int(args[1]), args[2] if len(args) > 2 else "")
    profile_dir = os.environ.get("ZEXPORT_PROFILE_DIR")  # benchmarks/ profiles workers
    try:
        if profile_dir:
            import cProfile

            profiler = cProfile.Profile()
            try:
                return profiler.runcall(worker.run)
            finally:
                profiler.dump_stats(os.path.join(profile_dir, f"worker-{args[1]}.prof"))
        return worker.run()
    except Interrupted:  # SIGTERM before the work loop (during the handshake)
        worker.interrupted = True
        return 0
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        worker.close()


if __name__ == "__main__":
    code = main()
    # Everything is written and closed (atomic files, sockets, the ZeroMQ context):
    # skip the interpreter's teardown (~15 ms), which the controller waits for.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)
