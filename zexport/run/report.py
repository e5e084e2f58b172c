"""The run report, ``<out>/.zexport/report.json``: what happened, every failure and why.

Written atomically at the end of every run, cancelled ones included, so a
script (or a person) can see exactly which conversations and attachments
did not make it, and which were exported with repairs (warnings).

The two lists that grow with the archive (attachment failures and warnings:
a 100k archive has tens of thousands) are spooled to files while the run
goes, one JSON object a line, and streamed into the report at the end, so
the controller's memory does not grow with them.
"""

from __future__ import annotations

import contextlib
import os
import re
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import IO, Any

import orjson

from zexport.core.output import atomic_file, create_new
from zexport.errors import ExitStatus

EXIT_OK = ExitStatus.OK
EXIT_PARTIAL = ExitStatus.FAILED
EXIT_USAGE = ExitStatus.USAGE
EXIT_CANCELLED = ExitStatus.CANCELLED
MAX_WARNINGS = 100_000


@dataclass
class RunReport:
    """Accumulates outcomes during a run; serialised once at the end."""

    options: dict[str, Any]
    started: float
    exported: int = 0
    skipped: int = 0
    failures: list[dict[str, Any]] = field(default_factory=list)
    attachments_exported: int = 0
    attachments_failed: int = 0
    warnings_count: int = 0
    warnings_dropped: int = 0
    spool_dir: str | None = None  # where the growing lists go; in memory when None
    worker_deaths: list[dict[str, Any]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    run_errors: list[str] = field(default_factory=list)  # not tied to one conversation
    downloads: dict[str, Any] = field(default_factory=dict)
    status: str = "running"
    selected: int = 0
    finished: float = 0.0
    # Files left as they were (edited, or not written by zexport): path, reason, new version.
    conflicts: list[dict[str, Any]] = field(default_factory=list)
    attachment_reasons: Counter[str] = field(default_factory=Counter)
    strict: bool = False  # attachment problems and conflicts fail the run (--strict)
    cancel_reason: str | None = None  # interrupted (Ctrl-C, SIGTERM), hangup, cancelled...

    def __post_init__(self) -> None:
        self._spools: dict[str, _Spool] = {
            name: _Spool(os.path.join(self.spool_dir, f".report-{name}.jsonl")
                         if self.spool_dir else None)
            for name in ("attachment_failures", "warnings")}

    def spool_to(self, folder: str) -> None:
        """Spool the growing lists into ``folder`` from now on (call before any outcome).

        The spool files are created here, afresh (see :meth:`_Spool.create`), so a
        folder where they cannot be made is refused before the run starts.
        """
        self.spool_dir = folder
        self.__post_init__()
        for spool in self._spools.values():
            spool.create()

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
        copied = res.get("attachments_ok")
        if copied:
            self.attachments_exported += int(copied)
        # The lists are mostly empty: each is looked at only when it holds something.
        conflicts = res.get("conflicts")
        if conflicts:
            for item in conflicts:
                if isinstance(item, (list, tuple)) and len(item) == 2:
                    self.conflict(conversation_id, str(item[0]), str(item[1]),
                                  f".zexport/conflicts/{item[0]}")
        missing = res.get("attachments_failed")
        if missing:
            for item in missing:
                if isinstance(item, (list, tuple)) and len(item) == 2:
                    self.attachments_failed += 1
                    self.attachment_reasons[str(item[1])] += 1
                    self._spools["attachment_failures"].add({
                        "conversation_id": conversation_id, "folder": folder,
                        "attachment_id": str(item[0]), "reason": str(item[1])})
        warnings = res.get("warnings")
        if warnings:
            for text in warnings:
                if self.warnings_count < MAX_WARNINGS:
                    self.warnings_count += 1
                    self._spools["warnings"].add(
                        {"conversation_id": conversation_id, "message": str(text)})
                else:
                    self.warnings_dropped += 1

    def conflict(self, conversation_id: str, path: str, reason: str,
                 new_version: str | None) -> None:
        """Record a file left as it was; ``new_version``: where zexport's version went."""
        self.conflicts.append({"conversation_id": conversation_id, "path": path,
                               "reason": reason, "new_version": new_version})

    def finish(self, selected: int, done: int, cancelled: str | None,
               planned: bool = True) -> int:
        """Close the report; return the exit status it implies.

        Attachments that could not be had and files left alone are warnings
        (exit 0: a nightly cron job fails only for what needs a person), unless
        :attr:`strict`; a conversation that could not be exported, or a run-wide
        error, is a failure (1). ``planned`` False: the cancel came while planning,
        so ``selected`` is not known.
        """
        self.selected = selected
        self.finished = time.time()
        if cancelled and cancelled != "finished" and (done < selected or not planned):
            self.status = "cancelled"
            self.cancel_reason = cancelled
            return EXIT_CANCELLED
        if self.failures or self.run_errors or (
                self.strict and (self.attachments_failed or self.conflicts)):
            self.status = "partial"
            return EXIT_PARTIAL
        self.status = "ok"
        return EXIT_OK

    def attachment_lines(self, limit: int = 6) -> list[str]:
        """The summary's lines about unavailable attachments, grouped by reason, the
        largest groups first."""
        lines = []
        groups = self.attachment_reasons.most_common()
        for reason, count in groups[:limit]:
            lines.append(_reason_line(reason, count))
        rest = groups[limit:]
        if rest:
            lines.append(f"{sum(c for _, c in rest):,} attachments unavailable for"
                         f" {len(rest)} other reasons (see report.json)")
        return lines

    @property
    def seconds(self) -> float:
        """Wall time of the run."""
        return max(0.0, (self.finished or time.time()) - self.started)

    def to_dict(self) -> dict[str, Any]:
        """The JSON document (the spooled lists read back: for tests and small runs)."""
        doc = self._head()
        for name, spool in self._spools.items():
            doc[name] = list(spool.items())
        return doc

    def counts(self) -> dict[str, int]:
        """The counts (without reading the spooled lists back)."""
        counts: dict[str, int] = self._head()["counts"]
        return counts

    def _head(self) -> dict[str, Any]:
        return {
            "version": 1,
            "status": self.status,
            "cancel_reason": self.cancel_reason,
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
                "attachments_failed": self.attachments_failed,
                "conflicts": len(self.conflicts),
                "warnings": self.warnings_count + self.warnings_dropped,
            },
            "failures": self.failures,
            "conflicts": self.conflicts,
            "attachment_failures_by_reason": dict(self.attachment_reasons.most_common()),
            "run_errors": self.run_errors,
            "worker_deaths": self.worker_deaths,
            "downloads": self.downloads,
            "notes": self.notes,
        }

    def write(self, path: str) -> None:
        """Write the report atomically, streaming the spooled lists into it."""
        head = orjson.dumps(self._head(), option=orjson.OPT_INDENT_2)
        try:
            with atomic_file(path) as fh:
                fh.write(head[:-1].rstrip())  # without the closing brace
                for name, spool in self._spools.items():
                    fh.write(f',\n  "{name}": ['.encode())
                    first = True
                    for line in spool.lines():
                        fh.write(b"\n    " if first else b",\n    ")
                        fh.write(line)
                        first = False
                    fh.write(b"\n  ]" if not first else b"]")
                fh.write(b"\n}\n")
        finally:  # written or not (a full disk), the spool files go
            for spool in self._spools.values():
                spool.discard()


_NO_CREDENTIALS = re.compile(r"no credentials for (\S+) \(")


def _reason_line(reason: str, count: int) -> str:
    """One summary line for ``count`` attachments that failed for ``reason``."""
    noun = "attachment" if count == 1 else "attachments"
    match = _NO_CREDENTIALS.match(reason)
    if match:
        verb = "needs" if count == 1 else "need"
        return (f"{count:,} {noun} {verb} {match.group(1)} credentials: see --auth"
                " (docs/attachments.md)")
    return f"{count:,} {noun} unavailable: {reason}"


class _Spool:
    """An append-only list of JSON objects, in a file (or in memory without one).

    The file is read back through the descriptor it was written with, never
    reopened by name: whatever else appears at that name (a symlink planted
    in ``.zexport``, an earlier run's leftover) is never read into the report.
    """

    def __init__(self, path: str | None) -> None:
        self.path = path
        self._memory: list[bytes] = []
        self._fh: IO[bytes] | None = None

    def create(self) -> None:
        """Make the spool file: a new file at its name, replacing whatever is there."""
        if self.path is not None and self._fh is None:
            self._fh = os.fdopen(create_new(self.path), "a+b")  # closed in discard()

    def add(self, item: dict[str, Any]) -> None:
        data = orjson.dumps(item)
        if self.path is None:
            self._memory.append(data)
            return
        self.create()
        assert self._fh is not None
        self._fh.write(data + b"\n")

    def lines(self) -> Iterator[bytes]:
        if self.path is None:
            yield from self._memory
            return
        if self._fh is None:
            return
        self._fh.flush()
        self._fh.seek(0)  # appends still go to the end (O_APPEND)
        for line in self._fh:
            yield line.rstrip(b"\n")

    def items(self) -> Iterator[dict[str, Any]]:
        for line in self.lines():
            item: dict[str, Any] = orjson.loads(line)
            yield item

    def discard(self) -> None:
        if self._fh is not None:
            with contextlib.suppress(OSError):  # unflushed lines on a full disk
                self._fh.close()
            self._fh = None
            if self.path is not None:
                with contextlib.suppress(OSError):  # removes the name only, never a target
                    os.unlink(self.path)
