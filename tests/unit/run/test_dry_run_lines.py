"""What ``--dry-run`` tells a person, line by line (counts in words, singular and plural)."""

from __future__ import annotations

from zexport.run.dryrun import DryRun


def test_one_moved_conversation_is_said_in_the_singular_and_more_in_the_plural() -> None:
    one = DryRun(out="/out", selected=3, render=1, unchanged=2, moved=1, suffixed=0)
    moved = [line for line in one.lines() if "would move" in line]
    assert moved == ["  would move 1 conversation whose title changed to its new name"]
    two = DryRun(out="/out", selected=3, render=2, unchanged=1, moved=2, suffixed=0)
    assert [line for line in two.lines() if "would move" in line] == [
        "  would move 2 conversations whose titles changed to their new names"]
