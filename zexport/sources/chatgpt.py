"""ChatGPT's data export (``conversations.json``, or 2026's shards) as an archive.

The ``mapping`` tree is rebuilt from ``parent`` links alone (2026 exports
omit ``children``); a dangling parent makes a root and a cycle is cut. Only
turns are kept as messages; what sits between two turns (reasoning, tool
calls and output) becomes parts of the turn below it, and a message whose
parent was not kept hangs from its nearest kept ancestor, so branches stay
branches. The active branch ends at ``current_node``, moved up to the
nearest kept message.
"""

from __future__ import annotations

import re
from typing import Any

import orjson

from zexport.sources.base import Conversion, Source
from zexport.sources.bundle import Bundle, FileBundle
from zexport.sources.chatgpt_assets import AssetIndex
from zexport.sources.chatgpt_content import DROP, FOLD, TURN, convert_content, kind_of, role_of
from zexport.sources.jsonstream import sniff_keys
from zexport.sources.parallel import convert_parts
from zexport.sources.records import ConversationRecord, MessageRecord

MANIFEST = "export_manifest.json"
_SHARD = re.compile(r"conversations-\d+\.json")
_KEYS = {"mapping", "current_node"}


def conversation_files(bundle: Bundle) -> tuple[list[str], list[str]]:
    """The export's conversation files in order, and the shards its manifest lacks."""
    names = bundle.names()
    if isinstance(bundle, FileBundle):
        return names, []
    if bundle.has(MANIFEST):
        try:
            manifest = orjson.loads(bundle.open(MANIFEST).read())
            files = manifest["logical_files"]["conversations.json"]["files"]
            listed = [f for f in files if isinstance(f, str)]
        except (orjson.JSONDecodeError, KeyError, TypeError):
            listed = []
        if listed:
            return [f for f in listed if bundle.has(f)], [f for f in listed if not bundle.has(f)]
    if bundle.has("conversations.json"):
        return ["conversations.json"], []
    return sorted(n for n in names if _SHARD.fullmatch(n)), []


def is_conversation(value: Any) -> bool:
    return isinstance(value, dict) and isinstance(value.get("mapping"), dict)


class ChatGPTSource(Source):
    name = "chatgpt"
    description = "ChatGPT data export (ZIP, its folder, or conversations.json; 2026 shards)"
    version = "2"  # 2: canvas documents as data-canvas parts

    def recognise(self, bundle: Bundle) -> bool:
        files, _ = conversation_files(bundle)
        if bundle.has(MANIFEST) and files:
            return True
        for name in files[:3]:
            with bundle.open(name) as f:
                if sniff_keys(f) & _KEYS:
                    return True
        return False

    def convert(self, bundle: Bundle, into: Conversion) -> None:
        files, missing = conversation_files(bundle)
        for shard in missing:
            into.notes.append(f"the export's manifest lists {shard}, which is missing:"
                              " its conversations are not exported")
        convert_parts(self, bundle, into, files)
        if into.missing:
            shown = ", ".join(sorted(into.missing.values())[:20])
            more = len(into.missing) - 20
            into.notes.append(f"{len(into.missing)} files referenced by conversations are not"
                              f" in the export: {shown}"
                              + (f" and {more} more" if more > 0 else ""))

    def convert_files(self, bundle: Bundle, into: Conversion, files: list[str]) -> None:
        assets = AssetIndex(bundle, into.files_dir, into.missing)
        for name in files:
            for n, key, conv in into.read_json(bundle, name, is_conversation):
                try:
                    into.add(convert_conversation(key, conv, assets))
                except (ValueError, TypeError, KeyError, AttributeError) as exc:
                    title = conv.get("title") if isinstance(conv, dict) else None
                    into.failed(f"{name} conversation #{n + 1}"
                                + (f" ({title!r})" if title else ""), f"cannot read: {exc}")


def _ts(value: Any) -> int | None:
    kind = type(value)
    if kind is float or kind is int:  # JSON's own numbers: the common case, first
        return int(value)
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return int(value)
    if isinstance(value, str):
        try:
            return int(float(value))
        except ValueError:
            return None
    return None


def _parents(mapping: dict[str, Any]) -> dict[str, str | None]:
    """Each node's parent among the nodes; dangling links and cycles cut."""
    parent: dict[str, str | None] = {}
    for key, node in mapping.items():
        p = node.get("parent") if isinstance(node, dict) else None
        parent[key] = p if isinstance(p, str) and p in mapping and p != key else None
    state: dict[str, int] = {}  # 1: on the current walk, 2: reaches a root
    for start in mapping:
        path: list[str] = []
        at: str | None = start
        while at is not None and state.get(at) is None:
            state[at] = 1
            path.append(at)
            at = parent[at]
        if at is not None and state.get(at) == 1:  # a cycle: cut where it closed
            parent[path[-1]] = None
        for p in path:
            state[p] = 2
    return parent


def convert_conversation(key: str | None, conv: dict[str, Any],
                         assets: AssetIndex) -> ConversationRecord:
    mapping = conv.get("mapping")
    if not isinstance(mapping, dict):
        raise ValueError("no mapping")
    cid = conv.get("conversation_id") or conv.get("id") or key
    if not isinstance(cid, str) or not cid:
        raise ValueError("no conversation id")
    parent = _parents(mapping)
    messages: dict[str, dict[str, Any]] = {}
    own_kind: dict[str, str] = {}  # what the message is by itself
    roles: dict[str, str] = {}  # of the turns
    kinds: dict[str, str] = {}  # how it is kept, given its place in the tree
    has_child = {p for p in parent.values() if p is not None}
    instructions: set[bytes] = set()
    for k, node in mapping.items():
        msg = node.get("message") if isinstance(node, dict) else None
        if not isinstance(msg, dict):
            kinds[k] = DROP
            continue
        messages[k] = msg
        kind = own_kind[k] = kind_of(msg)
        if kind == TURN:
            role = roles[k] = role_of(msg)
            if role == "system":  # custom instructions: shown once
                seen = orjson.dumps(msg.get("content"), option=orjson.OPT_SORT_KEYS)
                if seen in instructions:
                    kind = DROP
                instructions.add(seen)
        if kind == FOLD and k not in has_child:
            kind = TURN  # nothing below to fold into: keep it as a message of its own
        kinds[k] = kind
    conv_created = _ts(conv.get("create_time"))
    records: list[MessageRecord] = []
    for k, kind in kinds.items():
        if kind != TURN:
            continue
        msg = messages[k]
        up = parent[k]
        parts: list[dict[str, Any]] = []
        atts = []
        if up is not None and kinds[up] != TURN:  # reasoning or tool calls above it
            folded: list[str] = []
            while up is not None and kinds[up] != TURN:
                if kinds[up] == FOLD:
                    folded.append(up)
                up = parent[up]
            for f in reversed(folded):
                fparts, fatts = convert_content(messages[f], f, FOLD, assets)
                parts += fparts
                atts += fatts
        is_fold = own_kind[k] == FOLD
        own, own_atts = convert_content(msg, k, FOLD if is_fold else TURN, assets)
        if parts:
            own = parts + own
        if atts:
            own_atts = atts + own_atts
        created = _ts(msg.get("create_time"))
        records.append(MessageRecord(
            k, "assistant" if is_fold else roles[k], own,
            created if created is not None else conv_created, up,
            _ts(msg.get("update_time")), own_atts))
    current = conv.get("current_node")
    while isinstance(current, str) and current in kinds and kinds[current] != TURN:
        current = parent[current]
    title = conv.get("title")
    times = [m.created_at for m in records if m.created_at is not None]
    return ConversationRecord(
        id=cid, title=title if isinstance(title, str) else "", provider="chatgpt",
        created_at=conv_created if conv_created is not None else min(times, default=None),
        updated_at=_ts(conv.get("update_time")) or max(times, default=conv_created),
        current=current if isinstance(current, str) and current in kinds else None,
        messages=records)
