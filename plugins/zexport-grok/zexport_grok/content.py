"""One Grok response's text as the app's parts: artifacts and citations cut out of it.

Grok writes documents and code it produces inline, as
``<xaiArtifact artifact_id=… title=… contentType=…>…</xaiArtifact>``: each
becomes a ``data-artifact`` part in its place (the content whole, its title
and type kept), so neither the document nor the text around it is lost or
passes for markup. Inline citations (``<grok:render type="render_inline_citation">``
with a ``citation_id``, the index of a ``web_search_results`` item) become a
``source-url`` part at the cut, as the app stores citations; an unresolved one
is removed and the text around it kept as it is, whitespace and all. A
response whose text cites nothing lists its search results as sources after
the text; one that cites some leaves the uncited results out (they are pages
Grok read, not sources of what it said).
"""

from __future__ import annotations

import re
from typing import Any

Part = dict[str, Any]

_TOKEN = re.compile(
    r"<xaiArtifact\b(?P<attrs>[^>]*)>(?P<body>.*?)</xaiArtifact>"
    r"|<grok:render\b(?P<cattrs>[^>]*\brender_inline_citation\b[^>]*)>(?P<cbody>.*?)</grok:render>"
    r"|<grok-card\b[^>]*\brender_inline_citation\b[^>]*>\s*</grok-card>",
    re.DOTALL)
_ATTR = re.compile(r'([\w:-]+)\s*=\s*"([^"]*)"')
_CITATION_ID = re.compile(r'<argument\s+name="citation_id"\s*>\s*(\d+)\s*</argument>')


def _str(value: Any) -> str:
    return value if isinstance(value, str) else ""


def search_sources(response: dict[str, Any], msg_id: str) -> list[Part]:
    """``web_search_results`` as ``source-url`` parts (None where a result has no URL)."""
    found: list[Part] = []
    for n, item in enumerate(response.get("web_search_results") or []):
        url = _str(item.get("url")) if isinstance(item, dict) else ""
        if not url:
            found.append({})
            continue
        part: Part = {"type": "source-url", "sourceId": f"{msg_id}-src-{n}", "url": url}
        title = _str(item.get("title"))
        if title:
            part["title"] = title
        found.append(part)
    return found


def _artifact(attrs: str, body: str) -> Part:
    values = dict(_ATTR.findall(attrs))
    part: Part = {"type": "data-artifact"}
    for key, name in (("artifact_id", "artifactId"), ("artifact_version_id", "versionId"),
                      ("title", "title"), ("contentType", "contentType")):
        if key in values:
            part[name] = values[key]
    # The tag's own line breaks around the content are markup, not content.
    part["content"] = body.removeprefix("\r\n").removeprefix("\n").removesuffix("\n")
    return part


def text_parts(text: str, sources: list[Part]) -> tuple[list[Part], bool]:
    """The text's parts, and whether any citation in it was resolved to a source."""
    parts: list[Part] = []
    at = 0
    cited = False
    pending = ""  # text since the last cut: a removed marker does not split it

    for token in _TOKEN.finditer(text):
        pending += text[at:token.start()]
        at = token.end()
        if token.group("attrs") is not None:
            if pending:
                parts.append({"type": "text", "text": pending})
                pending = ""
            parts.append(_artifact(token.group("attrs"), token.group("body")))
            continue
        ref = _CITATION_ID.search(token.group("cbody") or "")
        source = sources[int(ref.group(1))] if ref and int(ref.group(1)) < len(sources) else {}
        if source:
            if pending:
                parts.append({"type": "text", "text": pending})
                pending = ""
            parts.append(dict(source))
            cited = True
    pending += text[at:]
    if pending or not parts:
        parts.append({"type": "text", "text": pending})
    return parts, cited


def response_parts(response: dict[str, Any], msg_id: str) -> list[Part]:
    """Reasoning first (``thinking_trace``), then the text with its artifacts and sources."""
    parts: list[Part] = []
    thinking = _str(response.get("thinking_trace"))
    if thinking.strip():
        parts.append({"type": "reasoning", "text": thinking})
    sources = search_sources(response, msg_id)
    text = _str(response.get("message"))
    body, cited = text_parts(text, sources)
    if text or not parts:
        parts += body
    if not cited:
        seen: set[str] = set()
        for source in sources:
            if source and source["url"] not in seen:
                seen.add(source["url"])
                parts.append(source)
    return parts
