"""One Claude message's content blocks as the app's parts, in block order.

``text`` blocks are cut after each cited span with a ``source-url`` part
there (as the app stores citations); ``thinking`` becomes reasoning; a
``tool_use`` and its ``tool_result`` become one ``tool-<name>`` part;
``voice_note`` is text; a ``token_budget`` marker is dropped and any other
block is kept as it is. Attachments' extracted text is kept as
``file-text`` parts; uploaded files are rows without bytes (exports carry
none), which formats show as placeholders.
"""

from __future__ import annotations

from typing import Any

from zexport.sources.records import AttachmentRecord

Part = dict[str, Any]
_IMAGE_EXT = (".png", ".jpg", ".jpeg", ".gif", ".webp", ".heic")


def _str(value: Any) -> str:
    return value if isinstance(value, str) else ""


def _text_parts(block: dict[str, Any], msg_id: str, counter: list[int]) -> list[Part]:
    text = _str(block.get("text"))
    cuts: list[tuple[int, Part]] = []
    for c in block.get("citations") or []:
        if not isinstance(c, dict):
            continue
        end = c.get("end_index")
        details: dict[str, Any] = c["details"] if isinstance(c.get("details"), dict) else {}
        url = _str(details.get("url")) or _str(c.get("url"))
        title = _str(c.get("title")) or _str(details.get("title"))
        if not isinstance(end, int) or not (url or title):
            continue
        counter[0] += 1
        part: Part = {"type": "source-url", "sourceId": _str(c.get("uuid")) or
                      f"{msg_id}-src-{counter[0]}"}
        if url:
            part["url"] = url
        if title:
            part["title"] = title
        cuts.append((max(0, min(end, len(text))), part))
    cuts.sort(key=lambda c: c[0])
    parts: list[Part] = []
    at = 0
    for end, source in cuts:
        if text[at:end]:
            parts.append({"type": "text", "text": text[at:end]})
        parts.append(source)
        at = end
    if text[at:] or not parts:
        parts.append({"type": "text", "text": text[at:]})
    return parts


def content_parts(msg: dict[str, Any], msg_id: str) -> list[Part]:
    """The message's parts (its flat ``text`` when it has no content blocks)."""
    blocks = [b for b in msg.get("content") or [] if isinstance(b, dict)]
    if not blocks:
        text = _str(msg.get("text"))
        parts: list[Part] = [{"type": "text", "text": text}] if text else []
        return parts + _file_texts(msg)
    results = {b.get("tool_use_id"): b for b in blocks if b.get("type") == "tool_result"}
    used: set[int] = set()
    parts = []
    counter = [0]
    for block in blocks:
        kind = block.get("type")
        if kind == "text":
            parts += [p for p in _text_parts(block, msg_id, counter)
                      if p["type"] != "text" or p["text"] or len(blocks) == 1]
        elif kind == "thinking":
            text = _str(block.get("thinking")) or "\n\n".join(
                _str(s.get("summary")) for s in block.get("summaries") or [] if isinstance(s, dict))
            parts.append({"type": "reasoning", "text": text})
        elif kind == "tool_use":
            part: Part = {"type": f"tool-{_str(block.get('name')) or 'unknown'}",
                          "toolCallId": block.get("id"), "input": block.get("input")}
            result = results.get(block.get("id")) if block.get("id") else None
            if result is not None:
                used.add(id(result))
                part.update(state="output-available", output=result.get("content"),
                            isError=bool(result.get("is_error")))
            parts.append(part)
        elif kind == "tool_result":
            if id(block) not in used:
                parts.append({"type": "tool-result", "toolCallId": block.get("tool_use_id"),
                              "toolName": block.get("name"), "output": block.get("content"),
                              "isError": bool(block.get("is_error"))})
        elif kind == "voice_note":
            title, text = _str(block.get("title")), _str(block.get("text"))
            parts.append({"type": "text", "text": f"{title}\n\n{text}" if title else text})
        elif kind == "token_budget":
            continue
        else:
            parts.append({**block, "type": str(kind)})
    return parts + _file_texts(msg)


def _file_texts(msg: dict[str, Any]) -> list[Part]:
    return [{"type": "file-text", "filename": _str(a.get("file_name")),
             "text": a["extracted_content"]}
            for a in msg.get("attachments") or []
            if isinstance(a, dict) and isinstance(a.get("extracted_content"), str)]


def file_rows(msg: dict[str, Any]) -> list[AttachmentRecord]:
    """Uploaded files: named, without bytes (the export has none)."""
    rows: list[AttachmentRecord] = []
    for f in msg.get("files") or []:
        if not isinstance(f, dict):
            continue
        name = _str(f.get("file_name")) or None
        fid = _str(f.get("file_uuid")) or name or str(len(rows))
        image = f.get("file_kind") == "image" or (name or "").lower().endswith(_IMAGE_EXT)
        rows.append(AttachmentRecord(key=fid, type="image" if image else "file",
                                     file_id=_str(f.get("file_uuid")) or None, filename=name))
    return rows
