"""Progress display: a rich live bar, JSON lines for programs, or nothing.

Only the controller draws progress, from what workers report; workers never
write to the terminal. ``--progress json`` prints the app's progress object
``{"phase", "current", "total", "conversationTitle"}`` one per line on stdout
(extra keys may follow; readers must ignore keys they do not know), and ends
with one summary object of the same shape, phase ``done`` (README, "Progress
as JSON", documents every key).
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

    def summary(self, summary: dict[str, Any]) -> None:
        """The run's last word, after :meth:`close` (see :func:`summary_object`)."""


def summary_object(report: Any, status: int, report_path: str) -> dict[str, Any]:
    """The object ``--progress json`` ends with: the app's progress shape, phase
    ``done``, and under ``summary`` what the run's summary lines say."""
    counts = report.counts()
    done = counts["exported"] + counts["skipped"] + counts["failed"]
    return {
        "phase": "done", "current": done, "total": counts["selected"], "conversationTitle": "",
        "summary": {
            "status": report.status, "exit_status": status,
            "cancel_reason": report.cancel_reason, "seconds": round(report.seconds, 3),
            "counts": counts,
            "attachments_unavailable_by_reason": dict(report.attachment_reasons.most_common()),
            "conflicts": [c["path"] for c in report.conflicts[:100]],
            "report": report_path,
        },
    }


class NullProgress:
    """Shows nothing."""

    def phase(self, phase: str, total: int) -> None:
        pass

    def update(self, phase: str, current: int, total: int, title: str,
               extra: dict[str, Any]) -> None:
        pass

    def close(self) -> None:
        pass

    def summary(self, summary: dict[str, Any]) -> None:
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

    def summary(self, summary: dict[str, Any]) -> None:
        self._emit(summary)


class RichProgress:
    """A live terminal bar: conversations, attachments (copied, of which downloaded,
    and unavailable), rate, failures, ETA."""

    draws_on_terminal = True  # a closed terminal (SIGHUP) must not be drawn on

    def __init__(self, console: Any = None) -> None:
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
            TextColumn("{task.fields[attachments]}"),
            TextColumn("[red]{task.fields[failed]}"),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            console=console or Console(stderr=True),
            transient=False,
        )
        self._tasks: dict[str, TaskID] = {}
        self._progress.start()

    def phase(self, phase: str, total: int) -> None:
        if phase not in self._tasks:
            self._tasks[phase] = self._progress.add_task(
                phase, total=total or None, rate="", failed="", attachments="")

    def update(self, phase: str, current: int, total: int, title: str,
               extra: dict[str, Any]) -> None:
        self.phase(phase, total)
        failed = extra.get("failed", 0)
        rate = extra.get("rate")
        self._progress.update(
            self._tasks[phase], completed=current, total=total or None,
            rate=f"{rate:,.0f}/s" if rate else "",
            failed=f"{failed} failed" if failed else "",
            attachments=_attachments_text(extra),
        )

    def close(self) -> None:
        self._progress.stop()

    def summary(self, summary: dict[str, Any]) -> None:
        pass  # the summary lines follow on the terminal


def _attachments_text(extra: dict[str, Any]) -> str:
    """``attachments: 257 copied (12 downloaded), 345 unavailable`` (empty when none)."""
    copied = int(extra.get("attachments_copied") or 0)
    downloaded = int(extra.get("attachments_downloaded") or 0)
    unavailable = int(extra.get("attachments_unavailable") or 0)
    if not (copied or downloaded or unavailable):
        return ""
    text = f"attachments: {copied:,} copied"
    if downloaded:
        text += f" ({downloaded:,} downloaded)"
    if unavailable:
        text += f", [yellow]{unavailable:,} unavailable[/]"
    return text


def make_progress(kind: str) -> ProgressSink:
    """``bar``, ``json`` or ``none``."""
    if kind == "json":
        return JsonProgress()
    if kind == "bar":
        return RichProgress()
    return NullProgress()
