"""The built-in ``json`` format (BRIEF §4): the app's OpenAI-compatible JSON, lossless.

Top level and per-message keys are those of the app's exporter; on top of
them every message of every branch is present, with ``current_node_id``,
``sibling_ids``, ``sibling_index``, ``order_index`` and the parsed parts
(``parts_raw`` too when they were not valid JSON), so no archive data is lost.
``exported_at`` is the run's start time, the same in every file of a run.
"""

from __future__ import annotations

from typing import Any

import orjson

from ..hookspecs import hookimpl
from ..model import Conversation
from .base import Format, RenderContext, iso_time


class JsonFormat(Format):
    """One JSON document per conversation."""

    name = "json"
    extension = "json"
    version = "1"
    description = "The app's OpenAI-compatible JSON, plus every branch and raw part (lossless)"

    def render(self, conversation: Conversation, ctx: RenderContext) -> bytes:
        """Render the conversation as indented JSON bytes."""
        conv = conversation
        tz = ctx.tz
        active = [m.id for m in conv.active_branch()]
        messages: list[dict[str, Any]] = []
        for m in conv.messages:
            item: dict[str, Any] = {
                "id": m.id,
                "role": m.role,
                "content": m.text(),
                "created_at": iso_time(m.created_at, tz),
                "updated_at": iso_time(m.updated_at, tz),
                "parent_id": m.parent_id,
                "order_index": m.order_index,
                "sibling_ids": m.sibling_ids,
                "sibling_index": m.sibling_index,
                "parts": m.parts,
            }
            if m.parts_error:
                item["parts_raw"] = m.parts_raw
                item["parts_error"] = m.parts_error
            sources = [p for p in m.parts if p.get("type") == "source-url"]
            if sources:
                item["sources"] = sources
            if m.attachments:
                item["attachments"] = [
                    {
                        "id": a.id,
                        "type": a.type,
                        "filename": a.filename,
                        "mime_type": a.mime_type,
                        "size": a.size,
                        "width": a.width,
                        "height": a.height,
                        "file_id": a.file_id,
                        "original_url": a.original_url,
                        "path": a.exported_path,
                        "unavailable_reason": a.unavailable_reason,
                    }
                    for a in m.attachments
                ]
            messages.append(item)
        doc = {
            "id": conv.id,
            "title": conv.title,
            "provider": conv.provider,
            "created_at": iso_time(conv.created_at, tz),
            "updated_at": iso_time(conv.updated_at, tz),
            "exported_at": ctx.exported_at,
            "message_count": len(conv.messages),
            "current_node_id": conv.current_node_id,
            "active_branch": active,
            "messages": messages,
        }
        return orjson.dumps(doc, option=orjson.OPT_INDENT_2) + b"\n"


@hookimpl
def zexport_formats() -> list[Format]:
    """Register the json format."""
    return [JsonFormat()]
