"""Message text to HTML: CommonMark (markdown-it-py) with the GFM pieces chats use.

Chat text is Markdown and hostile at once (archives hold ``<script>`` in
messages), so the engine is configured for safety first:

- raw HTML is off: ``<b>`` is shown as the text ``<b>``;
- a link's ``href`` is written only for ``http(s)`` targets; any other
  target (``javascript:``, ``data:``, relative paths) leaves the link text
  as an inert ``<a>`` with no ``href``;
- images from message text are never loaded (the page stays offline and
  leaks nothing): an ``http(s)`` image becomes a link to it, anything else
  its alt text; only ``data:`` raster images are shown inline;
- math goes through :mod:`.mathml`, which rebuilds the MathML from an
  allow-list.

Citations: a message's text parts are pieces of one text, cut by the app at
each ``source-url`` part. zexport's ``Conversation.message_text`` joins them
and puts :func:`cite_mark`'s sentinel at each cut; a core rule turns sentinels into
``cite`` tokens, rendered as numbered links at the place of the cut, inside
the sentence, list item or table cell they belong to.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Sequence
from typing import Any
from urllib.parse import urlsplit

from markdown_it import MarkdownIt
from markdown_it.renderer import RendererHTML
from markdown_it.rules_core import StateCore
from markdown_it.token import Token
from markdown_it.utils import EnvType, OptionsDict
from mdit_py_plugins.dollarmath import dollarmath_plugin
from mdit_py_plugins.footnote import footnote_plugin
from mdit_py_plugins.tasklists import tasklists_plugin
from mdit_py_plugins.texmath import texmath_plugin

from zexport import Source

from . import fast
from .fast import CITE_CLOSE, CITE_OPEN
from .mathml import to_mathml
from .shell import escape

# Private-use characters around a citation number in the joined text.

_CITE = re.compile(f"{CITE_OPEN}(\\d+){CITE_CLOSE}")
_RASTER_DATA = re.compile(r"data:image/(png|jpeg|gif|webp);", re.I)


# A conversation cites the same sources and links the same pages again and again, and
# urlsplit is the slow part of a link: the last answers are kept (they depend on nothing
# but the text given).
@functools.lru_cache(maxsize=1024)
def safe_url(url: str) -> bool:
    """True only for http(s) URLs with a host: the only targets a page links to."""
    try:
        parts = urlsplit(url.strip())
    except ValueError:
        return False
    return parts.scheme.lower() in ("http", "https") and bool(parts.netloc)


def _validate_link(url: str) -> bool:
    """Let the parser accept every destination (so links keep their structure);
    the render rules decide what becomes an ``href``."""
    return True


@functools.lru_cache(maxsize=1024)
def link_open(href: str, title: str | None) -> str:
    """A link's opening tag: an ``href`` only for http(s) targets, else an inert ``<a>``."""
    title_attr = f' title="{escape(title)}"' if title else ""
    if safe_url(href):
        return f'<a href="{escape(href)}"{title_attr} rel="noopener noreferrer">'
    return f'<a class="off" title="{escape("link not followed: " + href)}">'


def image(src: str, alt: str) -> str:
    """An image from message text: shown only for ``data:`` rasters, else a link or its
    alt text (the page loads nothing from elsewhere)."""
    alt = escape(alt)
    if _RASTER_DATA.match(src):
        return f'<img src="{escape(src)}" alt="{alt}">'
    if safe_url(src):
        return (f'<a class="img-link" href="{escape(src)}" rel="noopener noreferrer">'
                f"image: {alt}</a>")
    return f'<span class="img-off" title="{escape("image not shown: " + src)}">image: {alt}</span>'


def _link_open(self: RendererHTML, tokens: Sequence[Token], idx: int,
               options: OptionsDict, env: EnvType) -> str:
    title = tokens[idx].attrGet("title")
    return link_open(str(tokens[idx].attrGet("href") or ""),
                     None if title is None else str(title))


def _image(self: RendererHTML, tokens: Sequence[Token], idx: int,
           options: OptionsDict, env: EnvType) -> str:
    token = tokens[idx]
    return image(str(token.attrGet("src") or ""),
                 self.renderInlineAsText(token.children or [], options, env))


def _math(display: bool) -> Any:
    def render(self: RendererHTML, tokens: Sequence[Token], idx: int,
               options: OptionsDict, env: EnvType) -> str:
        mathml = to_mathml(tokens[idx].content, display)
        if tokens[idx].block:
            return f'<div class="math">{mathml}</div>\n'
        return f'<span class="math">{mathml}</span>' if display else mathml
    return render


def cite(number: int, in_link: bool, sources: Sequence[Source]) -> str:
    """Citation ``number`` at its place in the text: a numbered link to its source (no
    link inside another link, nor to a source that is not http(s))."""
    if not 0 < number <= len(sources):
        return ""
    src = sources[number - 1]
    label = escape(src.title or src.url or "")
    if in_link or not src.url or not safe_url(src.url):
        return f'<sup class="cite" title="{label}">[{number}]</sup>'
    return (f'<sup class="cite"><a href="{escape(src.url)}" title="{label}" '
            f'rel="noopener noreferrer">[{number}]</a></sup>')


def _cite(self: RendererHTML, tokens: Sequence[Token], idx: int,
          options: OptionsDict, env: EnvType) -> str:
    return cite(int(tokens[idx].content), bool(tokens[idx].meta.get("in_link")),
                env.get("sources", []))


def _split_citations(state: StateCore) -> None:
    """Turn the sentinels in text tokens into ``cite`` tokens (outside code)."""
    if CITE_OPEN not in state.src:
        return
    for block in state.tokens:
        if block.type != "inline" or not block.children:
            continue
        out: list[Token] = []
        depth = 0
        for tok in block.children:
            if tok.type == "link_open":
                depth += 1
            elif tok.type == "link_close":
                depth -= 1
            if tok.type != "text" or CITE_OPEN not in tok.content:
                out.append(tok)
                continue
            pos = 0
            for m in _CITE.finditer(tok.content):
                if m.start() > pos:
                    piece = Token("text", "", 0)
                    piece.content = tok.content[pos:m.start()]
                    out.append(piece)
                cite = Token("cite", "", 0)
                cite.content = m.group(1)
                cite.meta = {"in_link": depth > 0}
                out.append(cite)
                pos = m.end()
            if pos < len(tok.content):
                rest = Token("text", "", 0)
                rest.content = tok.content[pos:]
                out.append(rest)
        block.children = out


def build() -> MarkdownIt:
    """The configured parser (built once per process: construction costs ~ms)."""
    md = MarkdownIt("commonmark", {"html": False, "linkify": False, "typographer": False})
    md.enable(["table", "strikethrough"])
    md.validateLink = _validate_link  # type: ignore[method-assign]
    md.use(footnote_plugin).use(tasklists_plugin)
    md.use(dollarmath_plugin, allow_space=False, allow_digits=False, double_inline=True)
    md.use(texmath_plugin, delimiters="brackets")
    md.core.ruler.after("text_join", "zexport_citations", _split_citations)
    md.add_render_rule("link_open", _link_open)
    md.add_render_rule("image", _image)
    md.add_render_rule("cite", _cite)
    for name, display in (("math_inline", False), ("math_inline_double", True),
                          ("math_block", True), ("math_block_label", True),
                          ("math_block_eqno", True)):
        md.add_render_rule(name, _math(display))
    return md


_MD = build()


def _leftover_cites(rendered: str, sources: Sequence[Source]) -> str:
    """Sentinels the parser kept inside code, URLs or alt text become plain ``[n]``."""
    if CITE_OPEN not in rendered:
        return rendered
    return _CITE.sub(lambda m: f"[{m.group(1)}]", rendered)


# Text made only of these characters, with no line starting with a space or a digit and
# no space before a line break, is plain paragraphs in CommonMark: nothing in it can open
# a block or an inline construct, and markdown-it-py would only escape '"'. About half
# the messages people write (questions, short answers) are like that.
_PLAIN = re.compile("[A-Za-z0-9 \n.,;:'\"?/%@^!"  # ASCII that opens nothing without [ or <
                    "\u00a1-\u167f\u1681-\u1fff\u200b-\u2027\u202a-\u202e\u2030-\u205e"
                    "\u2060-\u2fff\u3001-\udfff\uf900-\ufefe\uff00-\U0010ffff]*")  # no spaces
_DIGIT_LINE = re.compile(r"\n[ 0-9]")
_SPACE_OR_DIGIT = frozenset(" 0123456789")
_PARAGRAPHS = re.compile(r"\n\n")


def _plain(text: str) -> str | None:
    """markdown-it-py's output for plain text, without parsing; None when not plain:
    when a line starts with a space or a digit, a space ends a line, or paragraphs are
    apart by more than one blank line (each looked for by a search in C that needs no
    look behind)."""
    if (not _PLAIN.fullmatch(text) or text[:1] in _SPACE_OR_DIGIT or " \n" in text
            or "\n\n\n" in text or text.endswith(" ") or _DIGIT_LINE.search(text)):
        return None
    stripped = text.strip("\n")
    if not stripped:
        return ""
    return "".join(f"<p>{p.replace(chr(34), '&quot;')}</p>\n"
                   for p in _PARAGRAPHS.split(stripped))


def render(text: str, sources: Sequence[Source] = (), doc_id: str = "") -> str:
    """HTML for one piece of Markdown (with citation sentinels, numbered into ``sources``):
    markdown-it-py's, taking the shortcuts that give the same bytes when they can."""
    plain = _plain(text)
    if plain is not None:
        return plain
    rendered = render_fast(text, sources)
    if rendered is not None:
        return rendered
    return render_parsed(text, sources, doc_id)


def render_fast(text: str, sources: Sequence[Source] = ()) -> str | None:
    """:func:`render` through markdown-it-pyrs alone: None for text it leaves to
    markdown-it-py (see :mod:`.fast`)."""
    return fast.render(_ended(text), link_open, image,
                       lambda number, in_link: cite(number, in_link, sources),
                       _inline_mathml, _display_mathml)


def _inline_mathml(latex: str) -> str:
    return to_mathml(latex, False)


def _display_mathml(latex: str) -> str:
    """A display block, as the math render rules write a block token."""
    return f'<div class="math">{to_mathml(latex, True)}</div>\n'


def render_parsed(text: str, sources: Sequence[Source] = (), doc_id: str = "") -> str:
    """:func:`render` through markdown-it-py itself, with no shortcut: the reference."""
    env: dict[str, Any] = {"sources": list(sources)}
    if doc_id:
        env["docId"] = doc_id
    return _leftover_cites(_MD.render(_ended(text), env), sources)


def _ended(text: str) -> str:
    """``text`` ending with a line break. The end of a text is the end of its last line
    in CommonMark; markdown-it-py alone leaves the last line of a code block that is
    never closed without its line break, which no other engine (nor the page) wants."""
    return text if text.endswith("\n") else text + "\n"


def without_citations(text: str) -> str:
    """``text`` with its citation sentinels replaced by spaces (for the search words)."""
    return _CITE.sub(" ", text) if CITE_OPEN in text else text


def cite_mark(source: Source) -> str:
    """The sentinel :meth:`zexport.Conversation.message_text` puts at a citation's cut."""
    return f"{CITE_OPEN}{source.number}{CITE_CLOSE}"


def without_sentinels(parts: Sequence[dict[str, Any]]) -> Sequence[dict[str, Any]]:
    """``parts``, with the sentinel characters (private use) removed from any text that
    holds them, so that no text can pass for a citation."""
    if len(parts) == 1:  # most messages: one part, tested without a generator
        text = parts[0].get("text")
        if not isinstance(text, str) or (CITE_OPEN not in text and CITE_CLOSE not in text):
            return parts
    elif not any(isinstance(p.get("text"), str) and (CITE_OPEN in p["text"] or CITE_CLOSE
                 in p["text"]) for p in parts):
        return parts
    return [{**p, "text": p["text"].replace(CITE_OPEN, "").replace(CITE_CLOSE, "")}
            if isinstance(p.get("text"), str) else p for p in parts]
