"""Progress display: a rich live bar, JSON lines for programs, or nothing.

Only the controller draws progress, from what workers report; workers never
write to the terminal. ``--progress json`` prints the app's progress object
``{"phase", "current", "total", "conversationTitle"}`` one per line on stdout
(extra keys may follow; readers must ignore keys they do not know).
"""

from __future__ import annotations

import sys
from typing import Any, Protocol

import orjson


class ProgressSink(Protocol):
    """Where the controller reports progress."""

    def phase(self, phase: str, total: int) -> None:
        """A phase (counting, downloading, exporting) starts with ``total`` steps."""

    def update(self, phase: str, current: int, total: int, title: str,
               extra: dict[str, Any]) -> None:
        """``current`` of ``total`` steps done; ``title`` is the latest conversation."""

    def close(self) -> None:
        """Stop drawing (before the summary is printed)."""


class NullProgress:
    """Shows nothing."""

    def phase(self, phase: str, total: int) -> None:
        pass

    def update(self, phase: str, current: int, total: int, title: str,
               extra: dict[str, Any]) -> None:
        pass

    def close(self) -> None:
        pass


class JsonProgress:
    """One JSON object per line on stdout, in the app's progress shape."""

    def __init__(self, stream: Any = None) -> None:
        self.stream = stream or sys.stdout

    def _emit(self, obj: dict[str, Any]) -> None:
        self.stream.write(orjson.dumps(obj).decode() + "\n")
        self.stream.flush()

    def phase(self, phase: str, total: int) -> None:
        self._emit({"phase": phase, "current": 0, "total": total, "conversationTitle": ""})

    def update(self, phase: str, current: int, total: int, title: str,
               extra: dict[str, Any]) -> None:
        obj: dict[str, Any] = {"phase": phase, "current": current, "total": total,
                               "conversationTitle": title}
        obj.update(extra)
        self._emit(obj)

    def close(self) -> None:
        pass


class RichProgress:
    """A live terminal bar: conversations, rate, ETA, failures."""

    def __init__(self) -> None:
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TaskID,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )

        self._progress = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[rate]}"),
            TextColumn("[red]{task.fields[failed]}"),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            console=Console(stderr=True),
            transient=False,
        )
        self._tasks: dict[str, TaskID] = {}
        self._progress.start()

    def phase(self, phase: str, total: int) -> None:
        if phase not in self._tasks:
            self._tasks[phase] = self._progress.add_task(
                phase, total=total or None, rate="", failed="")

    def update(self, phase: str, current: int, total: int, title: str,
               extra: dict[str, Any]) -> None:
        self.phase(phase, total)
        failed = extra.get("failed", 0)
        rate = extra.get("rate")
        self._progress.update(
            self._tasks[phase], completed=current, total=total or None,
            rate=f"{rate:,.0f}/s" if rate else "",
            failed=f"{failed} failed" if failed else "",
        )

    def close(self) -> None:
        self._progress.stop()


def make_progress(kind: str) -> ProgressSink:
    """``bar``, ``json`` or ``none``."""
    if kind == "json":
        return JsonProgress()
    if kind == "bar":
        return RichProgress()
    return NullProgress()
