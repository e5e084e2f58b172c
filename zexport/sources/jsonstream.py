"""Conversations out of a JSON file one at a time, in flat memory (ijson's C backend).

Exports come in several top-level shapes: an array of conversations (both
providers' ``conversations.json``), ``{"conversations": [...]}``, one
conversation object (single-conversation dumps) or an object keyed by name
(some tools' fixtures). Each is streamed: only one conversation is in memory.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import IO, Any

Conv = dict[str, Any]
IsConversation = Callable[[Any], bool]


class JSONBroken(Exception):
    """The JSON text itself is cut or malformed (not one conversation: the file)."""


def sniff_keys(stream: IO[bytes], limit: int = 4000) -> set[str]:
    """The object keys among the first ``limit`` JSON events (cheap content recognition)."""
    import ijson  # here: only a run that reads an export pays its import

    keys: set[str] = set()
    try:
        for n, (_prefix, event, value) in enumerate(ijson.parse(stream)):
            if event == "map_key":
                keys.add(value)
            if n >= limit:
                break
    except (ijson.JSONError, ValueError, UnicodeDecodeError):
        pass  # a short or broken head still tells what it names
    return keys


def iter_conversations(stream: IO[bytes], is_conversation: IsConversation,
                       ) -> Iterator[tuple[str | None, Conv]]:
    """``(key, conversation)`` for every conversation in ``stream``.

    ``key`` is the object key for the keyed shape, else None. Raises
    :class:`JSONBroken` when the text is not valid JSON (a truncated file).
    """
    import ijson

    try:
        first = _first_event(stream)
        stream.seek(0)
        if first == "start_array":
            for item in ijson.items(stream, "item", use_float=True):
                yield None, item
            return
        if first != "start_map":
            raise JSONBroken("the file holds no conversations (not a JSON array or object)")
        loose: Conv = {}
        found = False
        for key, value in ijson.kvitems(stream, "", use_float=True):
            if key == "conversations" and isinstance(value, list):
                found = True
                yield from ((None, item) for item in value)
            elif is_conversation(value):
                found = True
                yield key, value
            else:
                loose[key] = value
        if not found and is_conversation(loose):
            yield None, loose
    except ijson.JSONError as exc:
        first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise JSONBroken(f"invalid or truncated JSON ({first_line})") from None


def _first_event(stream: IO[bytes]) -> str | None:
    import ijson

    for _prefix, event, _value in ijson.parse(stream):
        return str(event)
    return None
