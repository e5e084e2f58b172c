"""``index.html``: every exported conversation, searchable, written by the finish step.

The list is embedded JSON the page's own script sorts and filters; the text
index is sharded into ``index-search/`` (see :mod:`.search`) and loaded only
when a query needs it.
"""

from __future__ import annotations

import json
import os
from datetime import tzinfo
from importlib.resources import files
from typing import Protocol
from urllib.parse import quote

from zexport import RunContext

from . import SEARCH_DIR, search
from .shell import head, time_text

INDEX_JS = files(__package__).joinpath("index.js").read_text("utf-8")


def write_index(run: RunContext) -> None:
    """Write ``index.html``: every exported conversation, searchable, in export order."""
    if not run.options.get("index", True):
        return
    theme = str(run.options.get("theme", "auto"))
    failed = 0
    numbers: dict[str, int] = {}
    with run.open("index.html") as fh:
        fh.write(head("Conversations", theme, INDEX_JS).encode())
        fh.write(
            b'<body>\n<div class="page">\n<header><h1>Conversations</h1></header>\n'
            b'<div class="controls">\n'
            b'<label class="grow">Search titles and messages<input id="q" type="search" '
            b'placeholder="Words from a title or a message" autocomplete="off" autofocus>'
            b"</label>\n"
            b'<label>Provider<select id="provider"><option value="">All</option>'
            b"</select></label>\n"
            b'<label>Updated from<input id="from" type="date"></label>\n'
            b'<label>to<input id="to" type="date"></label>\n'
            b'<label>Order<select id="order"><option value="oldest">Oldest first</option>'
            b'<option value="newest">Newest first</option>'
            b'<option value="title">Title</option></select></label>\n'
            b'</div>\n<noscript><p class="note">The list needs JavaScript; every '
            b"conversation is also a page under this folder.</p></noscript>\n"
            b'<p id="count" aria-live="polite"></p>\n<ol id="list"></ol>\n'
            b'<button id="more" type="button" hidden>Show more</button>\n'
        )
        fh.write(b'<script id="data" type="application/json">[')
        for entry in run.conversations():
            if not entry.exported:
                failed += 1
                continue
            numbers[entry.id] = len(numbers)
            row = _json_for_script(_row(entry, run.tz))
            fh.write((b",\n" if len(numbers) > 1 else b"") + row)
        fh.write(b"]</script>\n")
        firsts = _write_search(run, numbers)
        fh.write(b'<script id="shards" type="application/json">'
                 + _json_for_script([SEARCH_DIR, firsts]) + b"</script>\n")
        if failed:
            fh.write(f'<p class="note">{failed} conversation{"" if failed == 1 else "s"} '
                     "could not be exported; see .zexport/report.json.</p>\n".encode())
        fh.write(f"<script>{INDEX_JS}</script>\n</div>\n</body>\n</html>\n".encode())

def _write_search(run: RunContext, numbers: dict[str, int]) -> list[str]:
    """Build the text index from the records (or, for conversations this run did
    not render, from their pages) and write its shards; return their first words."""
    builder = search.IndexBuilder()
    indexed: set[int] = set()
    for rec in run.records():
        number = numbers.get(rec.conversation_id)
        if number is not None and number not in indexed:
            builder.add(number, rec.data)
            indexed.add(number)
    for entry in run.conversations():
        number = numbers.get(entry.id)
        if number is not None and number not in indexed:
            builder.add(number, search.page_record(
                os.path.join(run.out_dir, *_page(entry).split("/"))))
    shards = builder.shards()
    for i, (_, body) in enumerate(shards):
        run.write(f"{SEARCH_DIR}/s{i}.js", search.shard_script(i, body))
    return [first for first, _ in shards]


class _Entry(Protocol):
    """What the index reads of a ``RunContext.conversations()`` entry."""

    @property
    def title(self) -> str: ...
    @property
    def provider(self) -> str: ...
    @property
    def created_at(self) -> int | None: ...
    @property
    def updated_at(self) -> int | None: ...
    @property
    def message_count(self) -> int | None: ...
    @property
    def folder(self) -> str: ...
    @property
    def path(self) -> str: ...


def _row(entry: _Entry, tz: tzinfo) -> list[object]:
    """One conversation in the index: [title, provider, date shown, messages, href,
    sort time, folded title]; the date shown and the sort time are both the last update."""
    when = entry.updated_at if entry.updated_at is not None else entry.created_at
    title = entry.title.strip() or "Untitled"
    return [title, entry.provider, time_text(when, tz, full=False)[1], entry.message_count or 0,
            _quoted(_page(entry)), when, search.fold(title)]


# What quote() does to each ASCII character (safe: letters, digits, "_.-~" and "/"), as
# one table: quote() is pure Python, a loop per character, and the index quotes every
# page's path; a path that is not ASCII still goes through quote().
_ASCII_QUOTED = {c: f"%{c:02X}" for c in range(128)
                 if not (chr(c).isalnum() or chr(c) in "_.-~/")}


def _quoted(path: str) -> str:
    """``quote(path)``, faster for the usual ASCII path."""
    return path.translate(_ASCII_QUOTED) if path.isascii() else quote(path)


def _page(entry: _Entry) -> str:
    """A conversation's page, relative to the output folder, wherever the layout put it."""
    return entry.path or f"{entry.folder}/conversation.html"  # path: zexport with --layout


def _json_for_script(value: object) -> bytes:
    """JSON safe inside a <script> element: no '<', '>', '&' or line separators raw."""
    text = json.dumps(value, ensure_ascii=False, separators=(",", ":"))
    for char, code in (("<", "\\u003c"), (">", "\\u003e"), ("&", "\\u0026"),
                       ("\u2028", "\\u2028"), ("\u2029", "\\u2029")):
        text = text.replace(char, code)
    return text.encode("utf-8")
