"""ChatGPT's citations as the app stores them: the text cut, a source-url part in place.

Two styles occur. Old answers carry ``【3†source】`` spans listed in
``metadata.citations`` (``start_ix``/``end_ix``); 2026 answers carry
private-use markers (``\\ue200cite\\ue202turn0search3\\ue201``) listed in
``metadata.content_references`` with their ``matched_text`` and items. Each
resolved marker is replaced by one ``source-url`` part per source. A
reference whose ``matched_text`` is only whitespace (a footnote anchor) is
left as the text it is: whitespace is never deleted. Markers that name no
source are removed; the private-use characters never reach the output.
"""

from __future__ import annotations

import re
from typing import Any

Part = dict[str, Any]

_LEFTOVER_MARKER = re.compile("\ue200[^\ue200\ue201]*\ue201|[\ue200-\ue206]")
_ANY_MARKER = re.compile("[\ue200-\ue206]")


def _sources_of(ref: dict[str, Any]) -> list[tuple[str | None, str | None, str | None]]:
    """(url, title, snippet) for each source a content reference names."""
    found: list[tuple[str | None, str | None, str | None]] = []
    items = ref.get("items")
    if isinstance(items, list):
        for item in items:
            if isinstance(item, dict) and (item.get("url") or item.get("title")):
                found.append((_s(item.get("url")), _s(item.get("title")),
                              _s(item.get("snippet"))))
    if not found and (ref.get("url") or ref.get("title")) and ref.get("type") != "sources_footnote":
        found.append((_s(ref.get("url")), _s(ref.get("title")), _s(ref.get("snippet"))))
    return found


def _s(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def _source_part(msg_id: str, n: int, src: tuple[str | None, str | None, str | None]) -> Part:
    part: Part = {"type": "source-url", "sourceId": f"{msg_id}-src-{n}"}
    url, title, snippet = src
    if url:
        part["url"] = url
    if title:
        part["title"] = title
    if snippet:
        part["snippet"] = snippet
    return part


def _start(ref: dict[str, Any]) -> int:
    start = ref.get("start_idx")
    return start if isinstance(start, int) else 0


def _spans(text: str, metadata: dict[str, Any]) -> list[tuple[int, int, list[Any]]]:
    """(start, end, sources) of each citation found in ``text``, in text order."""
    refs = metadata.get("content_references")
    cites = metadata.get("citations")
    if not refs and not cites:  # most messages: nothing to look for
        return []
    spans: list[tuple[int, int, list[Any]]] = []
    if isinstance(refs, list):
        cursor = 0
        ordered = sorted((r for r in refs if isinstance(r, dict)), key=_start)
        for ref in ordered:
            matched = ref.get("matched_text")
            if not isinstance(matched, str) or not matched.strip():
                continue  # a whitespace anchor: the text keeps it
            at = text.find(matched, cursor)
            if at < 0:
                at = text.find(matched)
            if at < 0:
                continue
            spans.append((at, at + len(matched), _sources_of(ref)))
            cursor = at + len(matched)
    if isinstance(cites, list):
        for c in cites:
            if not isinstance(c, dict):
                continue
            start, end = c.get("start_ix"), c.get("end_ix")
            if not (isinstance(start, int) and isinstance(end, int) and 0 <= start < end
                    <= len(text) and text[start] == "【"):
                continue
            meta: dict[str, Any] = c["metadata"] if isinstance(c.get("metadata"), dict) else {}
            src = (_s(meta.get("url")), _s(meta.get("title")), _s(meta.get("text")))
            spans.append((start, end, [src] if src[0] or src[1] else []))
    spans.sort(key=lambda s: s[0])
    kept: list[tuple[int, int, list[Any]]] = []
    for span in spans:  # overlapping spans: the first wins
        if not kept or span[0] >= kept[-1][1]:
            kept.append(span)
    return kept


def cite_parts(text: str, metadata: dict[str, Any], msg_id: str) -> list[Part]:
    """``text`` as text and source-url parts, cut at each resolved citation."""
    spans = _spans(text, metadata) if metadata else []
    parts: list[Part] = []
    cursor = 0
    n = 0
    for start, end, sources in spans:
        before = _clean(text[cursor:start])
        if before:
            parts.append({"type": "text", "text": before})
        for src in sources:
            n += 1
            parts.append(_source_part(msg_id, n, src))
        cursor = end
    rest = _clean(text[cursor:])
    if rest or not parts:
        parts.append({"type": "text", "text": rest})
    return parts


def _clean(text: str) -> str:
    """Private-use citation markers that resolved to nothing, removed (whitespace kept)."""
    return _LEFTOVER_MARKER.sub("", text) if _ANY_MARKER.search(text) else text
