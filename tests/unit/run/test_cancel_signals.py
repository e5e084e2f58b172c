"""The run's signal handlers in-process: they only queue the one cancel, or stop hard.

tests/test_interrupts.py and tests/test_hangup.py send the same signals to a
real ``zexport run``.
"""

from __future__ import annotations

import asyncio
import os
import signal

import pytest

from zexport.run.signals import CancelSignals, handlers_restored

pytestmark = pytest.mark.timeout(30)


class Run:
    """The controller's side: records what the handlers asked for."""

    def __init__(self) -> None:
        self.cancels: list[str] = []
        self.hard_stops = 0
        self.hangups = 0
        self.said: list[str] = []
        self.cancelled: asyncio.Event | None = None  # set by each cancel, inside a loop

    def cancel(self, reason: str) -> tuple[str, bool]:
        self.cancels.append(reason)
        if self.cancelled is not None:
            self.cancelled.set()
        return "cancelling", len(self.cancels) > 1

    async def queued_cancel_ran(self) -> None:
        """Until the cancel the handlers queued on the loop has run (5 s at most)."""
        assert self.cancelled is not None
        await asyncio.wait_for(self.cancelled.wait(), 5)

    def over(self) -> bool:
        return bool(self.cancels)

    def hard_stop(self) -> None:
        self.hard_stops += 1

    def hung_up(self) -> None:
        self.hangups += 1

    def signals(self) -> CancelSignals:
        return CancelSignals(self.cancel, self.over, self.hard_stop, self.hung_up,
                             self.said.append)


def test_ctrl_c_queues_the_cancel_then_a_second_one_stops_hard() -> None:
    run = Run()
    handlers = run.signals()

    async def main() -> None:
        handlers.loop = asyncio.get_running_loop()
        run.cancelled = asyncio.Event()
        handlers.interrupt()
        assert run.cancels == []  # queued on the loop, not run inside the handler
        handlers.interrupt()  # before the queued cancel ran: still the second Ctrl-C
        await run.queued_cancel_ran()
        handlers.interrupt()  # a third changes nothing more

    asyncio.run(main())
    assert run.cancels == ["interrupted"]
    assert run.hard_stops == 1
    assert run.said == ["Cancelling (Ctrl-C again to stop hard)...", "Stopping hard..."]


def test_ctrl_c_after_zexport_cancel_stops_hard_at_once() -> None:
    run = Run()
    run.cancel("cancelled")  # through the control endpoint
    handlers = run.signals()
    handlers.interrupt()
    assert (run.cancels, run.hard_stops) == (["cancelled"], 1)


def test_hangup_silences_the_terminal_and_cancels_once() -> None:
    run = Run()
    handlers = run.signals()

    async def main() -> None:
        handlers.loop = asyncio.get_running_loop()
        run.cancelled = asyncio.Event()
        handlers.hangup()
        handlers.hangup()
        await run.queued_cancel_ran()
        handlers.interrupt()  # the cancel is under way: a hard stop, said to nobody

    asyncio.run(main())
    assert run.cancels == ["hangup"]
    assert (run.hangups, run.hard_stops) == (2, 1)
    assert run.said == []


def test_real_signals_reach_the_handlers_and_are_given_back_after() -> None:
    """SIGTERM and SIGHUP sent to this process, through the loop's handlers; afterwards
    the handlers the process had before are back."""
    run = Run()
    handlers = run.signals()
    before = signal.getsignal(signal.SIGTERM)

    async def main() -> None:
        handlers.install(asyncio.get_running_loop())
        run.cancelled = asyncio.Event()
        os.kill(os.getpid(), signal.SIGTERM)
        await run.queued_cancel_ran()  # queued by the handler, run by the loop
        handlers.hold()
        # A marker signal sent after SIGHUP reaches the loop after it (signals are handled
        # in the order they arrive): once the marker is in, the held SIGHUP has been dealt with.
        loop = asyncio.get_running_loop()
        marker = asyncio.Event()
        loop.add_signal_handler(signal.SIGUSR1, marker.set)
        try:
            os.kill(os.getpid(), signal.SIGHUP)  # held: ignored, no second cancel, no death
            os.kill(os.getpid(), signal.SIGUSR1)
            await asyncio.wait_for(marker.wait(), 5)
        finally:
            loop.remove_signal_handler(signal.SIGUSR1)

    with handlers_restored():
        asyncio.run(main())
    assert run.cancels == ["interrupted"]
    assert run.hangups == 0
    assert signal.getsignal(signal.SIGTERM) is before
