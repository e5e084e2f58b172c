"""The per-conversation render timeout, inside the worker.

A format plugin's ``render`` is someone else's code, running in our worker's
main thread: while it runs, the worker's loop cannot send heartbeats, and if
it never returns the whole export would stall. So a watchdog **thread**
watches the main thread while plugin code runs:

- every heartbeat interval it sends a heartbeat for the worker (so a slow
  but honest render is not mistaken for a dead worker by the controller);
- once the deadline has passed it calls ``expire``, which tells the
  controller which conversation hung; the controller fails that
  conversation ("timed out"), kills the worker and replaces it, because a
  plugin stuck once may have left threads or locks behind. Should the kill
  not come, the watchdog kills its own process.

A thread, not a ``SIGALRM`` handler: Python runs signal handlers only in the
main thread, between bytecodes, so a render blocked inside C code (a lock, a
blocking read, which the kernel restarts after the signal) starved the
handler, and only the controller's 10 s heartbeat deadline caught it. C code
that blocks releases the GIL, and this thread runs on. (C code that spins
holding the GIL stops every thread; the heartbeat deadline remains for it.)

The watchdog sends its frames on a socket of its own (ZeroMQ sockets are not
thread-safe), made by ``connect`` in the thread. A lock makes the deadline and the end of a
render exclusive: either the render ended in time, or it is reported, and a
main thread that comes back after being reported stops there.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
import time
from collections.abc import Callable

import zmq

Socket = zmq.Socket[bytes]


class RenderWatchdog:
    """Heartbeats and a deadline around plugin code (see the module docstring)."""

    def __init__(self, timeout: float, interval: float, connect: Callable[[], Socket],
                 beat: Callable[[Socket], object], expire: Callable[[Socket, float], None],
                 kill_after: float = 10.0) -> None:
        self.timeout = timeout
        self.interval = max(0.05, interval)
        # Ticks come often enough to catch the deadline within a quarter of it.
        self.period = min(self.interval, max(0.02, timeout / 4))
        self.connect = connect
        self.beat = beat
        self.expire = expire
        self.kill_after = kill_after  # seconds to wait for the controller's kill
        self.available = timeout > 0
        self.lock = threading.Lock()
        self.started = 0.0
        self.active = False
        self.expired = False
        self.stopping = threading.Event()
        self.thread: threading.Thread | None = None
        self._guard = _Guard(self)

    def start(self) -> None:
        """Start the watching thread (once the worker has its configuration)."""
        if self.available and self.thread is None:
            self.thread = threading.Thread(target=self._watch, name="render-watchdog",
                                           daemon=True)
            self.thread.start()

    def stop(self) -> None:
        """Stop the thread; it closes its socket (before the context is terminated)."""
        self.stopping.set()
        if self.thread is not None:
            self.thread.join(timeout=5)
            self.thread = None

    def guard(self) -> contextlib.AbstractContextManager[None]:
        """Run the block under the deadline, with heartbeats."""
        return self._guard if self.available else contextlib.nullcontext()

    def _watch(self) -> None:
        sock = self.connect()
        try:
            last_beat = 0.0
            while not self.stopping.wait(self.period):
                if not self.active:
                    continue
                now = time.monotonic()
                with self.lock:
                    if not self.active:
                        continue
                    elapsed = now - self.started
                    if elapsed + 0.01 >= self.timeout:
                        self.expired = True
                        self.active = False
                        self.expire(sock, elapsed)
                        break
                if now - max(last_beat, self.started) >= self.interval:
                    last_beat = now
                    self.beat(sock)
            if self.expired:
                self._await_kill()
        finally:
            sock.close(linger=1000)

    def _await_kill(self) -> None:
        """Reported: the controller kills this process. If it does not, die anyway."""
        if not self.stopping.wait(self.kill_after):
            os.kill(os.getpid(), signal.SIGKILL)


class _Guard:
    """The context manager :meth:`RenderWatchdog.guard` returns (one, reused: it is
    entered once per conversation, so it is kept small)."""

    def __init__(self, watchdog: RenderWatchdog) -> None:
        self.w = watchdog

    def __enter__(self) -> None:
        w = self.w
        w.started = time.monotonic()
        w.active = True

    def __exit__(self, *exc: object) -> None:
        w = self.w
        with w.lock:
            w.active = False
            expired = w.expired
        if expired:  # reported as hung: nothing more from this process, wait for the kill
            while True:
                time.sleep(3600)
