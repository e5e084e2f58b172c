"""The run report, ``<out>/.zexport/report.json``: what happened, every failure and why.

Written atomically at the end of every run, cancelled ones included, so a
script (or a person) can see exactly which conversations and attachments
did not make it, and which were exported with repairs (warnings).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import orjson

from .output import atomic_write

EXIT_OK = 0
EXIT_PARTIAL = 1
EXIT_USAGE = 2
EXIT_CANCELLED = 130
MAX_WARNINGS = 100_000


@dataclass
class RunReport:
    """Accumulates outcomes during a run; serialised once at the end."""

    options: dict[str, Any]
    started: float
    exported: int = 0
    skipped: int = 0
    failures: list[dict[str, Any]] = field(default_factory=list)
    attachment_failures: list[dict[str, Any]] = field(default_factory=list)
    attachments_exported: int = 0
    warnings: list[dict[str, Any]] = field(default_factory=list)
    warnings_dropped: int = 0
    worker_deaths: list[dict[str, Any]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    run_errors: list[str] = field(default_factory=list)  # not tied to one conversation
    downloads: dict[str, Any] = field(default_factory=dict)
    status: str = "running"
    selected: int = 0
    finished: float = 0.0

    def failure(self, conversation_id: str, folder: str, reason: str) -> None:
        """Record a conversation that was not exported."""
        self.failures.append(
            {"conversation_id": conversation_id, "folder": folder, "reason": reason})

    def outcome(self, conversation_id: str, folder: str, res: dict[str, Any]) -> None:
        """Record one worker result (see docs/protocol.md, ``done``)."""
        if res.get("ok"):
            if res.get("skipped"):
                self.skipped += 1
            else:
                self.exported += 1
        else:
            self.failure(conversation_id, folder, str(res.get("error") or "unknown error"))
        self.attachments_exported += int(res.get("attachments_ok") or 0)
        for item in res.get("attachments_failed") or []:
            if isinstance(item, (list, tuple)) and len(item) == 2:
                self.attachment_failures.append({
                    "conversation_id": conversation_id, "folder": folder,
                    "attachment_id": str(item[0]), "reason": str(item[1])})
        for text in res.get("warnings") or []:
            if len(self.warnings) < MAX_WARNINGS:
                self.warnings.append({"conversation_id": conversation_id, "message": str(text)})
            else:
                self.warnings_dropped += 1

    def finish(self, selected: int, done: int, cancelled: str | None) -> int:
        """Close the report; return the exit status it implies."""
        self.selected = selected
        self.finished = time.time()
        if cancelled and cancelled != "finished" and done < selected:
            self.status = "cancelled"
            return EXIT_CANCELLED
        if self.failures or self.attachment_failures or self.run_errors:
            self.status = "partial"
            return EXIT_PARTIAL
        self.status = "ok"
        return EXIT_OK

    @property
    def seconds(self) -> float:
        """Wall time of the run."""
        return max(0.0, (self.finished or time.time()) - self.started)

    def to_dict(self) -> dict[str, Any]:
        """The JSON document."""
        return {
            "version": 1,
            "status": self.status,
            "started_at": self.started,
            "finished_at": self.finished,
            "seconds": round(self.seconds, 3),
            "options": self.options,
            "counts": {
                "selected": self.selected,
                "exported": self.exported,
                "skipped": self.skipped,
                "failed": len(self.failures),
                "not_reached": max(
                    0, self.selected - self.exported - self.skipped - len(self.failures)),
                "attachments_exported": self.attachments_exported,
                "attachments_failed": len(self.attachment_failures),
                "warnings": len(self.warnings) + self.warnings_dropped,
            },
            "failures": self.failures,
            "attachment_failures": self.attachment_failures,
            "warnings": self.warnings,
            "run_errors": self.run_errors,
            "worker_deaths": self.worker_deaths,
            "downloads": self.downloads,
            "notes": self.notes,
        }

    def write(self, path: str) -> None:
        """Write the report atomically."""
        atomic_write(path, orjson.dumps(self.to_dict(), option=orjson.OPT_INDENT_2) + b"\n")
