"""The archive's side indexes in parts: each part a rowid range, built by any process.

Why: the app's schema has no index on ``messages.conversation_id`` nor on
``attachments.message_id``, so a run scans both tables once to write where
each conversation's messages are (:mod:`.message_runs`) and a copy of its
attachment rows (:mod:`.attachment_copy`). One scan is serial work that
grows with the archive; cut into rowid ranges, the scans are independent
(a range boundary only starts one more run), so the workers build them side
by side while the controller plans, and a worker reads a batch from every
part at once (:class:`~zexport.sources.archive.batch_reader.BatchReader`).

A part file holds a ``built`` table naming what it holds (``runs``, ``att``)
and the rowid range it covers; a reader uses a kind only when the parts it
has cover every rowid up to the last one planned, without a gap.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable
from dataclasses import dataclass

import apsw

from zexport.errors import ArchiveError
from zexport.sources.archive.attachment_copy import copy_attachments
from zexport.sources.archive.message_runs import has_conversation_index, write_runs
from zexport.sources.archive.opening import open_archive
from zexport.sources.archive.side_file import open_side_file

MIN_ROWID = -(2**63)  # SQLite's smallest rowid: the first part starts there
# VM instructions between two calls of a part's interrupt check (about 0.1-0.5 ms).
INTERRUPT_STEPS = 20_000

Range = tuple[int, int]  # rowids [first, stop)


@dataclass(frozen=True)
class IndexPart:
    """One part's work: a rowid range of ``messages`` and one of ``attachments``
    (None: that side index is not built, see :class:`PlannedParts`)."""

    number: int
    messages: Range | None
    attachments: Range | None


@dataclass
class PartErrors:
    """Why a side index could not be built (None: built, or not asked for)."""

    messages: str | None = None
    attachments: str | None = None


@dataclass
class PlannedParts:
    """The parts of a run's side indexes, and what could not even be planned."""

    parts: list[IndexPart]
    errors: PartErrors


class IndexInterrupted(Exception):
    """The part's interrupt check said stop (the run is being cancelled)."""


def part_path(run_dir: str, number: int) -> str:
    """Where part ``number`` of a run's side indexes is written."""
    return os.path.join(run_dir, f"index-{number}.db")


def split(lowest: int | None, highest: int | None, count: int) -> list[Range]:
    """``count`` rowid ranges covering every rowid up to ``highest`` (the first from
    :data:`MIN_ROWID`), the rows between ``lowest`` and ``highest`` cut evenly."""
    if lowest is None or highest is None:
        lowest = highest = 0
    span = highest - lowest + 1
    bounds = [MIN_ROWID, *(lowest + span * i // count for i in range(1, count)), highest + 1]
    return [(bounds[i], bounds[i + 1]) for i in range(count)]


def plan_parts(archive_path: str, count: int) -> PlannedParts:
    """Cut the side indexes into ``count`` parts of about equal size.

    Reads only each table's lowest and highest rowid (two b-tree seeks).
    Messages get no ranges when the archive has its own index on
    ``conversation_id`` (workers use it); a table that cannot be read gets
    none either, and the reason is in ``errors``.
    """
    count = max(1, count)
    errors = PartErrors()
    messages: list[Range] | None = None
    attachments: list[Range] | None = None
    try:
        conn = open_archive(archive_path)
    except ArchiveError as exc:
        errors.messages = errors.attachments = str(exc)
    else:
        try:
            try:
                if not has_conversation_index(conn):
                    messages = split(*_bounds(conn, "messages"), count)
            except apsw.Error as exc:
                errors.messages = str(exc)
            try:
                attachments = split(*_bounds(conn, "attachments"), count)
            except apsw.Error as exc:
                errors.attachments = str(exc)
        finally:
            conn.close()
    return PlannedParts([IndexPart(i, messages[i] if messages else None,
                                   attachments[i] if attachments else None)
                         for i in range(count)], errors)


def _bounds(conn: apsw.Connection, table: str) -> tuple[int | None, int | None]:
    row = conn.execute(f"SELECT min(rowid), max(rowid) FROM {table}").fetchone()
    return (row[0], row[1]) if row else (None, None)


def build_part(archive_path: str, target: str, part: IndexPart,
               interrupt: Callable[[], bool] | None = None) -> PartErrors:
    """Write ``part`` of the side indexes to ``target``; say what could not be built.

    ``interrupt`` is called every few thousand SQLite steps; when it returns
    True the build stops (:class:`IndexInterrupted`), leaving no file. An
    exception it raises (a worker's SIGTERM) goes through as it is. The file
    is written beside ``target`` under this process's own name and renamed
    into place when complete, so a reader sees a whole part or none, and a
    process killed mid-part leaves only its own temporary file.
    """
    partial = f"{target}.{os.getpid()}.partial"
    with contextlib.suppress(FileNotFoundError):
        os.unlink(partial)
    stopped = False

    def check() -> bool:
        nonlocal stopped
        stopped = stopped or bool(interrupt is not None and interrupt())
        return stopped

    errors = PartErrors()
    side, utf8 = open_side_file(archive_path, partial)
    try:
        if interrupt is not None:
            side.setprogresshandler(check, INTERRUPT_STEPS)
        side.execute("CREATE TABLE built (what TEXT PRIMARY KEY, first INTEGER NOT NULL,"
                     " stop INTEGER NOT NULL)")
        for what, rowids in (("runs", part.messages), ("att", part.attachments)):
            if rowids is None:
                continue
            if check():  # (also before the first SQLite step: a small part has few)
                raise IndexInterrupted()
            try:
                if what == "runs":
                    write_runs(side, *rowids)
                else:
                    copy_attachments(side, utf8, *rowids)
                side.execute("INSERT INTO built VALUES (?, ?, ?)", (what, *rowids))
            except (apsw.Error, OSError) as exc:
                if stopped:
                    raise IndexInterrupted() from None
                if what == "runs":
                    errors.messages = str(exc)
                else:
                    errors.attachments = str(exc)
        side.execute("DETACH DATABASE src")
    except BaseException:
        side.close()
        with contextlib.suppress(OSError):
            os.unlink(partial)
        raise
    side.close()
    os.replace(partial, target)
    return errors


MAX_ROWID = 2**63 - 1


def build_message_index(archive_path: str, target: str) -> bool:
    """The message index in one part, every rowid up to the highest one seen.

    Returns False, and writes nothing, when the archive has its own index on
    ``messages.conversation_id``: then readers use it.
    """
    planned = plan_parts(archive_path, 1)
    if planned.errors.messages:
        raise ArchiveError(planned.errors.messages)
    messages = planned.parts[0].messages
    if messages is None:
        return False
    errors = build_part(archive_path, target, IndexPart(0, messages, None))
    if errors.messages:
        with contextlib.suppress(OSError):
            os.unlink(target)
        raise ArchiveError(errors.messages)
    return True


def build_attachment_index(archive_path: str, target: str) -> None:
    """The attachment copy in one part (every row); raises what SQLite raises."""
    side, utf8 = open_side_file(archive_path, target)
    try:
        side.execute("CREATE TABLE built (what TEXT PRIMARY KEY, first INTEGER NOT NULL,"
                     " stop INTEGER NOT NULL)")
        copy_attachments(side, utf8, MIN_ROWID, MAX_ROWID)
        side.execute("INSERT INTO built VALUES ('att', ?, ?)", (MIN_ROWID, MAX_ROWID))
        side.execute("DETACH DATABASE src")
    finally:
        side.close()
