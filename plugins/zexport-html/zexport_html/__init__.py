"""zexport-html: readable HTML pages per conversation and a searchable index.

A zexport format plugin (entry point ``html`` in the ``zexport`` group). It
is written only against zexport's public API (``zexport.Format``,
``zexport.hookimpl`` and the model), as any third-party format would be.

Pages are self-contained: CSS (and on the index, JS) is inline, nothing is
fetched, so an export opens from ``file://`` offline. Each page sets a
Content Security Policy allowing exactly its own inline style and script
(by SHA-256 hash), local images, and nothing else: even if some text
escaped the escaping, it could not run.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import json
import os
import re
from collections.abc import Iterator
from datetime import datetime, tzinfo
from importlib.resources import files
from typing import Protocol
from urllib.parse import quote, urlsplit

from zexport import (
    Attachment,
    Conversation,
    Format,
    Message,
    Option,
    RenderContext,
    RunContext,
    Source,
    hookimpl,
    join_parts,
)

from . import engine, search
from .engine import escape, safe_url

__version__ = "0.1.0"

ROLE_NAMES = {"user": "User", "assistant": "Assistant", "system": "System"}
SEARCH_DIR = "index-search"  # the text index's shards, beside index.html
CSS = files(__package__).joinpath("style.css").read_text("utf-8")
INDEX_JS = files(__package__).joinpath("index.js").read_text("utf-8")


def _sha(text: str) -> str:
    return "'sha256-" + base64.b64encode(hashlib.sha256(text.encode()).digest()).decode() + "'"


@functools.lru_cache(maxsize=4)  # the same for every page: hashing the CSS once is enough
def _csp(script: str | None) -> str:
    # 'strict-dynamic': the index's own script (trusted by hash) may add the
    # search shards' <script> elements; nothing parser-inserted runs.
    scripts = f"{_sha(script)} 'strict-dynamic'" if script else "'none'"
    return (f"default-src 'none'; style-src {_sha(CSS)}; script-src {scripts}; "
            "img-src 'self' file: data:; media-src 'self' file:; base-uri 'none'; "
            "form-action 'none'")


def _head(title: str, theme: str, script: str | None = None) -> str:
    cls = f' class="{theme}"' if theme in ("light", "dark") else ""
    return (
        f'<!DOCTYPE html>\n<html lang="en"{cls}>\n<head>\n<meta charset="utf-8">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f'<meta http-equiv="Content-Security-Policy" content="{escape(_csp(script))}">\n'
        '<meta name="referrer" content="no-referrer">\n'
        f"<title>{escape(title)}</title>\n<style>{CSS}</style>\n</head>\n"
    )


def _when(ts: int | None, tz: tzinfo, full: bool = True) -> tuple[str, str]:
    """(machine ISO time, human text) for a Unix time, or ("", "")."""
    if ts is None:
        return "", ""
    try:
        dt = datetime.fromtimestamp(ts, tz)
    except (OverflowError, OSError, ValueError):
        return "", ""
    iso = dt.isoformat()  # YYYY-MM-DDTHH:MM:SS...
    if dt.year < 1000:  # (strftime's %Y has no leading zeros there)
        return iso, dt.strftime("%Y-%m-%d %H:%M" if full else "%Y-%m-%d")
    return iso, f"{iso[:10]} {iso[11:16]}" if full else iso[:10]


class HtmlFormat(Format):
    """One HTML page per conversation, plus ``index.html`` in the finish step."""

    name = "html"
    extension = "html"
    version = "3"  # 3: documents (canvas, artifacts) rendered, not a JSON part
    description = "Readable HTML pages, offline, with a searchable index.html"
    # No conversation folder may take the place of the index or its search shards.
    reserved_names = ("index.html", SEARCH_DIR)
    options = {
        "theme": Option("colour scheme", default="auto", choices=("auto", "light", "dark")),
        "index": Option.flag("write index.html listing every conversation", default=True),
    }

    # -- one conversation ---------------------------------------------------------
    def render(self, conversation: Conversation, ctx: RenderContext) -> str:
        """The conversation's page: the active branch, alternatives folded away."""
        conv = conversation
        title = conv.title.strip() or "Untitled"
        created = _when(conv.created_at, ctx.tz)
        updated = _when(conv.updated_at, ctx.tz)
        meta = [escape(conv.provider)]
        if created[0]:
            meta.append(f'created <time datetime="{created[0]}">{created[1]}</time>')
        if updated[0] and updated != created:
            meta.append(f'updated <time datetime="{updated[0]}">{updated[1]}</time>')
        n = len(conv.messages)
        meta.append(f"{n} message{'' if n == 1 else 's'}")
        out = [
            _head(title, str(ctx.options.get("theme", "auto"))),
            '<body>\n<div class="page">\n<header>\n',
            f'<p class="crumbs"><a href="{escape(_index_link(ctx))}">All conversations</a></p>\n',
            f"<h1>{escape(title)}</h1>\n",
            f'<p class="meta">{" · ".join(meta)}</p>\n</header>\n<main>\n',
        ]
        thread = _Thread(conv, ctx)
        out += thread.render()
        words = search.record([title, *thread.texts])
        ctx.emit(words)
        out.append("</main>\n</div>\n</body>\n</html>\n")
        out.append(search.page_comment(words))
        return "".join(out)

    # -- the index ------------------------------------------------------------------
    def finish(self, run: RunContext) -> None:
        """Write ``index.html``: every exported conversation, searchable, in export order."""
        if not run.options.get("index", True):
            return
        theme = str(run.options.get("theme", "auto"))
        failed = 0
        numbers: dict[str, int] = {}
        with run.open("index.html") as fh:
            fh.write(_head("Conversations", theme, INDEX_JS).encode())
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
            firsts = self._write_search(run, numbers)
            fh.write(b'<script id="shards" type="application/json">'
                     + _json_for_script([SEARCH_DIR, firsts]) + b"</script>\n")
            if failed:
                fh.write(f'<p class="note">{failed} conversation{"" if failed == 1 else "s"} '
                         "could not be exported; see .zexport/report.json.</p>\n".encode())
            fh.write(f"<script>{INDEX_JS}</script>\n</div>\n</body>\n</html>\n".encode())

    def _write_search(self, run: RunContext, numbers: dict[str, int]) -> list[str]:
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
    return [title, entry.provider, _when(when, tz, full=False)[1], entry.message_count or 0,
            quote(_page(entry)), when, search.fold(title)]


def _page(entry: _Entry) -> str:
    """A conversation's page, relative to the output folder, wherever the layout put it."""
    return entry.path or f"{entry.folder}/conversation.html"  # path: zexport with --layout


def _index_link(ctx: RenderContext) -> str:
    """The link from a conversation's page to ``index.html``, wherever the layout put the
    page (``../index.html`` from a folder, ``index.html`` from a note beside it)."""
    link = getattr(ctx, "link", None)
    return link("index.html") if callable(link) and ctx.file else "../index.html"


def _json_for_script(value: object) -> bytes:
    """JSON safe inside a <script> element: no '<', '>', '&' or line separators raw."""
    text = json.dumps(value, ensure_ascii=False, separators=(",", ":"))
    for char, code in (("<", "\\u003c"), (">", "\\u003e"), ("&", "\\u0026"),
                       ("\u2028", "\\u2028"), ("\u2029", "\\u2029")):
        text = text.replace(char, code)
    return text.encode("utf-8")


class _Thread:
    """Lays out a conversation: the active branch, each alternative folded in <details>."""

    def __init__(self, conv: Conversation, ctx: RenderContext) -> None:
        self.conv = conv
        self.ctx = ctx
        self.index = conv.by_id()
        self.children: dict[str | None, list[Message]] = {}
        for m in conv.messages:
            parent = m.parent_id if m.parent_id in self.index else None
            self.children.setdefault(parent, []).append(m)
        for group in self.children.values():
            group.sort(key=lambda m: (m.sibling_index or 0, m.order_index))
        self.shown: set[str] = set()
        self.texts: list[str] = []  # every rendered Markdown run, for the search record
        self.docs = 0  # Markdown runs rendered so far: footnote ids stay unique per page

    def render(self) -> list[str]:
        conv = self.conv
        out: list[str] = []
        path = conv.active_branch()
        flat = all(m.parent_id is None for m in conv.messages)
        open_attr = " open" if self.ctx.branches == "all" else ""
        for msg in path:
            out.append(self._message(msg))
            if flat:
                continue
            parent = msg.parent_id if msg.parent_id in self.index else None
            others = [m for m in self.children.get(parent, []) if m.id != msg.id
                      and m.id not in self.shown]
            if not others:
                continue
            siblings = self.children.get(parent, [])
            count = len(siblings)
            noun = "version" if len(others) == 1 else "versions"
            out.append(f'<details class="alts"{open_attr}><summary>{len(others)} other '
                       f"{noun} from here (branches not shown above)</summary>\n")
            for other in others:
                number = siblings.index(other) + 1
                out.append(f'<p class="alt-label">Branch {number} of {count}</p>\n')
                out += [self._message(m) for m in self._subtree(other)]
            out.append("</details>\n")
        rest = [m for m in conv.messages if m.id not in self.shown]
        if rest:
            out.append(f'<details class="alts"{open_attr}><summary>{len(rest)} message'
                       f"{'' if len(rest) == 1 else 's'} outside the conversation tree"
                       "</summary>\n")
            out += [self._message(m) for m in rest]
            out.append("</details>\n")
        return out

    def _subtree(self, root: Message) -> Iterator[Message]:
        stack = [root]
        while stack:
            msg = stack.pop()
            if msg.id in self.shown:
                continue
            yield msg
            stack.extend(reversed(self.children.get(msg.id, [])))

    def _message(self, msg: Message) -> str:
        self.shown.add(msg.id)
        cls, role = _role(msg.role)
        iso, text = _when(msg.created_at, self.ctx.tz)
        when = f' <time datetime="{iso}">{text}</time>' if iso else ""
        out = [f'<article class="msg {cls}" id="m-{escape(msg.id)}">\n'
               f'<div class="role">{role}{when}</div>\n<div class="body">\n']
        if msg.parts_error:
            out.append(f'<p class="missing">The stored parts of this message are not valid '
                       f"JSON ({escape(msg.parts_error)}); the raw text follows.</p>\n"
                       f'<pre class="part"><code>{escape(msg.parts_raw)}</code></pre>\n')
            blocks: list[str | dict[str, object]] = []
            sources: list[Source] = []
            self.texts.append(msg.parts_raw)
        else:
            # zexport's one joining of the text parts, with the engine's mark at each cut.
            joined = join_parts(engine.without_sentinels(msg.parts), self.conv.provider,
                                engine.cite_mark)
            blocks, sources = joined.blocks, joined.sources
        self.texts += [engine.without_citations(b) for b in blocks if isinstance(b, str)]
        for run in blocks:
            if isinstance(run, str):
                self.docs += 1
                out.append(engine.render(run, sources, doc_id=f"m{self.docs}"))
            elif (document := _document(run, f"m{self.docs + 1}")) is not None:
                self.docs += 1
                self.texts.append(str(run["content"]))
                out.append(document)
            else:
                body = json.dumps(run, ensure_ascii=False, indent=2, sort_keys=True)
                out.append(f'<details class="part"><summary>{escape(str(run.get("type")))} '
                           f'part</summary><pre class="part"><code>{escape(body)}</code>'
                           "</pre></details>\n")
        out += [_attachment(a) for a in msg.attachments]
        if sources:
            out.append('<div class="sources"><h4>Sources</h4><ol>')
            for src in sources:
                label = escape(src.title or src.url or "source without a URL")
                if src.url and safe_url(src.url):
                    host = _host(src.url)
                    out.append(f'<li><a href="{escape(src.url)}" rel="noopener noreferrer">'
                               f'{label}</a> <span class="domain">{host}</span></li>')
                else:
                    out.append(f'<li>{label} <span class="domain">{escape(src.url or "")}'
                               "</span></li>")
            out.append("</ol></div>\n")
        out.append("</div>\n</article>\n")
        return "".join(out)


# Parts holding a whole document the assistant wrote (ChatGPT's canvas, Grok's artifacts):
# their label, and the fields of the document's name and of its type.
_DOCUMENTS = {"data-canvas": ("Canvas", "name", "textdoc_type"),
              "data-artifact": ("Artifact", "title", "contentType")}
# Document types that are prose, read as Markdown; any other names a code language.
_PROSE = frozenset({"", "document", "text/markdown", "text/plain", "markdown", "text"})
_LANGUAGE_UNSAFE = re.compile(r"[^a-z0-9_+#-]")


def _document(part: dict[str, object], doc_id: str) -> str | None:
    """A document part as people read it: prose rendered as the messages are, code in a
    block marked with its language; None when it is no document or holds no text."""
    fields = _DOCUMENTS.get(str(part.get("type")))
    content = part.get("content")
    if fields is None or type(content) is not str or not content.strip():
        return None
    label, name_field, type_field = fields
    name, kind = part.get(name_field), part.get(type_field)
    title = escape(f"{label}: {name.strip()}" if type(name) is str and name.strip() else label)
    kind = kind.strip().lower() if type(kind) is str else ""
    if kind in _PROSE:
        return (f'<section class="document"><div class="doc-title">{title}</div>\n'
                f"{engine.render(content, (), doc_id=doc_id)}</section>\n")
    language = _LANGUAGE_UNSAFE.sub("", kind.rsplit("/", 1)[-1].removeprefix("x-"))
    return (f'<section class="document"><div class="doc-title">{title}</div>\n'
            f'<pre><code class="language-{language}">{escape(content.strip(chr(10)))}'
            "</code></pre></section>\n")


@functools.lru_cache(maxsize=64)
def _role(role: str) -> tuple[str, str]:
    """A message role's (class, escaped name) on the page (a handful of roles, made once)."""
    name = ROLE_NAMES.get(role, role.capitalize() or "Unknown")
    return (role if role in ROLE_NAMES else "other"), escape(name)


@functools.lru_cache(maxsize=1024)
def _host(url: str) -> str:
    """A source's host name, escaped (sources are cited again and again)."""
    return escape(urlsplit(url).hostname or "")


def _attachment(att: Attachment) -> str:
    name = escape(att.filename or att.id)
    if att.exported_path:
        href = escape(quote(att.exported_path))
        if att.is_image:
            size = ""
            if att.width and att.height and att.width > 0 and att.height > 0:
                size = f' width="{int(att.width)}" height="{int(att.height)}"'
            return (f'<figure><a href="{href}"><img src="{href}" alt="{name}"{size} '
                    f'loading="lazy"></a><figcaption>{name}</figcaption></figure>\n')
        return f'<p class="file">📎 <a href="{href}">{name}</a></p>\n'
    reason = escape(att.unavailable_reason or "not available")
    return f'<p class="missing">⚠ Attachment unavailable: {name} ({reason})</p>\n'


@hookimpl
def zexport_formats() -> list[Format]:
    """Register the html format."""
    return [HtmlFormat()]
