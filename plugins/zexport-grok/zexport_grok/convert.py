"""One Grok conversation (``{"conversation": {...}, "responses": [...]}``) as records.

Responses form a tree by ``parent_response_id``: absent on the first
response and on each retry of the opening prompt (several roots), dangling
now and then (a root too). The export names no active response, so the
latest leaf is the active branch, siblings in creation order (the writer's
rules). ``sender`` comes as ``human``, ``assistant`` and ``ASSISTANT`` within
one export. A response with nothing to show (an aborted generation: no text,
reasoning or file) is not a message; its children hang from its nearest kept
ancestor, so the branch stays whole.
"""

from __future__ import annotations

from typing import Any

from zexport.sources import AttachmentRecord, ConversationRecord, MessageRecord
from zexport_grok.assets import AssetIndex
from zexport_grok.content import response_parts
from zexport_grok.times import unix_seconds

PROVIDER = "grok"
_USERS = {"human", "user"}


def is_conversation(value: Any) -> bool:
    return isinstance(value, dict) and isinstance(value.get("responses"), list)


def _role(sender: Any) -> str:
    who = sender.lower() if isinstance(sender, str) else ""
    return "user" if who in _USERS else "system" if who == "system" else "assistant"


def _shows_something(response: dict[str, Any]) -> bool:
    return any(isinstance(response.get(key), str) and response[key].strip()
               for key in ("message", "thinking_trace")) or bool(
        response.get("file_attachments"))


def convert_conversation(entry: Any, assets: AssetIndex) -> ConversationRecord:
    if not isinstance(entry, dict):
        raise ValueError(f"not a conversation object but {type(entry).__name__}")
    meta = entry.get("conversation")
    if not isinstance(meta, dict):
        raise ValueError("no conversation object")
    cid = meta.get("id")
    if not isinstance(cid, str) or not cid:
        raise ValueError("no conversation id")
    raw = entry.get("responses")
    if not isinstance(raw, list):
        raise ValueError("no responses list")
    responses: dict[str, dict[str, Any]] = {}
    for n, item in enumerate(raw):
        response = item.get("response") if isinstance(item, dict) else None
        if not isinstance(response, dict):
            continue
        rid = response.get("_id")
        responses.setdefault(rid if isinstance(rid, str) and rid else f"{cid}:{n}", response)
    kept = {rid for rid, r in responses.items() if _shows_something(r)}
    created = unix_seconds(meta.get("create_time"))
    records: list[MessageRecord] = []
    for rid, response in responses.items():
        if rid not in kept:
            continue
        records.append(MessageRecord(
            id=rid, role=_role(response.get("sender")), parts=response_parts(response, rid),
            created_at=unix_seconds(response.get("create_time")),
            parent=_kept_parent(response, responses, kept),
            attachments=_attachments(response, assets)))
    times = [m.created_at for m in records if m.created_at is not None]
    title = next((t for t in (meta.get("title"), meta.get("summary"))
                  if isinstance(t, str) and t.strip()), "")
    return ConversationRecord(
        id=cid, title=title.strip(), provider=PROVIDER,
        created_at=created if created is not None else min(times, default=None),
        updated_at=unix_seconds(meta.get("modify_time")) or max(times, default=created),
        current=None, messages=records)


def _kept_parent(response: dict[str, Any], responses: dict[str, dict[str, Any]],
                 kept: set[str]) -> str | None:
    """The nearest kept ancestor; None for a root, a dangling link or a loop."""
    seen: set[str] = set()
    up = response.get("parent_response_id")
    while isinstance(up, str) and up in responses and up not in seen:
        if up in kept:
            return up
        seen.add(up)
        up = responses[up].get("parent_response_id")
    return None


def _attachments(response: dict[str, Any], assets: AssetIndex) -> list[AttachmentRecord]:
    ids = response.get("file_attachments") or []
    return [assets.attachment(i) for i in ids if isinstance(i, str) and i] if isinstance(
        ids, list) else []
