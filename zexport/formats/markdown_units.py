"""Each message of a Markdown note as a closed unit (BRIEF §4, issue 13.6 and 13.7).

A message's text is pasted into one note beside the others, so whatever it
leaves open (a cut-off answer's code fence, an HTML comment) would swallow
the turns after it, and a ``## User`` line inside it would read as a new turn.
A real CommonMark parser (markdown-it-py, block rules only: the inline pass
is not needed and costs a third of the time) says what is open and where
the headings are; regular expressions only pre-screen which messages need
the parse at all, since most messages contain nothing that could leak.

Message headings are demoted so that the message's highest heading is one
level below the role headings (``##``): the turn structure can never be
forged, the message's own hierarchy is kept, and Obsidian's outline shows
turns above their content. A setext heading becomes an ATX one on its line.

Math in ChatGPT's ``\\( \\)`` and ``\\[ \\]`` delimiters becomes ``$ $`` and
``$$ $$``, which Obsidian renders, outside code spans and code blocks; a ``$``
before a digit (money) is escaped so that it never pairs with one of ours.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from markdown_it import MarkdownIt
    from markdown_it.token import Token

ROLE_HEADING_LEVEL = 2


@functools.cache
def _parser() -> MarkdownIt:
    """The block parser, made on first use: importing markdown-it-py costs ~40 ms, and
    most runs' messages never need it (the controller never does; see the module doc)."""
    from markdown_it import MarkdownIt

    parser = MarkdownIt("commonmark")
    parser.core.ruler.disable(["inline"])
    return parser


# What could need the parse: a fence, an HTML block, a heading (ATX or setext).
_MAY_LEAK = re.compile(r"^ {0,3}(?:`{3,}|~{3,}|<|#{1,6}(?:[ \t]|$)|=+[ \t]*$|-+[ \t]*$)",
                       re.MULTILINE)
_MAY_HAVE_MATH = re.compile(r"(?<!\\)\\[(\[]")
_ATX = re.compile(r"^( {0,3})(#{1,6})(?=[ \t]|$)")
# HTML blocks of CommonMark types 1-5 end at a marker, not at a blank line.
_HTML_ENDS = (
    (re.compile(r"<(script|pre|style|textarea)(?=[\s>]|$)", re.IGNORECASE), None),
    (re.compile(r"<!--"), "-->"),
    (re.compile(r"<\?"), "?>"),
    (re.compile(r"<![A-Za-z]"), ">"),
    (re.compile(r"<!\[CDATA\["), "]]>"),
)
# Where a paragraph ends for code spans: a blank line, or around an ATX heading line.
_BLOCK_BREAK = re.compile(r"(\n[ \t]*\n|^#{1,6}(?:[ \t][^\n]*)?$\n?)", re.MULTILINE)
# The lines that matter to the quick scan; any other match sends the text to the parser.
_QUICK_LINES = re.compile(
    r"^(?P<indent>[ \t]*)(?:(?P<fence>`{3,}|~{3,})(?P<info>.*)$"
    r"|(?P<hashes>#{1,6})(?=[ \t]|$)"
    r"|(?P<setext>=+|-+)[ \t]*$"
    r"|<|(?:>|[-*+]|\d{1,9}[.)])[ \t>]*(?:`{3}|~{3}))"
    r"|^ *\t", re.MULTILINE)
_INLINE_MATH = re.compile(r"(?<!\\)\\\((.+?)(?<!\\)\\\)", re.DOTALL)
_DISPLAY_MATH = re.compile(r"(?<!\\)\\\[(.+?)(?<!\\)\\\]", re.DOTALL)
# Escaped brackets are common Markdown (``\\[1\\]``, a citation mark): display math is
# taken to be math only when it holds TeX (a command, ^, _, =, braces) or a line break;
# inline math when it holds more than digits and punctuation.
_DISPLAY_LIKE = re.compile(r"[\\^_={}\n]")
_INLINE_LIKE = re.compile(r"[^\d\s.,;:()\[\]-]")
_MONEY = re.compile(r"(?<!\\)\$(?=\d)")
_BACKTICKS = re.compile(r"`+")
_CONTROLS = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]+")
_SPACES = re.compile(r"\s+")
_UNSAFE_IN_LINK = re.compile(r"[<>\s\x00-\x1f\x7f]")


@dataclass(frozen=True, slots=True)
class UnitOptions:
    """How a message is closed: ``math`` is ``dollars`` (convert) or ``keep``."""

    math: str = "dollars"


def closed_unit(text: str, options: UnitOptions = UnitOptions()) -> str:
    """``text`` made safe to stand between two turns of a note (see the module doc)."""
    body, closers = split_closed_unit(text, options)
    return "\n".join([body, *closers]) if closers else body


def split_closed_unit(text: str, options: UnitOptions = UnitOptions()) -> tuple[str, list[str]]:
    """:func:`closed_unit` in two: the message with headings demoted and math converted,
    and the lines that close what it leaves open."""
    math = options.math == "dollars" and _may_have_math(text)
    if not math and not _may_leak(text):
        return text, []
    quick = _quick_unit(text, math)
    if quick is not None:
        return quick, []
    return _parsed_unit(text, math)


def _may_have_math(text: str) -> bool:
    """Cheap pre-screen: substring tests first, the regular expression only after them."""
    return (("\\(" in text or "\\[" in text) and _MAY_HAVE_MATH.search(text) is not None) or (
        "$" in text and _MONEY.search(text) is not None)


def _may_leak(text: str) -> bool:
    """Cheap pre-screen for a fence, an HTML block or a heading."""
    return ("```" in text or "~~~" in text or "#" in text or "<" in text or "\n=" in text
            or "\n-" in text or "\n " in text or text[:1] in "=-") and \
        _MAY_LEAK.search(text) is not None


def _parsed_unit(text: str, math: bool) -> tuple[str, list[str]]:
    """The general case, on markdown-it-py's block parse."""
    lines = text.split("\n")
    tokens = _parser().parse(text)
    if math:
        _convert_math(lines, tokens)  # keeps the line count: the tokens' maps stay valid
    closers = _closers(lines, tokens)
    _demote_headings(lines, tokens)  # last: a setext heading becomes one line
    if closers:
        while lines and not lines[-1].strip():
            lines.pop()
    return "\n".join(lines), closers


def _quick_unit(text: str, math: bool = False) -> str | None:
    """The common case without the parser: fences that all close, ATX headings, no HTML.

    One regular expression finds the lines that matter, so a message costs a
    C-speed scan plus a little per fence or heading. Returns None whenever the
    text holds something this scan cannot be sure of (a fence left open, a
    line starting with ``<``, a possible setext underline, a fence after a
    list marker or in a quote): then the parser decides.
    tests/unit/formats/test_markdown_units.py checks that both agree on every message of
    the corpora where this answers.
    """
    fence: tuple[str, int, int] | None = None  # char, length, indentation
    heads: list[tuple[int, int, int]] = []  # (start, end) of the hashes, level
    code: list[tuple[int, int]] = []  # fenced blocks, as offsets
    for found in _QUICK_LINES.finditer(text):
        marker = found.group("fence")
        if fence is not None:
            if (marker and marker[0] == fence[0] and len(marker) >= fence[1]
                    and not found.group("info").strip()
                    and len(found.group("indent")) <= fence[2] + 3):
                fence = None
                code[-1] = (code[-1][0], found.end())
            continue
        if marker:
            if marker[0] == "`" and "`" in found.group("info"):
                return None  # not a fence (CommonMark): left to the parser
            fence = (marker[0], len(marker), len(found.group("indent")))
            code.append((found.start(), found.end()))
        elif found.group("indent"):
            return None  # an indented heading or underline: maybe in a list item
        elif found.group("hashes"):
            heads.append((found.start("hashes"), found.end("hashes"),
                          len(found.group("hashes"))))
        elif found.group("setext") is not None:
            before = text.rfind("\n", 0, max(0, found.start() - 1))
            if text[before + 1:found.start()].strip():
                return None  # an underline under text: a setext heading, for the parser
        else:
            return None  # HTML, a fence in a quote or after a list marker, a tab
    if fence is not None:
        return None
    shift = max(0, ROLE_HEADING_LEVEL + 1 - min(level for _, _, level in heads)) if heads else 0
    if shift:
        out: list[str] = []
        pos = 0
        for start, end, level in heads:
            out += [text[pos:start], "#" * min(6, level + shift)]
            pos = end
        out.append(text[pos:])
        # Every replacement keeps the text's line structure; offsets move, so the
        # fenced blocks are found again for the math below.
        text = "".join(out)
        if math and code:
            return _quick_unit(text, math)  # no second shift: the top level is now 3
    return _quick_math(text, code) if math else text


def _quick_math(text: str, code: list[tuple[int, int]]) -> str:
    """Math converted in every paragraph or heading outside the fenced blocks."""
    out: list[str] = []
    pos = 0
    for start, end in [*code, (len(text), len(text))]:
        for block in _BLOCK_BREAK.split(text[pos:start]):
            out.append(_outside_code_spans(block, _math_in_text) if block else block)
        out.append(text[start:end])
        pos = end
    return "".join(out)


def one_line(text: str) -> str:
    """A title or label on one line: controls and line breaks become spaces.

    A trailing ``#`` is escaped: in an ATX heading it would be read as the
    optional closing sequence and vanish.
    """
    flat = _SPACES.sub(" ", _CONTROLS.sub(" ", text)).strip()
    return flat[:-1] + "\\#" if flat.endswith("#") else flat


def link_destination(url: str) -> str:
    """``url`` as a CommonMark link destination that stays one link whatever it holds.

    ``<``, ``>``, whitespace and controls are percent-encoded (a line break or
    ``>`` would end an angle-bracket destination early), then the whole is
    put in angle brackets, where parentheses need no balancing.
    """
    encoded = _UNSAFE_IN_LINK.sub(lambda m: "".join(f"%{b:02X}" for b in m.group().encode()),
                                  url)
    return f"<{encoded}>"


def _demote_headings(lines: list[str], tokens: list[Token]) -> None:
    """Shift the message's top-level headings below the role headings, keeping their order."""
    heads = [t for t in tokens if t.type == "heading_open" and t.level == 0 and t.map]
    if not heads:
        return
    shift = max(0, ROLE_HEADING_LEVEL + 1 - min(int(t.tag[1]) for t in heads))
    if not shift:
        return
    # Bottom up, so that a setext heading folding its lines into one keeps the
    # line numbers of the headings above it valid.
    for tok in reversed(heads):
        assert tok.map is not None
        start, end = tok.map
        level = min(6, int(tok.tag[1]) + shift)
        if tok.markup in ("=", "-"):  # setext: content lines, then the underline
            content = " ".join(line.strip() for line in lines[start:end - 1])
            lines[start:end] = [f"{'#' * level} {content}"]
        else:
            found = _ATX.match(lines[start])
            if found:
                lines[start] = found.group(1) + "#" * level + lines[start][found.end():]


def _closers(lines: list[str], tokens: list[Token]) -> list[str]:
    """Lines that close a fence or HTML block left open at the end of the message."""
    last = _last_content_line(lines)
    for tok in tokens:
        if tok.level != 0 or not tok.map or tok.map[1] <= last:
            continue
        if tok.type == "fence" and not _is_closed_fence(lines, tok):
            return [tok.markup[0] * len(tok.markup)]
        if tok.type == "html_block":
            closer = _html_closer(tok.content)
            if closer:
                return [closer]
    return []


def _last_content_line(lines: list[str]) -> int:
    """Index of the last line that is not blank (a block ending there reaches the end)."""
    i = len(lines) - 1
    while i > 0 and not lines[i].strip():
        i -= 1
    return i


def _is_closed_fence(lines: list[str], tok: Token) -> bool:
    assert tok.map is not None
    start, end = tok.map
    if end - 1 <= start:
        return False
    char, size = tok.markup[0], len(tok.markup)
    closing = re.fullmatch(rf" {{0,3}}{re.escape(char)}{{{size},}}[ \t]*", lines[end - 1])
    return closing is not None


def _html_closer(content: str) -> str | None:
    """The end marker an HTML block of types 1-5 still waits for, or None."""
    head = content.lstrip(" ")
    for start, end in _HTML_ENDS:
        found = start.match(head)
        if not found:
            continue
        marker = end or f"</{found.group(1).lower()}>"
        body = head[found.end():]
        return None if marker.lower() in body.lower() else marker
    return None


def _convert_math(lines: list[str], tokens: list[Token]) -> None:
    """``\\( \\)`` -> ``$ $`` and ``\\[ \\]`` -> ``$$ $$`` in inline content, outside code spans."""
    for tok in tokens:
        if tok.type != "inline" or not tok.map:
            continue
        start, end = tok.map
        segment = "\n".join(lines[start:end])
        if not _MAY_HAVE_MATH.search(segment) and not _MONEY.search(segment):
            continue
        converted = _outside_code_spans(segment, _math_in_text)
        if converted != segment:
            lines[start:end] = converted.split("\n")


def _math_in_text(text: str) -> str:
    text = _MONEY.sub(r"\\$", text)
    text = _DISPLAY_MATH.sub(
        lambda m: f"$${m.group(1)}$$" if _DISPLAY_LIKE.search(m.group(1)) else m.group(), text)
    return _INLINE_MATH.sub(
        lambda m: f"${m.group(1).strip()}$" if _INLINE_LIKE.search(m.group(1)) else m.group(),
        text)


def _outside_code_spans(text: str, change: Callable[[str], str]) -> str:
    """Apply ``change`` to the parts of ``text`` outside CommonMark code spans.

    A run of N backticks opens a span that the next run of exactly N closes;
    a run with no partner is literal text.
    """
    out: list[str] = []
    pos = 0
    plain_from = 0
    while True:
        opening = _BACKTICKS.search(text, pos)
        if opening is None:
            break
        size = len(opening.group())
        closing = opening
        while True:
            closing_match = _BACKTICKS.search(text, closing.end())
            if closing_match is None or len(closing_match.group()) == size:
                break
            closing = closing_match
        if closing_match is None:  # no partner: literal backticks, keep looking after them
            pos = opening.end()
            continue
        out.append(change(text[plain_from:opening.start()]))
        out.append(text[opening.start():closing_match.end()])
        plain_from = pos = closing_match.end()
    out.append(change(text[plain_from:]))
    return "".join(out)
