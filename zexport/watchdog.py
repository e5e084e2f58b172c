"""The per-conversation render timeout, inside the worker.

A format plugin's ``render`` is someone else's code, running in our worker's
only thread: while it runs, the worker's loop cannot send heartbeats, and if
it never returns the whole export would stall. So, only while plugin code
runs, an interval timer (``SIGALRM``) ticks every heartbeat interval:

- each tick sends a heartbeat for the worker (so a slow but honest render
  is not mistaken for a dead worker by the controller);
- the tick after the deadline calls ``expire`` instead, which tells the
  controller which conversation hung and then waits to be killed: the
  controller fails that conversation ("timed out") and replaces the worker,
  because a plugin stuck once may have left threads or locks behind.

Python runs signal handlers in the main thread between bytecodes, never in
the middle of a ZeroMQ call of ours, and the timer is armed only around
plugin code, which makes no ZeroMQ calls: the handler may use the control
socket. A render blocked inside C code that never returns to the
interpreter starves the handler too; the controller's heartbeat deadline
catches that case. Without ``setitimer`` (Windows) there is no timeout.

Arming the timer costs two system calls, and a batch renders thousands of
conversations in a second: so the timer is armed at the first render of a
batch and keeps ticking until the worker calls :meth:`RenderWatchdog.pause`
(between batches). A tick outside a render does nothing, which keeps the
rule above: the handler only acts while plugin code runs.
"""

from __future__ import annotations

import contextlib
import signal
import time
from collections.abc import Callable
from types import FrameType


class RenderWatchdog:
    """Heartbeats and a deadline around plugin code (see the module docstring)."""

    def __init__(self, timeout: float, interval: float, beat: Callable[[], None],
                 expire: Callable[[float], None]) -> None:
        self.timeout = timeout
        self.interval = max(0.05, interval)
        # Ticks come often enough to catch the deadline within a quarter of it.
        self.period = min(self.interval, max(0.05, timeout / 4))
        self.beat = beat
        self.expire = expire
        self.started = 0.0
        self.last_beat = 0.0
        self.active = False
        self.armed = False
        self.available = hasattr(signal, "setitimer") and timeout > 0
        self._guard = _Guard(self)
        if self.available:
            signal.signal(signal.SIGALRM, self._tick)
            # Restart system calls a tick lands in (SQLite's and ZeroMQ's too).
            signal.siginterrupt(signal.SIGALRM, False)

    def guard(self) -> contextlib.AbstractContextManager[None]:
        """Run the block under the deadline, with heartbeats."""
        return self._guard if self.available else contextlib.nullcontext()

    def pause(self) -> None:
        """Stop the timer (between batches: no plugin code runs until the next)."""
        if self.armed:
            self.armed = False
            signal.setitimer(signal.ITIMER_REAL, 0)

    def _tick(self, signum: int, frame: FrameType | None) -> None:
        if not self.active:
            return
        now = time.monotonic()
        elapsed = now - self.started
        if elapsed + 0.01 >= self.timeout:
            self.active = False
            self.pause()
            self.expire(elapsed)
        elif now - self.last_beat >= self.interval:
            self.last_beat = now
            self.beat()


class _Guard:
    """The context manager :meth:`RenderWatchdog.guard` returns (one, reused: it is
    entered once per conversation, so it is kept to two attribute stores)."""

    def __init__(self, watchdog: RenderWatchdog) -> None:
        self.w = watchdog

    def __enter__(self) -> None:
        w = self.w
        w.started = w.last_beat = time.monotonic()
        w.active = True
        if not w.armed:
            w.armed = True
            signal.setitimer(signal.ITIMER_REAL, w.period, w.period)

    def __exit__(self, *exc: object) -> None:
        self.w.active = False
