"""Each message a closed unit, on the CommonMark spec examples (a corpus nobody here wrote).

Every example is put between two turns of a note as the markdown format
does (role heading, blank line, the message, blank line, next role heading)
and the note is parsed with markdown-it-py, a real CommonMark parser:

- the turns are exactly the three role headings (nothing forged, nothing swallowed),
  and the turn after the example is untouched;
- the example's section parses as the closed message alone does (nothing leaks in);
- the closed message renders as the example alone does, but for heading levels
  (demoted below the role headings) and the closer added at its end.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import apsw
import pytest
from corpora import commonmark_examples
from markdown_it import MarkdownIt
from markdown_it.token import Token

from zexport.formats.markdown_units import (
    UnitOptions,
    _parsed_unit,
    _quick_unit,
    closed_unit,
    link_destination,
    one_line,
    split_closed_unit,
)
from zexport.sample import make_sample

KEEP = UnitOptions(math="keep")
MD = MarkdownIt("commonmark")
_HEADING_TAG = re.compile(r"<(/?)h[1-6]>")
_SPACES = re.compile(r"\s+")


def note(message: str) -> str:
    return f"## User\n\nbefore\n\n## Assistant\n\n{message}\n\n## User\n\nafter\n"


def turns(tokens: list[Token]) -> list[tuple[int, str]]:
    """(index, text) of every top-level h2: the role headings."""
    return [(i, tokens[i + 1].content) for i, t in enumerate(tokens)
            if t.type == "heading_open" and t.level == 0 and t.tag == "h2"]


def shape(tokens: list[Token]) -> list[tuple[Any, ...]]:
    """The parse, but for the line ending a block at the very end of a document lacks."""
    return [(t.type, t.tag, t.level, t.content.rstrip("\n"), t.info, t.markup,
             [(c.type, c.content) for c in t.children or []]) for t in tokens]


def normalized(html: str) -> str:
    return _SPACES.sub(" ", _HEADING_TAG.sub(r"<\1h>", html)).strip()


EXAMPLES = commonmark_examples()


@pytest.mark.parametrize("example", EXAMPLES, ids=[f"ex{e['example']}" for e in EXAMPLES])
def test_a_spec_example_is_a_closed_unit_between_two_turns(example: dict[str, Any]) -> None:
    source = example["markdown"].rstrip("\n")
    closed = closed_unit(source, KEEP)
    tokens = MD.parse(note(closed))
    heads = turns(tokens)
    assert [text for _, text in heads] == ["User", "Assistant", "User"], closed
    (_, _), (start, _), (end, _) = heads
    section = tokens[start + 3:end]  # after the Assistant heading's three tokens
    assert shape(section) == shape(MD.parse(closed))
    after = tokens[end + 3:]
    assert [(t.type, t.content) for t in after] == [
        ("paragraph_open", ""), ("inline", "after"), ("paragraph_close", "")]
    body, _ = split_closed_unit(source, KEEP)
    assert normalized(MD.render(body)) == normalized(MD.render(source))


def test_the_common_leaks_are_closed() -> None:
    assert closed_unit("```py\nprint(1)") == "```py\nprint(1)\n```"
    assert closed_unit("~~~~\ncode ``` here") == "~~~~\ncode ``` here\n~~~~"
    assert closed_unit("<!-- a comment\n\nnever closed") == \
        "<!-- a comment\n\nnever closed\n-->"
    assert closed_unit("<pre>\nx") == "<pre>\nx\n</pre>"
    assert closed_unit("```\nclosed\n```") == "```\nclosed\n```"
    assert closed_unit("- item\n  ```\n  code") == "- item\n  ```\n  code"  # the item closes it


def test_no_line_of_a_message_passes_for_a_turn() -> None:
    assert closed_unit("## User\n\nI am not the user") == "### User\n\nI am not the user"
    assert closed_unit("Title\n===\n\n## Part\n\n#### deep") == \
        "### Title\n\n#### Part\n\n###### deep"
    assert closed_unit("### Already below\n\ntext") == "### Already below\n\ntext"


def test_math_becomes_dollars_outside_code_and_money_stays_money() -> None:
    text = "Area \\(\\pi r^2\\), `\\(code\\)` costs $5.\n\n\\[\nE = mc^2\n\\]\n\n```\n\\(x\\)\n```"
    assert closed_unit(text) == (
        "Area $\\pi r^2$, `\\(code\\)` costs \\$5.\n\n$$\nE = mc^2\n$$\n\n```\n\\(x\\)\n```")
    assert closed_unit(text, KEEP) == text
    assert closed_unit("- item \\( a \\)\n  - nested \\[b^2\\]") == \
        "- item $a$\n  - nested $$b^2$$"
    # Escaped brackets and parentheses that are not math stay as they are.
    assert closed_unit("see \\[1\\] and \\[note\\] and \\(3\\)") == \
        "see \\[1\\] and \\[note\\] and \\(3\\)"


def test_titles_and_links_stay_on_one_line() -> None:
    assert one_line("Line one\nline two\x00\x07\x1b[31m") == "Line one line two [31m"
    assert one_line("C#") == "C\\#"
    url = "https://example.com/a b>c\n<d>"
    dest = link_destination(url)
    assert dest == "<https://example.com/a%20b%3Ec%0A%3Cd%3E>"
    tokens = MD.parseInline(f"[x]({dest})")[0].children
    assert tokens is not None
    assert [t.type for t in tokens] == ["link_open", "text", "link_close"]


def _texts_of_sample(tmp: Path) -> list[str]:
    db = tmp / "sample.db"
    make_sample(db, conversations=300, seed=5)
    texts = []
    conn = apsw.Connection(str(db), flags=apsw.SQLITE_OPEN_READONLY)
    for (parts,) in conn.execute("SELECT parts FROM messages"):
        try:
            loaded = json.loads(parts)
        except (TypeError, ValueError):
            continue
        if isinstance(loaded, list):
            texts.append("".join(str(p.get("text", "")) for p in loaded
                                 if isinstance(p, dict) and p.get("type") == "text"))
    return texts


def test_the_line_scan_agrees_with_the_parser_wherever_it_answers(tmp_path: Path) -> None:
    corpus = [e["markdown"] for e in EXAMPLES] + _texts_of_sample(tmp_path)
    answered = 0
    for text in corpus:
        for math in (False, True):
            quick = _quick_unit(text, math)
            if quick is not None:
                answered += 1
                assert (quick, []) == _parsed_unit(text, math), text
    assert answered > len(corpus)  # it does answer for most
