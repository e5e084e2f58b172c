"""The side index parts of a run: which worker builds which, and when all are there.

Why here and not in the controller's threads: the two side indexes are scans
of the whole archive (:mod:`zexport.sources.archive.index_parts`). Cut into one
rowid range per worker, they are built by the workers, side by side, while the
controller plans; no batch is sent before every part is built (a worker reads
a batch from all of them).

:class:`IndexTable` holds the rules, as plain data (no sockets, no clock, no
asyncio): a part goes to a worker that asked for work; a part whose worker
dies goes back to the queue, and after :data:`LOST_PARTS` such losses the
controller builds it itself (a part that kills its workers must not stop the
run). What could not be built goes into the report once per index.
"""

from __future__ import annotations

from dataclasses import dataclass

from zexport.run.report import RunReport
from zexport.sources.archive import IndexPart, PartErrors

# A part lost with this many workers is built by the controller itself.
LOST_PARTS = 2


@dataclass
class PartState:
    """One part and where it is."""

    part: IndexPart
    worker: int | None = None  # building it now; None: queued (or done)
    lost: int = 0  # workers that died building it
    here: bool = False  # the controller builds it
    done: bool = False


class IndexTable:
    """Which parts are queued, with which worker, built by the controller, done."""

    def __init__(self, parts: list[IndexPart]) -> None:
        self.parts = [PartState(part) for part in parts]
        self.left = len(self.parts)

    @property
    def complete(self) -> bool:
        """Every part is built (or failed, and said so): batches may go out."""
        return self.left == 0

    def building(self) -> set[int]:
        """The workers building a part now (``zexport status`` shows them as indexing)."""
        return {state.worker for state in self.parts
                if state.worker is not None and not state.done}

    def next_for(self, wid: int) -> IndexPart | None:
        """The next queued part, now worker ``wid``'s; None when none is queued."""
        for state in self.parts:
            if not state.done and not state.here and state.worker is None:
                state.worker = wid
                return state.part
        return None

    def unsent(self, number: int) -> None:
        """A part's frame could not be sent: queued again, blaming nobody."""
        self.parts[number].worker = None

    def done(self, number: int, wid: int | None) -> bool:
        """Part ``number`` was built, by worker ``wid`` (None: by the controller).

        False, and nothing changes, for a part that is not that one's (late
        word from a worker it was taken from) or is done already.
        """
        if not 0 <= number < len(self.parts):
            return False
        state = self.parts[number]
        if state.done or (not state.here if wid is None else state.worker != wid):
            return False
        state.done, state.worker, state.here = True, None, False
        self.left -= 1
        return True

    def worker_lost(self, wid: int) -> list[IndexPart]:
        """Worker ``wid`` died: its part is queued again, or, lost :data:`LOST_PARTS`
        times, returned for the controller to build."""
        here = []
        for state in self.parts:
            if state.worker == wid and not state.done:
                state.worker = None
                state.lost += 1
                if state.lost >= LOST_PARTS:
                    state.here = True
                    here.append(state.part)
        return here


def record_errors(report: RunReport, errors: PartErrors) -> None:
    """Say in the report what a part could not build, once per index.

    Without attachments the run is partial (they are missing from it); without
    the message runs it is only slower (messages are read by conversation).
    """
    if errors.attachments and not any(e.startswith(_ATTACHMENTS) for e in report.run_errors):
        report.run_errors.append(
            f"{_ATTACHMENTS} ({errors.attachments}); conversations were exported without"
            " their attachment files")
    if errors.messages and not any(n.startswith(_MESSAGES) for n in report.notes):
        report.notes.append(
            f"{_MESSAGES} ({errors.messages}); messages were read by conversation, which"
            " is slow on an archive without its own index")


_ATTACHMENTS = "the archive's attachments could not be read"
_MESSAGES = "the message index could not be built"
