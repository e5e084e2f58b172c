"""One ChatGPT message's content as the app's parts, and whether it is a turn at all.

Kinds: a *turn* is shown (user and assistant text, custom instructions);
*folded* content (thoughts, reasoning recaps, calls to tools, tool output,
browsing) becomes parts of the next turn below it, as the app shows them
beside the answer; *dropped* content is scaffolding nobody saw (hidden or
weightless system nodes, empty messages, memory context).
"""

from __future__ import annotations

from typing import Any

import orjson

from zexport.sources.chatgpt_assets import AssetIndex
from zexport.sources.chatgpt_cites import cite_parts
from zexport.sources.records import AttachmentRecord

Part = dict[str, Any]
TURN, FOLD, DROP = "turn", "fold", "drop"
_REASONING = ("thoughts", "reasoning_recap")
_TOOL_OUTPUT = ("execution_output", "tether_browsing_display", "system_error")


def kind_of(msg: dict[str, Any]) -> str:
    """TURN, FOLD or DROP for a node's message (see the module's docstring)."""
    content = msg.get("content")
    if not isinstance(content, dict):
        content = {}
    ctype = content.get("content_type")
    author = msg.get("author")
    role = author.get("role") if isinstance(author, dict) else None
    if ctype == "user_editable_context":
        return TURN
    if ctype == "model_editable_context":
        return DROP
    if ctype in _REASONING or ctype in _TOOL_OUTPUT or role == "tool":
        return FOLD
    meta = msg.get("metadata")
    if (isinstance(meta, dict) and meta.get("is_visually_hidden_from_conversation")) \
            or msg.get("weight") == 0:
        return DROP
    if role != "user" and role != "assistant":
        return DROP
    if role == "assistant" and msg.get("recipient") not in (None, "all"):
        return FOLD
    if ctype in (None, "text", "multimodal_text") and not _has_content(content, _dict(meta)):
        return DROP
    return TURN


def _has_content(content: dict[str, Any], meta: dict[str, Any]) -> bool:
    parts = content.get("parts")
    if isinstance(parts, list):
        for p in parts:
            if isinstance(p, dict) or (isinstance(p, str) and p and not p.isspace()):
                return True
    return bool(meta.get("attachments"))


def role_of(msg: dict[str, Any]) -> str:
    content = _dict(msg.get("content"))
    if content.get("content_type") == "user_editable_context":
        return "system"
    author = _dict(msg.get("author"))
    return "user" if author.get("role") == "user" else "assistant"


def convert_content(msg: dict[str, Any], msg_id: str, kind: str, assets: AssetIndex,
                    ) -> tuple[list[Part], list[AttachmentRecord]]:
    """The parts and attachment rows of one message."""
    content = _dict(msg.get("content"))
    meta = _dict(msg.get("metadata"))
    ctype = content.get("content_type")
    atts: list[AttachmentRecord] = []
    if ctype == "user_editable_context":
        lines = ["Custom instructions"]
        for key, label in (("user_profile", "About me"), ("user_instructions", "How to respond")):
            value = content.get(key)
            if isinstance(value, str) and value.strip():
                lines.append(f"{label}:\n{value}")
        return [{"type": "text", "text": "\n\n".join(lines)}], atts
    if ctype in _REASONING:
        return [{"type": "reasoning", "text": _reasoning_text(content)}], atts
    if kind == FOLD:
        return _tool_parts(msg, content, meta, _dict(msg.get("author")), assets, msg_id,
                           atts), atts
    if ctype == "code":
        fence = "```"
        lang = content.get("language") if isinstance(content.get("language"), str) else ""
        text = f"{fence}{lang if lang != 'unknown' else ''}\n{_str(content.get('text'))}\n{fence}"
        return [{"type": "text", "text": text}], atts
    if ctype not in (None, "text", "multimodal_text"):
        return [{**content, "type": str(ctype)}], atts
    return _text_parts(content, meta, msg_id, assets, atts), atts


def _text_parts(content: dict[str, Any], meta: dict[str, Any], msg_id: str,
                assets: AssetIndex, atts: list[AttachmentRecord]) -> list[Part]:
    texts: list[str] = []
    other: list[Part] = []
    hints = {a.get("id"): a for a in meta.get("attachments") or [] if isinstance(a, dict)}
    pointed: set[str] = set()
    for p in content.get("parts") or []:
        if isinstance(p, str):
            texts.append(p)
        elif isinstance(p, dict):
            ptype = p.get("content_type")
            if ptype == "audio_transcription" or (ptype == "text" and "text" in p):
                texts.append(_str(p.get("text")))
            elif isinstance(p.get("asset_pointer"), str) or ptype == \
                    "real_time_user_audio_video_asset_pointer":
                pointer = p.get("asset_pointer") or _dict(p.get("audio_asset_pointer")).get(
                    "asset_pointer")
                if isinstance(pointer, str):
                    att = _attachment(pointer, p, hints, assets)
                    pointed.add(att.file_id or "")
                    atts.append(att)
            else:
                other.append({**p, "type": str(ptype)})
    for fid in hints:  # uploads listed but not pointed at in the parts
        if isinstance(fid, str) and fid not in pointed:
            atts.append(_attachment(fid, {}, hints, assets))
    text = "\n\n".join([t for t in texts if t])
    parts = cite_parts(text, meta, msg_id) if text.strip() else []
    return parts + other


def _attachment(pointer: str, part: dict[str, Any], hints: dict[Any, Any],
                assets: AssetIndex) -> AttachmentRecord:
    from zexport.sources.chatgpt_assets import file_id_of

    fid = file_id_of(pointer)
    hint = _dict(hints.get(fid))
    asset = assets.resolve(pointer, hint)
    is_image = part.get("content_type") == "image_asset_pointer" or (
        asset.mime_type or "").startswith("image/")
    return AttachmentRecord(
        key=fid, type="image" if is_image else "file", file_id=fid,
        original_url=pointer if "://" in pointer else None, local_path=asset.path,
        filename=asset.name, mime_type=asset.mime_type,
        size=_int(part.get("size_bytes")) or _int(hint.get("size")),
        width=_int(part.get("width")) or _int(hint.get("width")),
        height=_int(part.get("height")) or _int(hint.get("height")))


def _tool_parts(msg: dict[str, Any], content: dict[str, Any], meta: dict[str, Any],
                author: dict[str, Any], assets: AssetIndex, msg_id: str,
                atts: list[AttachmentRecord]) -> list[Part]:
    ctype = content.get("content_type")
    if author.get("role") == "assistant":
        text = _str(content.get("text")) or "\n\n".join(
            p for p in content.get("parts") or [] if isinstance(p, str))
        canvas = _canvas(msg.get("recipient"), text)
        if canvas is not None:
            return [canvas]
        part: Part = {"type": "tool-call", "toolName": _str(msg.get("recipient")),
                      "input": text}
        if isinstance(content.get("language"), str):
            part["language"] = content["language"]
        return [part]
    result: Part = {"type": "tool-result", "toolName": _str(author.get("name")) or "tool"}
    if ctype == "tether_quote":
        return [{"type": "source-url", "sourceId": f"{msg_id}-src-1",
                 "url": _str(content.get("url")), "title": _str(content.get("title")),
                 "snippet": _str(content.get("text"))}]
    if ctype == "system_error":
        result["isError"] = True
    body = {k: v for k, v in content.items() if k != "content_type"}
    parts_text = body.get("parts")
    if isinstance(parts_text, list) and all(isinstance(p, str) for p in parts_text):
        body = {"text": "\n\n".join(parts_text)}
    result["output"] = body.get("text", body.get("result", body))
    agg = _dict(meta.get("aggregate_result"))
    for item in agg.get("messages") or []:
        if isinstance(item, dict) and isinstance(item.get("image_url"), str):
            atts.append(_attachment(item["image_url"], {"content_type": "image_asset_pointer",
                                    **item}, {}, assets))
    return [result]


def _canvas(recipient: Any, text: str) -> Part | None:
    """A canvas document the assistant wrote (``canmore.create_textdoc``), as a document part.

    The call's input is JSON ``{name, type, content}`` (``type`` such as
    ``document`` or ``code/python``); the part is the research mapping's
    ``data-canvas``, so the document is kept whole rather than as a tool call's
    string. Edits (``canmore.update_textdoc``: patterns and replacements) stay
    tool calls: they are not the document.
    """
    if recipient != "canmore.create_textdoc":
        return None
    try:
        doc = orjson.loads(text)
    except orjson.JSONDecodeError:
        return None
    if not isinstance(doc, dict) or not isinstance(doc.get("content"), str):
        return None
    return {"type": "data-canvas", "name": _str(doc.get("name")),
            "textdoc_type": _str(doc.get("type")), "content": doc["content"]}


def _reasoning_text(content: dict[str, Any]) -> str:
    if isinstance(content.get("content"), str):
        return str(content["content"])
    out: list[str] = []
    for t in content.get("thoughts") or []:
        if isinstance(t, dict):
            summary, body = _str(t.get("summary")), _str(t.get("content"))
            out.append(f"**{summary}**\n\n{body}" if summary and body else summary or body)
    out += [p for p in content.get("parts") or [] if isinstance(p, str)]
    return "\n\n".join(x for x in out if x)


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _str(value: Any) -> str:
    return value if isinstance(value, str) else ""


def _int(value: Any) -> int | None:
    return int(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None
