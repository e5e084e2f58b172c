"""Names a layout gives: the named layouts give exactly the app-compatible names, fields
are sanitized one path part each, caps hold, and only the last part is suffixed."""

from __future__ import annotations

from datetime import timezone

import pytest

from zexport.core.layouts import Layout
from zexport.core.naming import base_name
from zexport.errors import UsageError
from zexport.run.plan import Plan
from zexport.sources.archive import ConversationHead

UTC = timezone.utc
TITLES = ["Hello", "CON", "con.txt", "  .hidden  ", "a/b", "x" * 300, "é" * 200, "",
          "nul.txt", "Café. ", "\x00bel\x07", "🇫🇷" * 70, "COM¹", "...", " CON "]


@pytest.mark.parametrize("dated", [True, False])
@pytest.mark.parametrize("name", ["folder", "note"])
def test_named_layouts_give_the_app_compatible_names(name: str, dated: bool) -> None:
    layout = Layout.parse(name, dated)
    # The same template, not named: the generic path, which must name alike.
    generic = Layout.parse(("{date} {title}" if dated else "{title}")
                           + ("/" if name == "folder" else ""))
    assert generic.named_dated is None and layout.named_dated is dated
    for title in TITLES:
        for created in (None, 1700000000, -99999999999):
            place = layout.base_place(title, "chatgpt", created, "abc", UTC, "md")
            assert place == generic.base_place(title, "chatgpt", created, "abc", UTC, "md")
            expected = base_name(title, created, UTC, dated)
            if name == "note":  # a note's name keeps room for its extension
                assert len(place.encode()) <= 255 - 16
                assert expected.startswith(place)
            else:
                assert place == expected


def test_template_fields_are_one_path_part_each() -> None:
    layout = Layout.parse("{provider}/{year}/{month}/{day} {id8} {title}")
    assert layout.base_place("a/b\\c", "claude", 1700000000, "abcdefghijk", UTC, "md") == (
        "claude/2023/11/14 abcdefgh a_b_c")
    assert layout.base_place("T", None, None, "x/y", UTC, "md") == "unknown/undated/undated/x_y T"
    files = layout.files("claude/2023/11/T", "md")
    assert (files.main, files.attachments_dir, files.attachments_link) == (
        "claude/2023/11/T.md", "claude/2023/11/attachments/T", "attachments/T")
    folders = Layout.parse("{provider}/{title}/")
    assert folders.files("claude/T", "md").main == "claude/T/conversation.md"
    assert folders.files("claude/T", "md").attachments_dir == "claude/T/attachments"


@pytest.mark.parametrize("template", ["", "/", "a//b", "/{title}", "{nope}", "{title:>3}",
                                      "../{title}", "{title"])
def test_bad_templates_are_refused(template: str) -> None:
    with pytest.raises(UsageError):
        Layout.parse(template)


def test_only_the_last_part_is_suffixed_and_twins_in_one_folder_collide() -> None:
    layout = Layout.parse("{provider}/{title}")
    plan = Plan(":memory:")
    heads = [ConversationHead("id-1", "Notes", 1, 1, 1, "claude"),
             ConversationHead("id-2", "notes", 2, 2, 1, "claude"),  # a case twin
             ConversationHead("id-3", "Notes", 3, 3, 1, "chatgpt"),  # another folder
             ConversationHead("id-4", "x" * 400, 4, 4, 1, "claude"),
             ConversationHead("id-5", "x" * 400, 5, 5, 1, "claude")]
    plan.add(heads, UTC, layout=layout, extension="md")
    plan.assign_folders((), layout, "md")
    names = plan.folders()
    plan.close()
    assert names["id-1"] == "claude/Notes"
    assert names["id-2"] == "claude/notes (id-2)"
    assert names["id-3"] == "chatgpt/Notes"
    assert names["id-4"] == "claude/" + "x" * 239
    assert names["id-5"] == "claude/" + "x" * (239 - len(" (id-5)")) + " (id-5)"


def test_a_note_never_takes_a_name_the_format_writes() -> None:
    layout = Layout.parse("note")
    plan = Plan(":memory:")
    plan.add([ConversationHead("id-1", "index", None, None, 1, "claude")], UTC,
             layout=layout, extension="html", reserved=("index.html",))
    plan.assign_folders(("index.html",), layout, "html")
    assert plan.folders() == {"id-1": "index (id-1)"}
    plan.close()


def test_relocate_follows_a_conversations_files_to_its_new_place() -> None:
    note = Layout.parse("{provider}/{title}")
    assert note.relocate("claude/Old.md", "claude/Old", "claude/New", "md") == "claude/New.md"
    assert note.relocate("claude/attachments/Old/a.png", "claude/Old", "claude/New", "md") == (
        "claude/attachments/New/a.png")
    assert note.relocate("claude/Older.md", "claude/Old", "claude/New", "md") == (
        "claude/Older.md")
    folder = Layout.parse("folder")
    assert folder.relocate("Old/attachments/a.png", "Old", "New", "md") == (
        "New/attachments/a.png")
    assert folder.relocate("Older/conversation.md", "Old", "New", "md") == (
        "Older/conversation.md")
