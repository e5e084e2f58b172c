"""Cancel checkpoints for long loops that run outside the event loop (planning).

Planning 200,000 conversations takes seconds, in a thread, while the event
loop answers ``zexport cancel``; without checkpoints a cancel waited for the
whole plan. :func:`checked` wraps an iterable so that the loop consuming it
(an ``executemany``, a ``for``) stops within ``every`` items of a cancel.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import TypeVar

T = TypeVar("T")
EVERY = 2048  # items between checks: ~2 ms of planning, a negligible cost


class Cancelled(Exception):
    """Raised at a checkpoint once ``stop()`` is true; ``seen`` items got through."""

    def __init__(self, seen: int = 0) -> None:
        super().__init__(f"cancelled after {seen} items")
        self.seen = seen


def checkpoint(stop: Callable[[], bool]) -> None:
    """Raise :class:`Cancelled` if ``stop()`` is true."""
    if stop():
        raise Cancelled()


def checked(items: Iterable[T], stop: Callable[[], bool], every: int = EVERY) -> Iterator[T]:
    """``items``, raising :class:`Cancelled` at the first check after ``stop()`` turns true."""
    for seen, item in enumerate(items):
        if not seen % every and stop():
            raise Cancelled(seen)
        yield item
