"""Markdown structure, read with a real CommonMark parser (markdown-it-py, GFM tables on).

Tests compare what a text *is* (its blocks, the text of each, the links in
it) rather than its bytes: a citation link put at a cut must add a link and
nothing else, never split a paragraph, a list item or a table row.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from markdown_it import MarkdownIt
from markdown_it.token import Token

MD = MarkdownIt("commonmark").enable("table")


@dataclass
class Shape:
    """Block tokens in order (``("inline", plain text)`` for inline content) and links."""

    blocks: list[tuple[str, str]] = field(default_factory=list)
    hrefs: list[str] = field(default_factory=list)


def _plain(children: list[Token], hrefs: list[str]) -> str:
    """An inline token's text with the links' text left out (their hrefs collected)."""
    out: list[str] = []
    depth = 0
    for child in children:
        if child.type == "link_open":
            depth += 1
            hrefs.append(str(child.attrs["href"]))
        elif child.type == "link_close":
            depth -= 1
        elif depth:
            continue
        elif child.type == "text":
            out.append(child.content)
        elif child.type == "code_inline":
            out.append(f"`{child.content}`")
        elif child.type in ("softbreak", "hardbreak"):
            out.append("\n")
        else:
            out.append(f"<{child.type}>")
    return "".join(out)


def shape(text: str, heading_levels: bool = True) -> Shape:
    """The structure of ``text`` as CommonMark (+ GFM tables) parses it.

    ``heading_levels=False`` compares headings without their level (a note's
    message headings are demoted below its role headings).
    """
    found = Shape()
    for tok in MD.parse(text):
        if tok.type == "inline":
            found.blocks.append(("inline", _plain(tok.children or [], found.hrefs)))
        elif not heading_levels and tok.type.startswith("heading_"):
            found.blocks.append((tok.type, "h"))
        else:
            found.blocks.append((tok.type, tok.tag))
    return found


def links_in(tokens: list[Token]) -> list[str]:
    """Every link's href in ``tokens`` (inline children included), in order."""
    out: list[str] = []
    for tok in tokens:
        for child in tok.children or []:
            if child.type == "link_open":
                out.append(str(child.attrs["href"]))
    return out


def table_cells(text: str) -> list[list[list[str]]]:
    """Every GFM table row of ``text`` (header first) as cells, each cell its hrefs.

    Fails unless ``text`` holds exactly one table.
    """
    tokens = MD.parse(text)
    assert [t.type for t in tokens].count("table_open") == 1, text
    rows: list[list[list[str]]] = []
    for i, tok in enumerate(tokens):
        if tok.type == "tr_open":
            rows.append([])
        elif tok.type in ("th_open", "td_open"):
            rows[-1].append(links_in([tokens[i + 1]]))
    return rows


def cell_texts(text: str) -> list[list[str]]:
    """Every table row's cells as their text, links' text left out."""
    tokens = MD.parse(text)
    rows: list[list[str]] = []
    for i, tok in enumerate(tokens):
        if tok.type == "tr_open":
            rows.append([])
        elif tok.type in ("th_open", "td_open"):
            rows[-1].append(_plain(tokens[i + 1].children or [], []).strip())
    return rows


def normalize_link(url: str) -> str:
    """``url`` as the parser writes it in an href (percent-encoded as it encodes)."""
    return MD.normalizeLink(url)
