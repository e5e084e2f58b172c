"""The lease rules of zexport.run.batches, in-process: no worker has to die for them."""

from __future__ import annotations

import random

import pytest

from zexport.run.batches import (
    DONE,
    FAILED,
    LOST_DELIVERIES,
    QUEUED,
    SENT,
    SOLO_ATTEMPTS,
    SPLIT,
    TAKEN,
    BatchTable,
    Item,
    cut,
)


def rows(start: int, stop: int) -> list[Item]:
    return [(f"c{i}", f"folder {i}", f"src{i}") for i in range(start, stop)]


class Loads:
    """A plan stand-in that counts its reads."""

    def __init__(self) -> None:
        self.calls: list[tuple[int, int]] = []

    def __call__(self, start: int, stop: int) -> list[Item]:
        self.calls.append((start, stop))
        return rows(start, stop)


def table_of(*ranges: tuple[int, int]) -> BatchTable:
    table = BatchTable(Loads())
    for start, stop in ranges:
        table.add(start, stop)
    return table


def run_with_crashers(n: int, size: int, crashers: set[str], workers: int = 2,
                      seed: int = 0) -> tuple[set[str], set[str], int]:
    """Drive a table as the controller would, with workers that die on ``crashers``.

    Each step, a random worker holding a batch finishes it (or dies, if the
    batch holds a crasher). Returns (done ids, failed ids, deaths).
    """
    rng = random.Random(seed)
    table = BatchTable(rows)
    for start in range(0, n, size):
        table.add(start, min(n, start + size))
    holding: dict[int, int] = {}
    done: set[str] = set()
    failed: set[str] = set()
    next_worker, deaths = workers, 0
    idle = list(range(workers))
    for _ in range(100_000):
        for w in list(idle):
            batch = table.next_for(w, 0.0)
            if batch is None:
                break
            assert table.took(batch.id, w)
            holding[w] = batch.id
            idle.remove(w)
        if not holding:
            break
        w = rng.choice(sorted(holding))
        batch = table.batches[holding.pop(w)]
        held = {cid for cid, _ in batch.items}
        if held & crashers:
            deaths += 1
            failed |= {f.conversation_id for f in table.worker_lost(w, "died").failures}
            idle.append(next_worker)  # the replacement
            next_worker += 1
        else:
            got = table.done(batch.id, w)
            assert got is not None
            done |= {cid for cid, _, _ in got}
            idle.append(w)
    assert table.finished
    return done, failed, deaths


def test_a_batch_goes_queued_sent_taken_done_and_is_read_once() -> None:
    table = table_of((0, 3))
    batch = table.next_for(7, 1.5)
    assert batch is not None and batch.state == SENT and batch.worker == 7
    assert batch.sent_at == 1.5
    assert batch.items == [("c0", "folder 0"), ("c1", "folder 1"), ("c2", "folder 2")]
    assert table.took(batch.id, 7)
    assert batch.state == TAKEN and table.taken_by() == {7: 0}
    assert table.done(batch.id, 7) == rows(0, 3)
    assert batch.state == DONE and batch.accepted and batch.rows is None
    assert table.finished and table.progress == 1
    assert isinstance(table.load, Loads) and table.load.calls == [(0, 3)]


def test_frames_that_no_longer_count_are_refused() -> None:
    table = table_of((0, 2))
    batch = table.next_for(1, 0.0)
    assert batch is not None
    assert not table.took(batch.id, 2)  # another worker's word about it
    assert not table.took(99, 1) and not table.took("0", 1) and not table.took(True, 1)
    assert table.took(batch.id, 1)
    assert table.done(batch.id, 2) is None
    assert table.done(batch.id, 1) is not None
    assert table.done(batch.id, 1) is None  # a duplicate
    assert table.progress == 1


def test_a_batch_sent_to_a_worker_that_dies_before_taking_it_blames_nobody() -> None:
    table = table_of((0, 4), (4, 8))
    first = table.next_for(1, 0.0)
    assert first is not None
    out = table.worker_lost(1, "exited with status -9")
    assert out.failures == [] and not out.progress
    assert first.state == QUEUED and first.lost == 1
    assert table.next_for(2, 0.0) is first  # first in line again, whole
    assert table.attempts == {}


def test_a_batch_lost_undelivered_again_and_again_is_treated_as_taken() -> None:
    table = table_of((0, 4))
    for w in range(LOST_DELIVERIES - 1):
        assert table.next_for(w, 0.0) is not None
        assert not table.worker_lost(w, "died").progress
    assert table.next_for(50, 0.0) is not None
    out = table.worker_lost(50, "died")
    assert out.progress
    assert [b.state for b in table.batches] == [SPLIT, QUEUED, QUEUED]


def test_a_taken_batch_whose_worker_dies_is_cut_in_halves_in_order() -> None:
    table = table_of((0, 5), (5, 10))
    batch = table.next_for(1, 0.0)
    assert batch is not None and table.took(batch.id, 1)
    out = table.worker_lost(1, "died")
    assert out.failures == [] and out.progress
    assert batch.state == SPLIT and table.unfinished == 3
    halves = [table.next_for(2, 0.0), table.next_for(3, 0.0)]
    assert [(b.start, b.stop) for b in halves if b] == [(0, 2), (2, 5)]
    assert [cid for b in halves if b for cid, _ in b.items] == [f"c{i}" for i in range(5)]
    assert isinstance(table.load, Loads) and table.load.calls == [(0, 5)]  # halves: no re-read


def test_a_conversation_alone_fails_after_its_attempts_and_only_it() -> None:
    table = table_of((3, 4))
    for attempt in range(1, SOLO_ATTEMPTS + 1):
        batch = table.next_for(attempt, 0.0)
        assert batch is not None and table.took(batch.id, attempt)
        out = table.worker_lost(attempt, "exited with status -11")
        assert out.progress
        if attempt < SOLO_ATTEMPTS:
            assert out.failures == [] and batch.state == QUEUED
    assert [(f.conversation_id, f.folder) for f in out.failures] == [("c3", "folder 3")]
    assert out.failures[0].reason == (
        "its worker exited with status -11 while exporting this conversation alone"
        f" ({SOLO_ATTEMPTS} times)")
    assert table.finished and table.attempts == {"c3": SOLO_ATTEMPTS}


def test_a_worker_death_touches_only_the_batches_it_held() -> None:
    table = table_of((0, 2), (2, 4), (4, 6))
    a, b = table.next_for(1, 0.0), table.next_for(2, 0.0)
    assert a is not None and b is not None
    assert table.took(a.id, 1) and table.took(b.id, 2)
    table.worker_lost(1, "died")
    assert b.state == TAKEN and table.done(b.id, 2) is not None
    assert a.state == SPLIT


@pytest.mark.parametrize("seed", range(5))
def test_three_crashing_conversations_of_300_fail_and_nothing_else(seed: int) -> None:
    crashers = {"c17", "c150", "c151"}
    done, failed, deaths = run_with_crashers(300, 64, crashers, seed=seed)
    assert failed == crashers
    assert done == {f"c{i}" for i in range(300)} - crashers
    # Bisection: about log2(64) + SOLO_ATTEMPTS deaths per crasher, not one per batch.
    assert deaths <= len(crashers) * (6 + SOLO_ATTEMPTS)


def test_every_conversation_crashing_still_ends_with_each_failed_alone() -> None:
    done, failed, _ = run_with_crashers(20, 8, {f"c{i}" for i in range(20)})
    assert done == set() and failed == {f"c{i}" for i in range(20)}


def test_a_timed_out_conversation_fails_and_its_neighbours_are_queued_again() -> None:
    table = table_of((10, 15))
    batch = table.next_for(4, 0.0)
    assert batch is not None and table.took(batch.id, 4)
    assert table.timed_out(batch.id, 5, "c12", "slow").failures == []  # not its batch
    out = table.timed_out(batch.id, 4, "c12", "timed out")
    assert [(f.conversation_id, f.folder, f.reason) for f in out.failures] == [
        ("c12", "folder 12", "timed out")]
    assert batch.state == SPLIT
    parts = [table.next_for(1, 0.0), table.next_for(2, 0.0)]
    assert [(p.start, p.stop) for p in parts if p] == [(10, 12), (13, 15)]
    assert table.attempts == {}  # the neighbours are not blamed


def test_a_timed_out_first_or_last_conversation_leaves_one_part() -> None:
    table = table_of((0, 3))
    batch = table.next_for(1, 0.0)
    assert batch is not None and table.took(batch.id, 1)
    table.timed_out(batch.id, 1, "c0", "timed out")
    rest = table.next_for(1, 0.0)
    assert rest is not None and (rest.start, rest.stop) == (1, 3)
    assert table.took(rest.id, 1)
    table.timed_out(rest.id, 1, "c2", "timed out")
    last = table.next_for(1, 0.0)
    assert last is not None and (last.start, last.stop) == (1, 2)
    assert table.next_for(1, 0.0) is None


def test_unsent_puts_a_batch_back_first_in_line() -> None:
    table = table_of((0, 1), (1, 2))
    batch = table.next_for(1, 0.0)
    assert batch is not None
    table.unsent(batch)
    assert batch.state == QUEUED and batch.worker is None and table.active == {}
    assert table.next_for(2, 0.0) is batch


def test_fail_rest_fails_every_unfinished_conversation_once() -> None:
    table = table_of((0, 2), (2, 4), (4, 6))
    first = table.next_for(1, 0.0)
    assert first is not None and table.took(first.id, 1)
    assert table.done(first.id, 1) is not None
    assert table.next_for(2, 0.0) is not None  # sent, never taken
    failures = table.fail_rest("no worker")
    assert [f.conversation_id for f in failures] == ["c2", "c3", "c4", "c5"]
    assert {f.reason for f in failures} == {"no worker"}
    assert table.finished and [b.state for b in table.batches] == [DONE, FAILED, FAILED]
    assert not table.has_work()


def test_accepted_batches_come_in_export_order() -> None:
    table = table_of((0, 4))
    batch = table.next_for(1, 0.0)
    assert batch is not None and table.took(batch.id, 1)
    table.worker_lost(1, "died")
    for w in (2, 3):
        half = table.next_for(w, 0.0)
        assert half is not None
        assert table.done(half.id, w) is not None
    assert [(b.start, b.stop) for b in table.accepted()] == [(0, 2), (2, 4)]


def test_cut_gives_long_conversations_a_batch_of_their_own_first() -> None:
    sizes = [3, 3, 5000, 3, 3, 3, 9000, 3]
    assert cut(sizes, per_batch=2, max_messages=100, alone_from=1000) == [
        (6, 7, True), (2, 3, True), (0, 2, False), (3, 5, False), (5, 6, False),
        (7, 8, False)]


def test_cut_caps_messages_per_batch_but_never_leaves_a_batch_empty() -> None:
    assert cut([40, 40, 40, 90, 5], per_batch=64, max_messages=100, alone_from=1000) == [
        (0, 2, False), (2, 3, False), (3, 5, False)]
    assert cut([], per_batch=4, max_messages=10, alone_from=5) == []


def test_batches_taper_towards_the_end_so_no_worker_finishes_a_long_one_alone() -> None:
    sizes = [1] * 1000
    batches = cut(sizes, per_batch=256, max_messages=4000, alone_from=2000, taper=4)
    lengths = [stop - start for start, stop, _ in batches]
    # Contiguous and complete, in export order.
    assert [b[0] for b in batches] == [0, *(b[1] for b in batches[:-1])]
    assert batches[-1][1] == 1000
    # Full batches while a quarter of what is left exceeds them, then each a quarter of
    # what is left (rounded up), down to batches of 8 at the very end.
    assert lengths[:2] == [250, 188]  # ceil(1000 / 4), ceil(750 / 4)
    left = 1000
    for n in lengths[:-1]:
        assert n == min(256, max(8, -(-left // 4)))
        left -= n
    assert lengths[-1] == left <= 8
    assert lengths[-4:-1] == [8, 8, 8]
    assert max(lengths) <= 256 and sum(lengths) == 1000


def test_without_taper_batches_stay_full_to_the_end() -> None:
    batches = cut([1] * 1000, per_batch=256, max_messages=4000, alone_from=2000)
    assert [stop - start for start, stop, _ in batches] == [256, 256, 256, 232]
