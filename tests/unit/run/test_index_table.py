"""The rules of zexport.run.indexing, in-process: which worker builds which index part."""

from __future__ import annotations

from zexport.run.indexing import LOST_PARTS, IndexTable, record_errors
from zexport.run.report import RunReport
from zexport.sources.archive import IndexPart, PartErrors


def parts(n: int) -> list[IndexPart]:
    return [IndexPart(i, (i * 10, i * 10 + 10), (i, i + 1)) for i in range(n)]


def test_each_part_goes_to_one_worker_and_the_table_completes_with_the_last() -> None:
    table = IndexTable(parts(3))
    assert [table.next_for(w).number for w in (7, 8, 9)] == [0, 1, 2]  # type: ignore[union-attr]
    assert table.next_for(7) is None  # every part is out
    assert table.done(1, 8) and not table.complete
    assert table.done(0, 7) and not table.complete
    assert table.done(2, 9) and table.complete


def test_the_workers_building_a_part_are_known_until_it_is_done_or_they_die() -> None:
    table = IndexTable(parts(3))
    assert table.building() == set()
    table.next_for(7)
    table.next_for(8)
    assert table.building() == {7, 8}
    table.done(0, 7)
    assert table.building() == {8}
    table.worker_lost(8)  # its part is queued again: nobody builds it now
    assert table.building() == set()
    table.next_for(9)
    assert table.building() == {9}


def test_word_about_a_part_from_a_worker_that_does_not_hold_it_changes_nothing() -> None:
    table = IndexTable(parts(2))
    table.next_for(1)
    assert not table.done(0, 2)  # another worker's part
    assert not table.done(5, 1) and not table.done(-1, 1)  # no such part
    assert not table.done(0, None)  # the controller does not build it
    assert table.done(0, 1)
    assert not table.done(0, 1)  # done already
    assert table.left == 1


def test_a_part_lost_with_its_worker_is_queued_again_then_built_here() -> None:
    table = IndexTable(parts(2))
    first = table.next_for(1)
    assert first is not None and table.next_for(2) is not None
    assert table.worker_lost(1) == []  # once: back to the queue, for the next worker
    assert not table.done(0, 1)  # a dead worker's late word does not count
    again = table.next_for(3)
    assert again == first
    assert LOST_PARTS == 2
    assert table.worker_lost(3) == [first]  # twice: the controller builds it
    assert table.next_for(4) is None  # no worker is given a part being built here
    assert not table.done(0, 4)
    assert table.done(0, None)
    assert table.done(1, 2) and table.complete


def test_a_worker_that_dies_without_a_part_costs_no_part_anything() -> None:
    table = IndexTable(parts(1))
    table.next_for(1)
    assert table.worker_lost(2) == []
    assert table.parts[0].lost == 0 and table.parts[0].worker == 1
    assert table.done(0, 1)
    assert table.worker_lost(1) == []  # done parts are never lost


def test_a_part_whose_frame_could_not_be_sent_is_queued_blaming_nobody() -> None:
    table = IndexTable(parts(1))
    part = table.next_for(1)
    assert part is not None
    table.unsent(part.number)
    assert table.parts[0].lost == 0
    assert table.next_for(2) == part


def test_no_parts_is_complete_at_once() -> None:
    assert IndexTable([]).complete


def test_what_could_not_be_built_is_said_once_per_index() -> None:
    report = RunReport(options={}, started=0.0)
    record_errors(report, PartErrors(messages="disk I/O error", attachments="corrupt"))
    record_errors(report, PartErrors(messages="again", attachments="again"))
    record_errors(report, PartErrors())
    assert report.run_errors == [
        "the archive's attachments could not be read (corrupt); conversations were"
        " exported without their attachment files"]
    assert report.notes == [
        "the message index could not be built (disk I/O error); messages were read by"
        " conversation, which is slow on an archive without its own index"]
