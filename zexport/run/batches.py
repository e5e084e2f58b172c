"""The batch table: which conversations are queued, with which worker, done or failed.

The lease rules of a run live here and nowhere else, as plain data and
methods: no sockets, no clock (callers pass the time), no asyncio, no files
(a batch's conversations are read through the ``load`` function given).
That is what lets every rule be tested in-process, without real workers
dying (tests/unit/run/test_batch_table.py).

A batch is a contiguous run ``[start, stop)`` of the export order (record
shards are merged by ``start``). It moves *queued* → *sent* (to one worker,
which had asked for work) → *taken* (the worker said ``took``) → *done*; or
it ends *split* (its halves replace it) or *failed*.

Blame is counted per conversation, never per batch or per run:

- a batch **sent** to a worker that dies before taking it was never started:
  it goes back to the queue as it is, blaming nobody (after
  :data:`LOST_DELIVERIES` such losses it is treated as taken: a frame that
  kills its reader is not innocent);
- a batch **taken** by a worker that dies is cut in two halves, both queued
  again: repeated, this bisection isolates a conversation that kills its
  worker in ``log2(batch size)`` deaths, and never fails an innocent one;
- a batch of **one** conversation whose worker dies counts an attempt for
  that conversation; :data:`SOLO_ATTEMPTS` of them fail it (one death may be
  somebody else's doing: an OOM kill, a ``kill -9``);
- a conversation the worker names as **timed out** fails at once; the rest
  of its batch is queued again, blaming nobody.

Every call that changes the table in one of these ways counts as
:attr:`BatchTable.progress`: the worker pool replaces dead workers as long
as deaths make progress, and stops when they do not (a worker that dies at
start-up, again and again).
"""

from __future__ import annotations

import collections
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

# A conversation that killed its worker this many times, alone in its batch, fails.
SOLO_ATTEMPTS = 2
# A batch lost this many times before any worker took it is treated as taken.
LOST_DELIVERIES = 3

QUEUED, SENT, TAKEN, DONE, SPLIT, FAILED = "queued", "sent", "taken", "done", "split", "failed"
FINAL = frozenset((DONE, SPLIT, FAILED))

# (conversation id, folder, source fingerprint or None), as Plan.items gives them.
Item = tuple[str, str, str | None]
Loader = Callable[[int, int], list[Item]]


@dataclass
class Batch:
    """A unit of work and where it is."""

    id: int
    start: int  # export-order positions [start, stop)
    stop: int
    state: str = QUEUED
    worker: int | None = None
    sent_at: float = 0.0
    lost: int = 0  # deliveries lost with a worker that never took it
    rows: list[Item] | None = None  # read from the plan when first dispatched
    accepted: bool = False  # done by a worker (not failed or split): its shard counts

    @property
    def size(self) -> int:
        """Conversations in the batch."""
        return self.stop - self.start

    @property
    def items(self) -> list[tuple[str, str]]:
        """``(conversation_id, folder)`` pairs, as the ``batch`` frame carries them."""
        return [(cid, folder) for cid, folder, _ in self.rows or ()]


@dataclass
class Failure:
    """A conversation the table gave up on, and why."""

    conversation_id: str
    folder: str
    reason: str


@dataclass
class Outcome:
    """What one event did to the table: conversations failed, and whether it was progress."""

    failures: list[Failure] = field(default_factory=list)
    progress: bool = False


def cut(sizes: Sequence[int], per_batch: int, max_messages: int,
        alone_from: int, taper: int = 0) -> list[tuple[int, int, bool]]:
    """Cut the export order into batches: ``(start, stop, alone)`` ranges.

    ``sizes`` are message counts in export order. A batch holds at most
    ``per_batch`` conversations and, beyond its first, at most
    ``max_messages`` messages; a conversation of ``alone_from`` messages or
    more gets a batch of its own (``alone``), so that no other conversation
    waits behind it in a worker, and is listed first, longest first, so that
    it does not start last and keep the run waiting alone.

    ``taper``: batches shrink towards the end, none holding more than 1/``taper``
    of the conversations from its start on (guided self-scheduling), so that the
    last ones are small and no worker finishes a long batch alone while the others
    wait: large batches where they are cheap, small ones where they balance.
    """
    normal: list[tuple[int, int, bool]] = []
    long: list[tuple[int, int, int]] = []
    start = count = messages = 0
    cap = _cap(per_batch, len(sizes), 0, taper)
    for pos, n in enumerate(sizes):
        if n >= alone_from:
            if count:
                normal.append((start, pos, False))
            long.append((-n, pos, pos + 1))
            start, count, messages = pos + 1, 0, 0
            cap = _cap(per_batch, len(sizes), start, taper)
            continue
        if count and (count >= cap or messages + n > max_messages):
            normal.append((start, pos, False))
            start, count, messages = pos, 0, 0
            cap = _cap(per_batch, len(sizes), start, taper)
        count += 1
        messages += n
    if count:
        normal.append((start, len(sizes), False))
    return [(a, b, True) for _, a, b in sorted(long)] + normal


# Tapering stops at this many conversations a batch: smaller ones would balance nothing
# more and each still costs its fixed millisecond.
TAPER_FLOOR = 8


def _cap(per_batch: int, total: int, start: int, taper: int) -> int:
    """The most conversations a batch starting at ``start`` may hold (see :func:`cut`)."""
    if taper <= 0:
        return per_batch
    return min(per_batch, max(TAPER_FLOOR, -(-(total - start) // taper)))


class BatchTable:
    """Every batch of a run and the rules that move them (see the module docstring)."""

    def __init__(self, load: Loader) -> None:
        self.load = load
        self.batches: list[Batch] = []
        self.queue: collections.deque[Batch] = collections.deque()
        self.active: dict[int, Batch] = {}  # sent or taken, by id
        self.attempts: dict[str, int] = {}  # conversation id -> deaths while alone
        self.unfinished = 0  # batches not in a final state
        self.progress = 0  # events that moved the run forward (see module docstring)

    # -- building ---------------------------------------------------------------
    def add(self, start: int, stop: int, rows: list[Item] | None = None,
            front: bool = False) -> Batch:
        """A new queued batch over positions ``[start, stop)``."""
        batch = Batch(len(self.batches), start, stop, rows=rows)
        self.batches.append(batch)
        self.unfinished += 1
        if front:
            self.queue.appendleft(batch)
        else:
            self.queue.append(batch)
        return batch

    # -- queries ----------------------------------------------------------------
    def get(self, batch_id: object) -> Batch | None:
        """The batch with that id, or None for an id that names none."""
        if type(batch_id) is int and 0 <= batch_id < len(self.batches):
            return self.batches[batch_id]
        return None

    @property
    def finished(self) -> bool:
        """Every batch is done, split or failed."""
        return self.unfinished == 0

    def has_work(self) -> bool:
        """Some batch waits to be sent."""
        return any(b.state == QUEUED for b in self.queue)

    def held_by(self, worker: int) -> list[Batch]:
        """Batches sent to or taken by ``worker``."""
        return [b for b in self.active.values() if b.worker == worker]

    def taken_by(self) -> dict[int, int]:
        """Worker id -> the batch it is working on."""
        return {b.worker: b.id for b in self.active.values()
                if b.state == TAKEN and b.worker is not None}

    def accepted(self) -> list[Batch]:
        """Batches a worker finished, in export order (their record shards count)."""
        return sorted((b for b in self.batches if b.accepted), key=lambda b: b.start)

    # -- events -----------------------------------------------------------------
    def next_for(self, worker: int, now: float) -> Batch | None:
        """The next queued batch, now sent to ``worker`` (which asked for work)."""
        while self.queue:
            batch = self.queue.popleft()
            if batch.state != QUEUED:
                continue
            if batch.rows is None:
                batch.rows = self.load(batch.start, batch.stop)
            self._move(batch, SENT, worker)
            batch.sent_at = now
            return batch
        return None

    def unsent(self, batch: Batch) -> None:
        """A batch that could not be handed over after all goes back first in line."""
        if batch.state == SENT:
            self._move(batch, QUEUED, None)
            self.queue.appendleft(batch)

    def took(self, batch_id: object, worker: int) -> bool:
        """``worker`` started the batch; False for a frame that no longer counts."""
        batch = self.get(batch_id)
        if batch is None or batch.state != SENT or batch.worker != worker:
            return False
        self._move(batch, TAKEN, worker)
        return True

    def done(self, batch_id: object, worker: int) -> list[Item] | None:
        """``worker`` finished the batch: return its conversations, to record the
        results; None for a late or duplicate answer, or one about a batch handed
        to another worker."""
        batch = self.get(batch_id)
        if batch is None or batch.state not in (SENT, TAKEN) or batch.worker != worker:
            return None
        rows = batch.rows or []
        self._finish(batch, DONE)
        batch.accepted = True
        self.progress += 1
        return rows

    def worker_lost(self, worker: int, why: str) -> Outcome:
        """``worker`` died (or was killed): apply the blame rules to what it held."""
        out = Outcome()
        for batch in self.held_by(worker):
            if batch.state == SENT and batch.lost + 1 < LOST_DELIVERIES:
                batch.lost += 1
                self._move(batch, QUEUED, None)
                self.queue.appendleft(batch)  # never started: nobody is to blame
                continue
            out.progress = True
            if batch.size > 1:
                self._bisect(batch)
                continue
            cid, folder, _ = (batch.rows or [("", "", None)])[0]
            tries = self.attempts.get(cid, 0) + 1
            self.attempts[cid] = tries
            if tries >= SOLO_ATTEMPTS:
                self._finish(batch, FAILED)
                out.failures.append(Failure(cid, folder, (
                    f"its worker {why} while exporting this conversation alone"
                    f" ({tries} times)")))
            else:
                self._move(batch, QUEUED, None)
                self.queue.appendleft(batch)
        if out.progress:
            self.progress += 1
        return out

    def timed_out(self, batch_id: object, worker: int, conversation_id: str,
                  reason: str) -> Outcome:
        """The worker's render timeout stopped ``conversation_id``: it fails, the
        conversations before and after it are queued again, blaming nobody."""
        out = Outcome()
        batch = self.get(batch_id)
        if batch is None or batch.state != TAKEN or batch.worker != worker:
            return out
        rows = batch.rows or []
        index = next((i for i, row in enumerate(rows) if row[0] == conversation_id), None)
        if index is None:
            return out
        self._finish(batch, SPLIT)
        for lo, hi in ((index + 1, len(rows)), (0, index)):  # each to the front: in order
            if hi > lo:
                self.add(batch.start + lo, batch.start + hi, rows[lo:hi], front=True)
        out.failures.append(Failure(conversation_id, rows[index][1], reason))
        out.progress = True
        self.progress += 1
        return out

    def fail_rest(self, reason: str) -> list[Failure]:
        """Give up on every batch not finished (the run cannot go on)."""
        failures = []
        for batch in self.batches:
            if batch.state in FINAL:
                continue
            if batch.rows is None:
                batch.rows = self.load(batch.start, batch.stop)
            failures += [Failure(cid, folder, reason) for cid, folder, _ in batch.rows]
            self._finish(batch, FAILED)
        self.queue.clear()
        return failures

    # -- internals --------------------------------------------------------------
    def _bisect(self, batch: Batch) -> None:
        rows = batch.rows or self.load(batch.start, batch.stop)
        half = len(rows) // 2
        self._finish(batch, SPLIT)
        # Second half first: both go to the front, so the first half ends up first.
        self.add(batch.start + half, batch.stop, rows[half:], front=True)
        self.add(batch.start, batch.start + half, rows[:half], front=True)

    def _finish(self, batch: Batch, state: str) -> None:
        self._move(batch, state, batch.worker)
        batch.rows = None  # finished: only the small Batch stays in memory
        self.unfinished -= 1

    def _move(self, batch: Batch, state: str, worker: int | None) -> None:
        batch.state = state
        batch.worker = worker
        if state in (SENT, TAKEN):
            self.active[batch.id] = batch
        else:
            self.active.pop(batch.id, None)
