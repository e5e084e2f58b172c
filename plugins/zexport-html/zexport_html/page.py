"""A conversation's page: its messages on the active branch, alternatives folded away.

The Markdown engine is imported here, by the worker that renders, and not by
the package: the controller only writes the index.
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Iterator
from urllib.parse import quote, urlsplit

from zexport import Attachment, Conversation, Message, RenderContext, Source, join_parts

from . import engine, search
from .engine import safe_url
from .shell import escape, head, time_text

ROLE_NAMES = {"user": "User", "assistant": "Assistant", "system": "System"}


def render_page(conversation: Conversation, ctx: RenderContext) -> bytes:
    """The conversation's page: the active branch, alternatives folded away.

    Each message is joined and encoded on its own and the page joined as bytes: text
    outside ASCII (an emoji) then widens only its message's string, not the whole page
    with its stylesheet, and nothing is copied twice."""
    conv = conversation
    title = conv.title.strip() or "Untitled"
    created = time_text(conv.created_at, ctx.tz)
    updated = time_text(conv.updated_at, ctx.tz)
    meta = [escape(conv.provider)]
    if created[0]:
        meta.append(f'created <time datetime="{created[0]}">{created[1]}</time>')
    if updated[0] and updated != created:
        meta.append(f'updated <time datetime="{updated[0]}">{updated[1]}</time>')
    n = len(conv.messages)
    meta.append(f"{n} message{'' if n == 1 else 's'}")
    top = "".join([
        head(title, str(ctx.options.get("theme", "auto"))),
        '<body>\n<div class="page">\n<header>\n',
        f'<p class="crumbs"><a href="{escape(_index_link(ctx))}">All conversations</a></p>\n',
        f"<h1>{escape(title)}</h1>\n",
        f'<p class="meta">{" · ".join(meta)}</p>\n</header>\n<main>\n',
    ])
    thread = _Thread(conv, ctx)
    out = [top.encode(), *thread.render()]
    words = search.record([title, *thread.texts])
    ctx.emit(words)
    out.append(b"</main>\n</div>\n</body>\n</html>\n")
    out.append(search.page_comment(words))
    return b"".join(out)


def _index_link(ctx: RenderContext) -> str:
    """The link from a conversation's page to ``index.html``, wherever the layout put the
    page (``../index.html`` from a folder, ``index.html`` from a note beside it)."""
    link = getattr(ctx, "link", None)
    return link("index.html") if callable(link) and ctx.file else "../index.html"


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

    def render(self) -> list[bytes]:
        """The page's messages, each encoded (see :func:`render_page`)."""
        conv = self.conv
        out: list[bytes] = []
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
                       f"{noun} from here (branches not shown above)</summary>\n".encode())
            for other in others:
                number = siblings.index(other) + 1
                out.append(f'<p class="alt-label">Branch {number} of {count}</p>\n'.encode())
                out += [self._message(m) for m in self._subtree(other)]
            out.append(b"</details>\n")
        rest = [m for m in conv.messages if m.id not in self.shown]
        if rest:
            out.append(f'<details class="alts"{open_attr}><summary>{len(rest)} message'
                       f"{'' if len(rest) == 1 else 's'} outside the conversation tree"
                       "</summary>\n".encode())
            out += [self._message(m) for m in rest]
            out.append(b"</details>\n")
        return out

    def _subtree(self, root: Message) -> Iterator[Message]:
        stack = [root]
        while stack:
            msg = stack.pop()
            if msg.id in self.shown:
                continue
            yield msg
            stack.extend(reversed(self.children.get(msg.id, [])))

    def _message(self, msg: Message) -> bytes:
        self.shown.add(msg.id)
        cls, role = _role(msg.role)
        iso, text = time_text(msg.created_at, self.ctx.tz)
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
        return "".join(out).encode()


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
