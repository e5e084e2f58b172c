"""Ctrl-C, SIGTERM and SIGHUP during a run: they only queue the cancel ``zexport cancel`` sends.

A handler decides nothing itself: it puts the run's one cancel (the
controller's :meth:`~zexport.run.controller.Controller.cancel`, with reason
``interrupted`` or ``hangup``) on the event loop, as the control endpoint
does. Only a second Ctrl-C does more: it stops the workers hard. From the
close-down on, the signals are held (:func:`hold`): what is left must not
be cut short.
"""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Callable, Iterator
from contextlib import contextmanager

# Signals that mean "cancel" (SIGHUP: the terminal closed), held during the close-down.
HELD_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


class CancelSignals:
    """The run's handlers for :data:`HELD_SIGNALS`, installed on its loop."""

    def __init__(self, cancel: Callable[[str], object], over: Callable[[], bool],
                 hard_stop: Callable[[], None], hung_up: Callable[[], None],
                 say: Callable[[str], None]) -> None:
        self.cancel = cancel  # the controller's, as the control endpoint calls it
        self.over = over  # a cancel is under way, or every conversation is done
        self.hard_stop = hard_stop
        self.hung_up = hung_up  # the terminal is gone: draw and say nothing more
        self.say = say
        self.queued = False
        self.stopped_hard = False
        self.loop: asyncio.AbstractEventLoop | None = None

    def install(self, loop: asyncio.AbstractEventLoop) -> None:
        """Ctrl-C and SIGTERM mean cancel from the start: before the run folder exists
        asyncio's own handler would cancel the run's task, leak the folder and exit 1."""
        self.loop = loop
        loop.add_signal_handler(signal.SIGINT, self.interrupt)
        loop.add_signal_handler(signal.SIGTERM, self.interrupt)
        loop.add_signal_handler(signal.SIGHUP, self.hangup)

    def _queue(self, reason: str) -> None:
        self.queued = True
        assert self.loop is not None
        self.loop.call_soon(self.cancel, reason)

    def interrupt(self) -> None:
        """Ctrl-C or SIGTERM: cancel; the second time, stop hard."""
        if self.queued or self.over():
            if not self.stopped_hard:
                self.stopped_hard = True
                self.say("Stopping hard...")
                self.hard_stop()
            return
        self.say("Cancelling (Ctrl-C again to stop hard)...")
        self._queue("interrupted")

    def hangup(self) -> None:
        """SIGHUP, the terminal closed: cancel as SIGTERM does, with its report, and
        draw or say nothing more on a terminal that is gone (a write there fails)."""
        self.say = lambda text: None
        self.hung_up()
        if not (self.queued or self.over()):
            self._queue("hangup")

    def hold(self) -> None:
        """From the close-down to the end of the run, Ctrl-C and SIGTERM change nothing.

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
                if self.loop is not None:
                    self.loop.remove_signal_handler(sig)
                signal.signal(sig, signal.SIG_IGN)
        finally:
            signal.pthread_sigmask(signal.SIG_UNBLOCK, held)


@contextmanager
def handlers_restored(restore: bool = True) -> Iterator[None]:
    """Give :data:`HELD_SIGNALS` their previous handlers back on the way out (if ``restore``)."""
    saved = {sig: signal.getsignal(sig) for sig in HELD_SIGNALS}
    try:
        yield
    finally:
        if restore:
            for sig, handler in saved.items():
                signal.signal(sig, handler)
