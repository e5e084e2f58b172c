"""Claude's data export (``conversations.json``; August 2026's ``conversations-000.zip``).

Messages form a tree by ``parent_message_uuid``, whose root is the all-zero
sentinel; an export without that field (before 2025) is one branch in array
order. The bulk export names no active leaf, so the latest leaf is the
active branch unless ``current_leaf_message_uuid`` (web-API dumps) says.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any

from zexport.sources.base import Conversion, Source
from zexport.sources.bundle import Bundle, FileBundle
from zexport.sources.claude_content import content_parts, file_rows
from zexport.sources.jsonstream import sniff_keys
from zexport.sources.records import ConversationRecord, MessageRecord

ROOT = "00000000-0000-4000-8000-000000000000"
_NESTED = re.compile(r"(?:.*/)?conversations-\d+\.zip")
# Not "sender" alone: Grok's responses have one too.
_KEYS = {"chat_messages", "parent_message_uuid"}
# The other files of a Claude export, by keys only they have: what each is, if given alone.
_SIDE_FILES = (({"email_address", "full_name"}, "users.json (the account)"),
               ({"conversations_memory"}, "memories.json (Claude's memory)"),
               ({"is_starter_project"}, "projects.json (projects and their documents)"),
               ({"prompt_template", "docs"}, "projects.json (projects and their documents)"))


def _bundles(bundle: Bundle) -> list[tuple[Bundle, str]]:
    """(bundle, member) of each conversations file, opening nested ZIPs."""
    if isinstance(bundle, FileBundle):
        return [(bundle, bundle.names()[0])]
    if bundle.has("conversations.json"):
        return [(bundle, "conversations.json")]
    found: list[tuple[Bundle, str]] = []
    for name in sorted(n for n in bundle.names() if _NESTED.fullmatch(n)):
        inner = bundle.nested(name)
        if inner.has("conversations.json"):
            found.append((inner, "conversations.json"))
    return found


def is_conversation(value: Any) -> bool:
    return isinstance(value, dict) and isinstance(value.get("chat_messages"), list)


def _ts(value: Any) -> int | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        return int(datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp())
    except ValueError:
        return None


class ClaudeSource(Source):
    name = "claude"
    description = "Claude data export (ZIP, its folder, conversations.json, conversations-000.zip)"
    version = "1"

    def recognise(self, bundle: Bundle) -> bool:
        for inner, name in _bundles(bundle)[:1]:
            with inner.open(name) as f:
                return bool(sniff_keys(f) & _KEYS)
        return False

    def explain_refusal(self, bundle: Bundle) -> str | None:
        if not isinstance(bundle, FileBundle):
            return None
        with bundle.open(bundle.names()[0]) as f:
            keys = sniff_keys(f)
        what = next((what for needs, what in _SIDE_FILES if needs <= keys), None)
        return (f"this is a Claude export's {what}, which holds no conversations; give the"
                " export's ZIP or folder, or its conversations.json" if what else None)

    def convert(self, bundle: Bundle, into: Conversion) -> None:
        for inner, name in _bundles(bundle):
            for n, _key, conv in into.read_json(inner, name, is_conversation):
                try:
                    into.add(convert_conversation(conv))
                except (ValueError, TypeError, KeyError, AttributeError) as exc:
                    title = conv.get("name") if isinstance(conv, dict) else None
                    into.failed(f"{name} conversation #{n + 1}"
                                + (f" ({title!r})" if title else ""), f"cannot read: {exc}")


def convert_conversation(conv: dict[str, Any]) -> ConversationRecord:
    cid = conv.get("uuid")
    if not isinstance(cid, str) or not cid:
        raise ValueError("no uuid")
    raw = [m for m in conv.get("chat_messages") or [] if isinstance(m, dict)
           and isinstance(m.get("uuid"), str)]
    tree = any("parent_message_uuid" in m for m in raw)
    ids = {m["uuid"] for m in raw}
    records: list[MessageRecord] = []
    previous: str | None = None
    for m in raw:
        if tree:
            p = m.get("parent_message_uuid")
            parent = p if isinstance(p, str) and p != ROOT and p in ids else None
        else:
            parent = previous
        records.append(MessageRecord(
            id=m["uuid"], role="user" if m.get("sender") == "human" else "assistant",
            parts=content_parts(m, m["uuid"]), created_at=_ts(m.get("created_at")),
            parent=parent, updated_at=_ts(m.get("updated_at")), attachments=file_rows(m)))
        previous = m["uuid"]
    current = conv.get("current_leaf_message_uuid")
    title = conv.get("name") or conv.get("summary")
    return ConversationRecord(
        id=cid, title=title if isinstance(title, str) else "", provider="claude",
        created_at=_ts(conv.get("created_at")), updated_at=_ts(conv.get("updated_at")),
        current=current if isinstance(current, str) and current in ids else None,
        messages=records)
