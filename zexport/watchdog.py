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
"""

from __future__ import annotations

import contextlib
import signal
import time
from collections.abc import Callable, Iterator
from types import FrameType


class RenderWatchdog:
    """Heartbeats and a deadline around plugin code (see the module docstring)."""

    def __init__(self, timeout: float, interval: float, beat: Callable[[], None],
                 expire: Callable[[float], None]) -> None:
        self.timeout = timeout
        self.interval = max(0.05, interval)
        self.beat = beat
        self.expire = expire
        self.started = 0.0
        self.active = False
        self.available = hasattr(signal, "setitimer")
        if self.available:
            signal.signal(signal.SIGALRM, self._tick)

    @contextlib.contextmanager
    def guard(self) -> Iterator[None]:
        """Run the block under the deadline, with heartbeats."""
        if not self.available or self.timeout <= 0:
            yield
            return
        self.started = time.monotonic()
        self.active = True
        first = min(self.interval, self.timeout)
        signal.setitimer(signal.ITIMER_REAL, first, self.interval)
        try:
            yield
        finally:
            self.active = False
            signal.setitimer(signal.ITIMER_REAL, 0)

    def _tick(self, signum: int, frame: FrameType | None) -> None:
        if not self.active:
            return
        elapsed = time.monotonic() - self.started
        if elapsed + 0.01 >= self.timeout:
            self.active = False
            signal.setitimer(signal.ITIMER_REAL, 0)
            self.expire(elapsed)
        else:
            self.beat()
