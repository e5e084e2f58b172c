"""The worker process: pulls batches, renders conversations, pushes results.

Started by the controller as ``python -m zexport.worker RUN_DIR INDEX`` (a
fresh interpreter: no inherited ZeroMQ context, no fork hazards). It

- connects its PAIR control channel, says ``hello`` and waits for ``config``;
- pulls ``batch`` frames (receive high-water mark 1: it never hoards work),
  announces each with ``took`` and answers with ``done`` on the results PUSH;
- sends a heartbeat every interval, and exits by itself when the controller
  falls silent past the deadline (and, on Linux, when its parent dies);
- stops at the next conversation boundary on ``cancel``.

It ignores SIGINT: Ctrl-C reaches the whole process group, and only the
controller decides what a Ctrl-C means.
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

from . import protocol
from .archive import BatchReader
from .errors import ProtocolError
from .exporter import ConversationExporter, ExportSettings, Outcome
from .model import Attachment, Conversation
from .plugins import load_registry
from .runtime import endpoint
from .timezones import resolve_tz

log = logging.getLogger("zexport.worker")

PR_SET_PDEATHSIG = 1


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
                conversations += reader.read([item])
            except Exception as exc:
                failures.append(Outcome(id=item[0], ok=False,
                                        error=f"read failed: {type(exc).__name__}: {exc}"))
    found = {c.id for c in conversations} | {o.id for o in failures}
    failures += [Outcome(id=cid, ok=False, error="conversation vanished from the archive")
                 for cid, _ in items if cid not in found]
    return conversations


def _die_with_parent() -> None:
    """Ask Linux to SIGTERM us when the controller dies (no orphans)."""
    if sys.platform.startswith("linux"):
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
        except OSError:
            pass


class Worker:
    """One worker's sockets and loop."""

    def __init__(self, run_dir: str, index: int) -> None:
        self.index = index
        self.ctx = zmq.Context()
        self.control = self.ctx.socket(zmq.PAIR)
        self.control.setsockopt(zmq.LINGER, 1000)
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
        self.next_req = 0
        self.pending_fetch: dict[int, dict[str, Any]] = {}

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

    def fetch(self, conv: Conversation, att: Attachment) -> tuple[str | None, str | None]:
        """Ask the controller to download an attachment and wait for its answer."""
        self.next_req += 1
        req = self.next_req
        self.send_control("fetch", req=req, conversation_id=conv.id, attachment={
            "id": att.id, "provider": conv.provider, "file_id": att.file_id,
            "original_url": att.original_url, "filename": att.filename,
            "mime_type": att.mime_type, "message_id": att.message_id,
        })
        while not self.cancelled:
            if self.control.poll(int(self.hb_interval * 1000)):
                msg = self.handle_control(self.control.recv())
                if msg and msg["t"] == "fetched" and msg["req"] == req:
                    path = msg.get("path")
                    return (path, None) if isinstance(path, str) else (
                        None, str(msg.get("error") or "download failed"))
            self.pump_control()
        return None, "cancelled"

    # -- main loop -------------------------------------------------------
    def run(self) -> int:
        """Handshake, then work until told to stop or the controller goes away."""
        self.send_control("hello", w=self.index, pid=os.getpid())
        config = None
        deadline = time.monotonic() + 30
        while config is None:
            if time.monotonic() > deadline:
                log.error("worker %d: no config from controller", self.index)
                return 1
            if self.control.poll(200):
                msg = self.handle_control(self.control.recv())
                if msg and msg["t"] == "config":
                    config = msg["config"]
                elif self.cancelled:
                    return 0
        self.hb_interval = float(config.get("hb_interval", 0.5))
        self.hb_timeout = float(config.get("hb_timeout", 5.0))
        self.last_heard = time.monotonic()
        # The hot path allocates millions of short-lived, acyclic objects; the
        # cyclic collector would rescan them again and again for nothing.
        gc.freeze()
        gc.set_threshold(200_000, 50, 100)
        registry = load_registry()
        fmt = registry.get_format(config["format"])
        settings = ExportSettings(
            out_dir=config["out"], archive_dir=os.path.dirname(config["db"]), fmt=fmt,
            options=fmt.parse_options(config.get("format_options", {})),
            tz=resolve_tz(config["tz"]), branches=config["branches"],
            exported_at=config["exported_at"], attachments=config.get("attachments", "copy"),
        )
        exporter = ConversationExporter(
            settings, fetch=self.fetch if config.get("downloads") else None)
        reader = BatchReader(config["db"], config.get("attachment_index"))
        self.tasks.connect(endpoint(self.run_dir, "tasks"))
        self.results.connect(endpoint(self.run_dir, "results"))
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
        finally:
            reader.close()
        self.send_control("bye", w=self.index, reason="cancelled" if self.cancelled else "done")
        return 0

    def work(self, frame: bytes, reader: BatchReader, exporter: ConversationExporter) -> None:
        """Export one batch and report it."""
        try:
            msg = protocol.decode(frame)
        except ProtocolError as exc:
            log.warning("worker %d: dropped bad task frame: %s", self.index, exc)
            return
        if msg["t"] != "batch":
            return
        batch = msg["batch"]
        self.results.send(protocol.encode("took", w=self.index, batch=batch))
        items = [(str(i[0]), str(i[1])) for i in msg["items"]]
        outcomes: list[Outcome] = []
        conversations = read_batch(reader, items, outcomes)
        for conv in conversations:
            if self.cancelled:
                return  # the batch stays unfinished; a resumed run redoes it
            outcomes.append(exporter.export(conv, batch))
            self.pump_control()
        self.results.send(protocol.encode(
            "done", w=self.index, batch=batch, results=[o.to_wire() for o in outcomes]))

    def close(self) -> None:
        """Close every socket, then the context (LINGER is set on each)."""
        for sock in (self.tasks, self.results, self.control):
            sock.close()
        self.ctx.term()


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``python -m zexport.worker RUN_DIR INDEX``."""
    args = sys.argv[1:] if argv is None else argv
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _die_with_parent()
    logging.basicConfig(level=logging.WARNING, format="%(name)s: %(message)s")
    worker = Worker(args[0], int(args[1]))
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
    finally:
        worker.close()


if __name__ == "__main__":
    sys.exit(main())
