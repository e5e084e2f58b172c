"""A message's parts as the one text they are, with each source where the app cut it.

The app's sync transforms cut an answer's text at every citation marker and
put a ``{"type": "source-url", ...}`` part in its place (BRIEF §3), so a
sentence, a list item or a table row can continue in the next text part.
Joining the pieces with anything at all breaks them; :func:`join_parts`
joins them with nothing and puts a citation mark at each cut. Every format
uses this one function, so Markdown, JSON, JSONL and HTML agree on the text.

Two text parts with no source between them are not always one text: Claude's
transform makes one text part per content block (a preface, then a research
report), and joined with nothing "…touchpoints." would run into "# Bengal
cats…", a heading no more. For Claude such a boundary is a paragraph break.
ChatGPT's and Perplexity's transforms cut one string, and leave two text
parts side by side only where a citation had no URL: there nothing goes
between them.

The default citation mark is a numbered inline Markdown link,
``[\\[1\\]](<url> "title")``: it renders as a clickable ``[1]`` in every
CommonMark viewer, GitHub and Obsidian alike (footnotes are not CommonMark and
show as literal ``[^1]`` outside GFM and Obsidian), it works inside a GFM table
cell (nothing in it is an unescaped ``|``), and it keeps the text readable
where the app's own export inlined whole titles. Each distinct source (by URL)
gets one number, in the order of its first citation, and is listed once in
:attr:`MessageText.sources`.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

Part = dict[str, Any]

#: Providers whose adjacent text parts (no source between) are separate content blocks.
BLOCK_PER_PART_PROVIDERS = frozenset({"claude"})


@dataclass(frozen=True, slots=True)
class Source:
    """One distinct source a message cites: its number in the message and where it is.

    ``url`` and ``title`` are None when the part has none (or not as a string).
    """

    number: int
    url: str | None
    title: str | None


@dataclass(slots=True)
class MessageText:
    """A message's parts as text: ``blocks`` in order, and the sources they cite.

    Each ``str`` block is one text (the text parts between two parts of
    another kind, joined, with the citation marks at their cuts); any other
    part (reasoning, tool calls, ...) is a ``dict`` block, in its place, for
    the format to render as it likes. ``sources`` lists each distinct source
    once, numbered from 1 in the order of its first citation.
    """

    blocks: list[str | Part] = field(default_factory=list)
    sources: list[Source] = field(default_factory=list)

    @property
    def text(self) -> str:
        """The text blocks, separated by a blank line (other parts left out)."""
        return "\n\n".join(b for b in self.blocks if isinstance(b, str))


Cite = Callable[[Source], str]


def part_text(value: Any) -> str:
    """A text part's ``text`` as a string: a null (or missing) text is empty, never "None"."""
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, bool):  # what JavaScript's join would write
        return "true" if value else "false"
    return str(value)


_URL_UNSAFE = re.compile(r"[\x00-\x20\x7f<>\\|\"`]")
_TITLE_UNSAFE = re.compile(r'(["\\|])')
_LABEL_UNSAFE = re.compile(r"([\[\]\\|<`*_])")
_LINE_BREAKS = re.compile(r"\s*[\r\n]+\s*")


def markdown_url(url: str) -> str:
    """``url`` as a Markdown link destination that no parser can misread.

    Spaces, ``<``, ``>``, ``\\``, ``|``, quotes, backticks and control
    characters are percent-encoded (the same address to a browser), and the
    whole is put in angle brackets so unbalanced parentheses stay inside. A
    ``|`` left as it is would end the cell of a GFM table row.
    """
    if _URL_UNSAFE.search(url):
        url = _URL_UNSAFE.sub(lambda m: f"%{ord(m.group()):02X}", url)
    return f"<{url}>"


def markdown_label(text: str) -> str:
    """``text`` as Markdown link text, on one line, that renders as itself.

    Brackets, backslashes, ``<`` (raw HTML), emphasis and code markers and
    ``|`` (a table cell's end) are backslash-escaped.
    """
    return _LABEL_UNSAFE.sub(r"\\\1", _LINE_BREAKS.sub(" ", text).strip())


def markdown_citation(source: Source) -> str:
    """The mark put at a cut: ``[\\[n\\]](<url> "title")``, or ``\\[n\\]`` without a URL."""
    label = f"\\[{source.number}\\]"
    if not source.url:
        return label
    title = ""
    if source.title:
        one_line = _LINE_BREAKS.sub(" ", source.title).strip()
        title = ' "' + _TITLE_UNSAFE.sub(r"\\\1", one_line) + '"'
    return f"[{label}]({markdown_url(source.url)}{title})"


def markdown_sources(sources: Iterable[Source]) -> str:
    """The numbered list of distinct sources (``1. [title](<url>)``) that goes below a text."""
    lines = []
    for src in sources:
        name = markdown_label(src.title or src.url or "") or "source without a URL"
        lines.append(f"{src.number}. [{name}]({markdown_url(src.url)})" if src.url
                     else f"{src.number}. {name}")
    return "\n".join(lines)


def _unlinkable_end(text: str) -> str:
    """``text`` changed, where needed, so that a link put right after it stays a link.

    An unescaped ``!`` before ``[`` would make the link an image, and an
    unescaped ``\\`` would escape its bracket: both are escaped (they render
    as they did).
    """
    stripped = text.rstrip("\\")
    slashes = len(text) - len(stripped)
    if slashes % 2:
        return text + "\\"
    if not slashes and text.endswith("!"):
        before = text[:-1]
        if (len(before) - len(before.rstrip("\\"))) % 2 == 0:
            return before + "\\!"
    return text


def join_parts(parts: Sequence[Part], provider: str = "",
               cite: Cite | None = markdown_citation) -> MessageText:
    """Join a message's parts into :class:`MessageText`, each source at its cut.

    ``provider`` is the conversation's (``"claude"`` separates adjacent text
    parts by a paragraph break: see the module's docstring). ``cite`` makes
    the mark put at each cut; None puts nothing there (the plain text, for
    search indexes), the sources are still listed.
    """
    if len(parts) == 1 and parts[0].get("type") == "text":  # most messages: one text part
        text = part_text(parts[0].get("text"))
        return MessageText([text] if text.strip() else [], [])
    out = MessageText()
    numbers: dict[tuple[str, str], Source] = {}
    marks: dict[int, str] = {}  # a source cited again gets the same mark: made once
    pieces: list[str] = []
    after_text = False  # the last thing in ``pieces`` is text, not a citation mark
    blocks_per_part = provider in BLOCK_PER_PART_PROVIDERS
    for part in parts:
        kind = part.get("type")
        if kind == "text":
            text = part_text(part.get("text"))
            if not text:
                continue
            if after_text and blocks_per_part:
                pieces.append(_paragraph_break(pieces[-1], text))
            pieces.append(text)
            after_text = True
        elif kind == "source-url":
            source = _numbered(part, numbers, out.sources)
            if cite is not None:
                mark = marks.get(source.number)
                if mark is None:
                    mark = marks[source.number] = cite(source)
                if pieces and mark.startswith("["):
                    pieces[-1] = _unlinkable_end(pieces[-1])
                pieces.append(mark)
            after_text = False
        else:
            _flush(pieces, out.blocks)
            out.blocks.append(part)
            after_text = False
    _flush(pieces, out.blocks)
    return out


def _flush(pieces: list[str], blocks: list[str | Part]) -> None:
    """Move the pieces of one text, joined, to ``blocks`` (nothing if it is blank)."""
    text = "".join(pieces)
    pieces.clear()
    if text.strip():
        blocks.append(text)


def _paragraph_break(before: str, after: str) -> str:
    """The newlines that make a blank line between two texts (none if they have it)."""
    have = (len(before) - len(before.rstrip("\n"))) + (len(after) - len(after.lstrip("\n")))
    return "\n" * max(0, 2 - have)


def _numbered(part: Part, numbers: dict[tuple[str, str], Source],
              sources: list[Source]) -> Source:
    """The source a source-url part names, numbered on its first citation."""
    url = part.get("url")
    title = part.get("title")
    url = url if isinstance(url, str) and url else None
    title = title if isinstance(title, str) and title.strip() else None
    key = ("url", url) if url else ("title", title or "")
    source = numbers.get(key)
    if source is None:
        source = numbers[key] = Source(len(sources) + 1, url, title)
        sources.append(source)
    return source
