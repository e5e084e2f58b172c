"""A small, safe Markdown subset for message text.

Chat text is Markdown-ish and hostile at once (the archive holds
``<script>`` in titles and messages), so this renders only what reads
better as HTML and escapes everything else:

- blocks: paragraphs (single newlines kept as ``<br>``), ATX headings
  (demoted so a message never outranks the page title), ``-``/``*``/``+``
  and numbered lists, pipe tables, ``>`` quotes, fenced code (backticks or tildes, with a
  language class when the info string is a plain word);
- inline: code spans, ``**bold**``, ``[text](http(s)://…)`` links and bare
  ``http(s)://`` URLs.

Every piece of text goes through :func:`html.escape` before any tag is
added, and the only URLs ever put in ``href`` start with ``http://`` or
``https://`` (matched on the escaped text, so no quote can close the
attribute). There is no raw-HTML passthrough: ``<b>`` shows as ``<b>``.
"""

from __future__ import annotations

import html
import re

_FENCE = re.compile(r"^ {0,3}(`{3,}|~{3,})\s*([^\s`]*)")
_HEADING = re.compile(r"^ {0,3}(#{1,6})\s+(.*?)\s*#*\s*$")
_ITEM = re.compile(r"^(\s*)([-*+]|\d{1,9}[.)])\s+(.*)$")
_QUOTE = re.compile(r"^ {0,3}>\s?(.*)$")
_LANG = re.compile(r"[A-Za-z0-9_+#.-]{1,32}")
_CODE_SPAN = re.compile(r"(`+)(.+?)\1", re.S)
_INLINE = re.compile(
    r"\[(?P<text>[^\]\n]+)\]\((?P<href>https?://[^\s()]+)\)"
    r"|(?P<url>\bhttps?://[^\s<]+)"
    r"|\*\*(?P<bold>[^*\n]+?)\*\*"
)
_TRAILING = ".,;:!?)]}'\""
_TABLE_RULE = re.compile(r"^\s*\|?\s*:?-+:?\s*(\|\s*:?-+:?\s*)*\|?\s*$")


def escape(text: str) -> str:
    """HTML-escape text for element content and double-quoted attributes."""
    return html.escape(text, quote=True)


def _link(href: str, text: str) -> str:
    return f'<a href="{href}" rel="noopener noreferrer">{text}</a>'


def _inline_escaped(escaped: str) -> str:
    """Links, bare URLs and bold on already-escaped text."""

    def sub(m: re.Match[str]) -> str:
        if m.group("href"):
            return _link(m.group("href"), m.group("text"))
        if m.group("url"):
            url = m.group("url")
            tail = ""
            while url and url[-1] in _TRAILING:
                tail = url[-1] + tail
                url = url[:-1]
            # An escaped entity (&quot; &gt; &#x27;) cut at the end belongs to the text.
            entity = re.search(r"&[a-z#0-9]*$", url)
            if entity:
                tail = url[entity.start():] + tail
                url = url[:entity.start()]
            return _link(url, url) + tail if url else m.group(0)
        return f"<strong>{m.group('bold')}</strong>"

    return _INLINE.sub(sub, escaped)


def inline(text: str) -> str:
    """One run of text: code spans verbatim, the rest escaped then lightly marked up."""
    out: list[str] = []
    pos = 0
    for m in _CODE_SPAN.finditer(text):
        out.append(_inline_escaped(escape(text[pos:m.start()])))
        out.append(f"<code>{escape(m.group(2).strip(' ') or m.group(2))}</code>")
        pos = m.end()
    out.append(_inline_escaped(escape(text[pos:])))
    return "".join(out)


def _lines_inline(lines: list[str]) -> str:
    return "<br>\n".join(inline(line) for line in lines)


def _cells(line: str) -> list[str]:
    """The cells of a pipe-table row (outer pipes optional)."""
    text = line.strip()
    if text.startswith("|"):
        text = text[1:]
    if text.endswith("|"):
        text = text[:-1]
    return [c.strip() for c in text.split("|")]


def render(text: str) -> str:
    """Render message text as safe HTML (see the module docstring)."""
    lines = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    out: list[str] = []
    i = 0
    n = len(lines)
    while i < n:
        line = lines[i]
        fence = _FENCE.match(line)
        if fence:
            marker = fence.group(1)
            lang = fence.group(2)
            body: list[str] = []
            i += 1
            while i < n and not (lines[i].strip().startswith(marker[0] * len(marker))
                                 and set(lines[i].strip()) == {marker[0]}):
                body.append(lines[i])
                i += 1
            i += 1  # the closing fence (or the end of the text)
            cls = f' class="language-{lang}"' if _LANG.fullmatch(lang or "") else ""
            out.append(f"<pre><code{cls}>{escape(chr(10).join(body))}</code></pre>")
            continue
        if not line.strip():
            i += 1
            continue
        heading = _HEADING.match(line)
        if heading:
            level = min(6, len(heading.group(1)) + 2)
            out.append(f"<h{level}>{inline(heading.group(2))}</h{level}>")
            i += 1
            continue
        if _QUOTE.match(line):
            quoted: list[str] = []
            while i < n and (m := _QUOTE.match(lines[i])):
                quoted.append(m.group(1))
                i += 1
            out.append(f"<blockquote>{render(chr(10).join(quoted))}</blockquote>")
            continue
        if "|" in line and i + 1 < n and "|" in lines[i + 1] and _TABLE_RULE.match(
                lines[i + 1]):
            rows = [_cells(line)]
            i += 2
            while i < n and "|" in lines[i] and lines[i].strip():
                rows.append(_cells(lines[i]))
                i += 1
            head = "".join(f"<th>{inline(c)}</th>" for c in rows[0])
            tbody = "".join("<tr>" + "".join(f"<td>{inline(c)}</td>" for c in r) + "</tr>"
                           for r in rows[1:])
            out.append(f'<div class="table"><table><thead><tr>{head}</tr></thead>'
                       f"<tbody>{tbody}</tbody></table></div>")
            continue
        item = _ITEM.match(line)
        if item:
            ordered = item.group(2)[0].isdigit()
            items: list[list[str]] = []
            while i < n:
                m = _ITEM.match(lines[i])
                if m and (m.group(2)[0].isdigit()) == ordered:
                    items.append([m.group(3)])
                elif items and lines[i].startswith(("  ", "\t")) and lines[i].strip():
                    items[-1].append(lines[i].strip())  # a continuation line
                else:
                    break
                i += 1
            tag = "ol" if ordered else "ul"
            start = ""
            if ordered:
                first = int(re.sub(r"\D", "", item.group(2)))
                start = f' start="{first}"' if first != 1 else ""
            lis = "".join(f"<li>{_lines_inline(parts)}</li>" for parts in items)
            out.append(f"<{tag}{start}>{lis}</{tag}>")
            continue
        para: list[str] = []
        while i < n and lines[i].strip() and not (
                _FENCE.match(lines[i]) or _HEADING.match(lines[i]) or _QUOTE.match(lines[i])
                or (_ITEM.match(lines[i]) and para)):
            para.append(lines[i])
            i += 1
        if not para:  # a line that starts a block but matched none above: keep it as text
            para.append(lines[i])
            i += 1
        out.append(f"<p>{_lines_inline(para)}</p>")
    return "\n".join(out)
