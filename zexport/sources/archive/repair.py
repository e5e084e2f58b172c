"""Rows as dirty data leaves them, made into the model, each repair noted.

Why apart: the archive's columns may hold NULL, text in a number column,
BLOBs, bytes that are not UTF-8 or JSON that does not parse; every reader
(the listing, the attachment copy, the batch reader) repairs them the same
way, and the common case must stay the fastest path (this runs once per
message of the archive).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import orjson

from zexport.model import Conversation, Message, parent_of


def as_int(value: Any) -> int | None:
    """An integer column that dirty data may have left NULL, as text, or as a REAL."""
    if value is None or isinstance(value, int):
        return value
    try:
        return int(float(value))
    except (TypeError, ValueError, OverflowError):  # OverflowError: inf
        return None


def as_text(value: bytes | str | None) -> str:
    """A text column read as bytes: invalid UTF-8 is replaced, never fatal. (Text from a
    UTF-16 archive arrives as str already: see :func:`for_encoding`.)"""
    if isinstance(value, str):
        return value
    return value.decode("utf-8", "replace") if value else ""


def message_from_row(row: Sequence[Any], conv: Conversation) -> Message:
    """Build a Message from a row, repairing what is broken and noting it.

    This runs once per message of the archive: the common case (parts read as
    bytes that parse, integer columns) takes the fewest steps; repairs are the
    slow path. ``parts`` arrives as bytes (``CAST(parts AS BLOB)``): orjson
    parses UTF-8 directly, and nothing is decoded unless something needs it.
    """
    _, mid, role, raw, created, updated, order, parent, siblings_raw, sibling_index = row
    if type(raw) is not bytes and type(raw) is not str:
        raw = b"" if raw is None else str(raw)
    error: str | None = None
    parts_ok = False
    try:
        parts = _loads(raw)
    except orjson.JSONDecodeError as exc:
        parts = None
        error = f"unparseable parts JSON: {str(exc).splitlines()[0][:120]}"
        if type(raw) is bytes:
            try:
                raw.decode("utf-8")
            except UnicodeDecodeError as bad:  # bytes that are not UTF-8, stored as TEXT
                raw = raw.decode("utf-8", "replace")
                conv.warnings.append(f"message {mid}: parts text that is not valid UTF-8"
                                     f" ({bad.reason}) kept with replacement characters")
                try:
                    parts, error = _loads(raw), None
                except orjson.JSONDecodeError as again:
                    error = f"unparseable parts JSON: {str(again).splitlines()[0][:120]}"
    if type(parts) is list:
        for p in parts:  # a loop, not all(genexpr): one message is 1-3 parts
            if type(p) is not dict:
                break
        else:
            parts_ok = True
    if not parts_ok:  # not a list, or a list holding something other than objects
        if error is None and type(parts) is list:
            error = "parts array holds items that are not objects"
            parts = [p if type(p) is dict else {"type": "unknown", "value": p} for p in parts]
            conv.warnings.append(f"message {mid}: {error}; kept as 'unknown' parts")
        else:
            error = error or "parts is not a JSON array"
            text = raw.decode("utf-8", "replace") if type(raw) is bytes else raw
            parts = [{"type": "text", "text": text}]
            conv.warnings.append(f"message {mid}: {error}; kept as raw text")
    siblings: list[str] | None = None
    if siblings_raw == f'["{mid}"]':  # the common case: no alternatives; no parse needed
        siblings = [str(mid)]
    elif siblings_raw:
        try:
            value = _loads(siblings_raw)
            if type(value) is list:
                siblings = [v if type(v) is str else str(v) for v in value]
        except orjson.JSONDecodeError:
            conv.warnings.append(f"message {mid}: unparseable sibling_ids")
    if type(created) is not int:
        created = as_int(created)
        if created is None:
            conv.warnings.append(f"message {mid}: NULL created_at")
    return Message(
        mid if type(mid) is str else str(mid), role if type(role) is str else "assistant",
        parts, raw, error, created,
        updated if type(updated) is int else as_int(updated),
        order if type(order) is int else (as_int(order) or 0), parent, siblings,
        sibling_index if type(sibling_index) is int else as_int(sibling_index),
    )


_loads = orjson.loads



def note_tree_faults(conv: Conversation) -> None:
    """Note dangling parent links and an unknown current node."""
    ids = {m.id for m in conv.messages}
    for m in conv.messages:
        parent = parent_of(m)  # Claude's all-zero root parent is no missing parent
        if parent and parent not in ids:
            conv.warnings.append(f"message {m.id}: parent {parent} is missing")
    if conv.current_node_id and conv.current_node_id not in ids:
        conv.warnings.append(f"current_node_id {conv.current_node_id} names no message")
