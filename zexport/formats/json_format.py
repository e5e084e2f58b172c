"""The built-in ``json`` format (BRIEF §4): the app's JSON, as a lossless superset.

Every field the app's own exporter (``src/main/export/json.ts``) writes is
here with its name, type and value: times as Unix-second integers (null for
NULL), ``exported_at`` as JavaScript's ``toISOString()`` writes it, ``sources``
as ``[{title?, url}]``, ``attachments[].local_path`` as ``./attachments/<name>``.
zexport's additions sit beside them under their own names: ISO times, every
message of every branch, the tree (``current_node_id``, ``active_branch``,
``sibling_ids``, ``sibling_index``, ``order_index``), the parts as stored and
the rest of the conversation row. ``docs/json-fields.md`` lists every field.

One deliberate difference, and an option to undo it: the app joins a
message's text parts with ``"\\n"``, which splits every cited sentence, list
item and table row in two (each citation cut the text); zexport's ``content``
is the one text (:mod:`zexport.textparts`) with each source a numbered link at
its cut. ``-o content=app`` writes the app's join instead.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

import orjson

from zexport.formats.base import Format, Option, RenderContext, iso_time
from zexport.hookspecs import hookimpl
from zexport.model import Attachment, Conversation, Message
from zexport.textparts import MessageText, join_parts, part_text


class JsonFormat(Format):
    """One JSON document per conversation."""

    name = "json"
    extension = "json"
    # 2: the app's field types (Unix-second times, app-shaped sources, attachments'
    # local_path and exported_at), content as one text with sources at their cuts,
    # ISO times and the sync columns as additions.
    version = "2"
    description = "The app's JSON export as a lossless superset (every branch, raw parts)"
    options = {
        "content": Option(
            help="message content: the one text with each source a numbered link where "
                 "the app cut it (inline), or the app's own join of the text parts by "
                 "newlines, sources only in 'sources' (app)",
            default="inline", choices=("inline", "app")),
    }

    def render(self, conversation: Conversation, ctx: RenderContext) -> bytes:
        """Render the conversation as indented JSON bytes."""
        conv = conversation
        app_content = ctx.options.get("content") == "app"
        messages = [_message(m, conv.provider, ctx, app_content) for m in conv.messages]
        doc = _conversation_fields(conv, ctx)
        doc["messages"] = messages
        # The newline by orjson: `+ b"\n"` copied the whole document (71 MiB for
        # 100,000 messages) once more, at a worker's peak of memory.
        return orjson.dumps(doc, option=orjson.OPT_INDENT_2 | orjson.OPT_APPEND_NEWLINE)


def _conversation_fields(conv: Conversation, ctx: RenderContext) -> dict[str, Any]:
    """The app's top-level fields, then zexport's (``messages`` goes last)."""
    tz = ctx.tz
    return {
        # The app's fields.
        "id": conv.id,
        "title": conv.title,
        "provider": conv.provider,
        "created_at": conv.created_at,
        "updated_at": conv.updated_at,
        "exported_at": app_time(ctx.exported_at),
        "message_count": len(conv.messages),
        # zexport's additions.
        "created_at_iso": iso_time(conv.created_at, tz),
        "updated_at_iso": iso_time(conv.updated_at, tz),
        "synced_at": conv.synced_at,
        "synced_at_iso": iso_time(conv.synced_at, tz),
        "sync_error": conv.sync_error,
        "sync_retry_count": conv.sync_retry_count,
        "stored_message_count": conv.message_count,
        "current_node_id": conv.current_node_id,
        "active_branch": [m.id for m in conv.active_branch()],
    }


def _message(m: Message, provider: str, ctx: RenderContext, app_content: bool
             ) -> dict[str, Any]:
    """One message: the app's fields (``sources``/``attachments`` only when there are
    any, as the app does), then zexport's."""
    joined = join_parts(m.parts, provider)
    item: dict[str, Any] = {
        "id": m.id,
        "role": m.role,
        "content": app_join(m) if app_content else joined.text,
        "created_at": m.created_at,
        "parent_id": m.parent_id,
    }
    sources = app_sources(m)
    if sources:
        item["sources"] = sources
    if m.attachments:
        item["attachments"] = [_attachment(a) for a in m.attachments]
    tz = ctx.tz
    item.update({
        "created_at_iso": iso_time(m.created_at, tz),
        "updated_at": m.updated_at,
        "updated_at_iso": iso_time(m.updated_at, tz),
        "order_index": m.order_index,
        "sibling_ids": m.sibling_ids,
        "sibling_index": m.sibling_index,
    })
    if joined.sources:
        item["cited_sources"] = _cited(joined)
    item["parts"] = m.parts
    if m.parts_error:
        item["parts_raw"] = m.parts_raw
        item["parts_error"] = m.parts_error
    return item


def app_time(iso: str) -> str:
    """An ISO time as JavaScript's ``Date.toISOString()`` writes it (UTC, ms, ``Z``).

    Text that is not an ISO time (a test's placeholder) is returned as it is.
    """
    try:
        when = datetime.fromisoformat(iso)
    except ValueError:
        return iso
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    when = when.astimezone(timezone.utc)
    return when.strftime("%Y-%m-%dT%H:%M:%S.") + f"{when.microsecond // 1000:03d}Z"


def app_join(m: Message) -> str:
    """``content`` as the app's ``flattenPartsToContent`` writes it: text parts joined by
    newlines, sources left out (a null text is empty, as in JavaScript's join)."""
    return "\n".join(part_text(p.get("text")) for p in m.parts if p.get("type") == "text")


def app_sources(m: Message) -> list[dict[str, Any]]:
    """``sources`` as the app's ``extractSources`` writes it: every source-url part, in
    order, as ``{title, url}``, ``title`` only when it is set, ``url`` as stored."""
    out: list[dict[str, Any]] = []
    for p in m.parts:
        if p.get("type") != "source-url":
            continue
        src: dict[str, Any] = {}
        if p.get("title"):
            src["title"] = p["title"]
        if "url" in p:  # JSON.stringify drops an undefined url, keeps a null one
            src["url"] = p["url"]
        out.append(src)
    return out


def _cited(joined: MessageText) -> list[dict[str, Any]]:
    """The distinct sources, with the numbers ``content`` shows at the cuts."""
    return [{"number": s.number, "url": s.url, "title": s.title} for s in joined.sources]


def _attachment(a: Attachment) -> dict[str, Any]:
    """The app's four attachment fields, then the rest of the row and the outcome."""
    return {
        "type": a.type,
        "filename": a.filename,
        "local_path": f"./{a.exported_path}" if a.exported_path else None,
        "original_url": a.original_url,
        "id": a.id,
        "mime_type": a.mime_type,
        "size": a.size,
        "width": a.width,
        "height": a.height,
        "file_id": a.file_id,
        "created_at": a.created_at,
        "unavailable_reason": a.unavailable_reason,
    }


@hookimpl
def zexport_formats() -> list[Format]:
    """Register the json format."""
    return [JsonFormat()]
