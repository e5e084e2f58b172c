"""Conversations out of a JSON file one at a time, in flat memory (ijson's C backend).

Exports come in several top-level shapes: an array of conversations (both
providers' ``conversations.json``), ``{"conversations": [...]}``, one
conversation object (single-conversation dumps) or an object keyed by name
(some tools' fixtures). Each is streamed: only one conversation is in memory
(the object form too, when its first key is the list: Grok's export).
A file known to be small (a 2026 shard holds about 100 conversations) is
parsed whole by orjson instead, which is faster and still bounded.

JSON that breaks (a truncated download, a damaged ZIP member) ends the file,
not the input: every conversation before the break has been yielded when
:class:`JSONBroken` is raised, and it says at which byte the text broke.
"""

from __future__ import annotations

import io
import re
import zipfile
import zlib
from collections.abc import Callable, Iterable, Iterator
from typing import IO, Any

import orjson

Conv = dict[str, Any]
IsConversation = Callable[[Any], bool]

WHOLE_LIMIT = 4 << 20  # bytes: a file up to this size is parsed in one orjson call
_WHITESPACE = b" \t\r\n"
_LIST_FIRST = re.compile(rb'(?:\xef\xbb\xbf)?\s*\{\s*"conversations"\s*:\s*\[')


class JSONBroken(Exception):
    """The JSON text itself is cut or malformed at ``offset`` (a byte offset, if known)."""

    def __init__(self, reason: str, offset: int | None = None, exact: bool = True) -> None:
        super().__init__(reason)
        self.reason = reason
        self.offset = offset
        self.exact = exact  # False: the parser's position, which may lie past the error

    def where(self) -> str:
        if self.offset is None:
            return "at an unknown byte"
        return f"{'at' if self.exact else 'near'} byte {self.offset:,}"


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


class _Counted:
    """A stream that knows how many bytes it has handed out, and its last chunk.

    The break's byte offset comes from here: ijson's errors name no offset,
    only some text around the error inside the chunk it was parsing.
    """

    def __init__(self, stream: IO[bytes] | _Limited, head: bytes) -> None:
        self.stream = stream
        self.pending = head
        self.offset = 0  # bytes handed out so far
        self.chunk_start = 0
        self.chunk = b""

    def read(self, size: int = -1) -> bytes:  # all ijson calls
        if size == 0:  # ijson's probe for bytes or text
            return b""
        if self.pending:
            data, self.pending = self.pending, b""
        else:
            try:
                data = self.stream.read(size)
            except (zlib.error, zipfile.BadZipFile, EOFError, OSError) as exc:
                raise JSONBroken(f"the file cannot be read further ({exc})", self.offset
                                 ) from None
        if data:  # the last chunk that held text (not the empty read at the end)
            self.chunk_start, self.chunk = self.offset, data
        self.offset += len(data)
        return data


def iter_conversations(stream: IO[bytes], is_conversation: IsConversation,
                       size: int | None = None) -> Iterator[tuple[str | None, Conv]]:
    """``(key, conversation)`` for every conversation in ``stream``.

    ``key`` is the object key for the keyed shape, else None; ``size`` (the
    file's size, when known) lets a small file be parsed whole. Raises
    :class:`JSONBroken` where the text stops being valid JSON, after yielding
    every conversation that ends before that point.
    """
    if size is not None and size <= WHOLE_LIMIT:
        try:
            data: bytes | None = stream.read()
        except (zlib.error, zipfile.BadZipFile, EOFError, OSError):
            data = None  # read it again as a stream, to find where it breaks
        if data is not None:
            try:
                value = orjson.loads(data)
            except orjson.JSONDecodeError as exc:
                if exc.pos == 0:  # not UTF-8 somewhere: orjson does not say where
                    yield from iter_conversations(io.BytesIO(data), is_conversation)
                    return
                # orjson's position is exact (a character index, made a byte offset here).
                at = len(data.decode("utf-8", "surrogateescape")[:exc.pos].encode(
                    "utf-8", "surrogateescape"))
                broken = (JSONBroken(_TRUNCATED, at) if at >= len(data.rstrip())
                          else JSONBroken(f"invalid JSON: {exc.msg}", at))
                yield from _before(io.BytesIO(data[:at]), is_conversation, 0, broken)
            yield from _shapes(value, is_conversation)
            return
        stream.seek(0)
    n = 0
    try:
        for item in _streamed(stream, is_conversation):
            yield item
            n += 1
    except JSONBroken as broken:
        if not broken.offset:
            raise
        # yajl drops the conversations it finished in the chunk that holds the error, and
        # kvitems the last one before a break: read up to the break again for them.
        stream.seek(0)
        yield from _before(_Limited(stream, broken.offset), is_conversation, n, broken)


_TRUNCATED = "the file ends there: truncated"


def _before(stream: IO[bytes] | _Limited, is_conversation: IsConversation, skip: int,
            broken: JSONBroken) -> Iterator[tuple[str | None, Conv]]:
    """The conversations of ``stream`` (the text up to a break) after the first ``skip``;
    then ``broken`` is raised."""
    try:
        for n, item in enumerate(_streamed(stream, is_conversation, eager=True)):
            if n >= skip:
                yield item
    except JSONBroken:
        pass  # the cut: expected
    raise broken


class _Limited:
    """The first ``limit`` bytes of a stream."""

    def __init__(self, stream: IO[bytes], limit: int) -> None:
        self.stream = stream
        self.left = limit

    def read(self, size: int = -1) -> bytes:
        want = self.left if size < 0 else min(size, self.left)
        data = self.stream.read(want) if want > 0 else b""
        self.left -= len(data)
        return data


def _shapes(value: Any, is_conversation: IsConversation) -> Iterator[tuple[str | None, Conv]]:
    """The conversations of a parsed document, whatever its top-level shape."""
    if isinstance(value, list):
        yield from ((None, item) for item in value)
        return
    if not isinstance(value, dict):
        raise JSONBroken("the file holds no conversations (not a JSON array or object)")
    yield from _object_pairs(value.items(), is_conversation)


def _object_pairs(pairs: Iterable[tuple[str | None, Any]],
                  is_conversation: IsConversation) -> Iterator[tuple[str | None, Conv]]:
    """The conversations of a top-level object, from its ``(key, value)`` pairs, parsed or
    streamed: a ``conversations`` array, conversations keyed by name, or the object itself
    as one conversation. A ``None`` key is an item of ``conversations`` already taken out
    (the eager stream)."""
    loose: Conv = {}
    found = keyed = False
    for key, value in pairs:
        if key is None:
            found = True
            yield None, value
        elif key == "conversations" and isinstance(value, list):
            found = True
            yield from ((None, item) for item in value)
        elif is_conversation(value):
            if not keyed:  # conversations keyed by name: the maps before this one too
                keyed = True
                yield from _broken_maps(loose)
            found = True
            yield key, value
        elif keyed and isinstance(value, dict):
            yield key, value  # broken: reading it says why
        else:
            loose[key] = value
    if not found and is_conversation(loose):
        yield None, loose


def _broken_maps(loose: Conv) -> Iterator[tuple[str | None, Conv]]:
    """The maps of a top-level object of conversations keyed by name that are not
    conversations: broken ones (a missing or damaged tree), handed on in their place so
    that reading each fails with its reason instead of its vanishing without a word.
    Taken out of ``loose``, which keeps the file's other values."""
    for key in [k for k, v in loose.items() if isinstance(v, dict)]:
        yield key, loose.pop(key)


def _streamed(stream: IO[bytes] | _Limited, is_conversation: IsConversation,
              eager: bool = False) -> Iterator[tuple[str | None, Conv]]:
    """The conversations of a JSON text, streamed; ``eager``: see :func:`_eager_pairs`."""
    import ijson

    head = _read_head(stream)
    first = head.lstrip(b"\xef\xbb\xbf" + _WHITESPACE)[:1]
    counted = _Counted(stream, head)
    try:
        if first == b"[":
            for item in ijson.items(counted, "item", use_float=True):
                yield None, item
            return
        if not eager and _LIST_FIRST.match(head):
            # {"conversations": [...], ...} (Grok's export): kvitems would build the whole
            # list before yielding it; its items are streamed instead, the keys after it
            # (projects, tasks) are not conversations.
            for item in ijson.items(counted, "conversations.item", use_float=True):
                yield None, item
            return
        if first != b"{":
            if not first:
                raise JSONBroken("the file is empty", 0)
            raise JSONBroken("the file holds no conversations (not a JSON array or object)",
                             len(head) - len(head.lstrip(b"\xef\xbb\xbf" + _WHITESPACE)))
        pairs = _eager_pairs(counted) if eager else ijson.kvitems(counted, "", use_float=True)
        yield from _object_pairs(pairs, is_conversation)
    except ijson.JSONError as exc:
        raw = exc.args[0] if exc.args else ""
        text = (raw.decode("utf-8", "replace") if isinstance(raw, bytes) else str(raw)).strip()
        first_line = text.splitlines()[0] if text else type(exc).__name__
        offset, exact = _error_offset(raw if isinstance(raw, bytes) else str(raw), counted)
        if "premature EOF" in first_line or (
                "UTF8" in first_line and _ends_mid_character(counted.chunk)
                and _at_end(counted)):  # the end of the text, or a character cut in two by it
            raise JSONBroken(_TRUNCATED, counted.offset, True) from None
        raise JSONBroken(f"invalid JSON: {first_line}", offset, exact) from None


def _ends_mid_character(chunk: bytes) -> bool:
    """Whether the text ends inside a multi-byte UTF-8 character (a cut download)."""
    start = len(chunk) - 1
    while start > 0 and len(chunk) - start < 4 and chunk[start] & 0xC0 == 0x80:
        start -= 1  # back to the last character's first byte
    try:
        chunk[start:].decode("utf-8")
    except UnicodeDecodeError as exc:
        return exc.reason == "unexpected end of data"
    return False


def _at_end(counted: _Counted) -> bool:
    try:
        return not counted.stream.read(1)
    except (zlib.error, zipfile.BadZipFile, EOFError, OSError):
        return False


def _eager_pairs(counted: _Counted) -> Iterator[tuple[str | None, Any]]:
    """A top-level object's ``(key, value)`` pairs, each as soon as its value ends.

    ijson's ``kvitems`` gives a pair only when the next key begins, and a
    ``"conversations"`` list only when it ends: text cut off after a complete
    conversation would lose it. Items of ``"conversations"`` come as
    ``(None, item)``. Slower (Python per event): for reading up to a break.
    """
    import ijson
    from ijson.common import ObjectBuilder

    key: str | None = None
    in_list = False
    depth = 0
    builder = ObjectBuilder()
    for prefix, event, value in ijson.parse(counted, use_float=True):
        if depth == 0:
            if prefix == "" and event in ("start_map", "end_map"):
                continue
            if prefix == "" and event == "map_key":
                key = value
                continue
            if prefix == "conversations" and key == "conversations" and event in (
                    "start_array", "end_array"):
                in_list = event == "start_array"
                continue
            builder = ObjectBuilder()
        builder.event(event, value)
        if event in ("start_map", "start_array"):
            depth += 1
        elif event in ("end_map", "end_array"):
            depth -= 1
        if depth == 0:
            yield (None if in_list else key), builder.value


def _read_head(stream: IO[bytes] | _Limited) -> bytes:
    """The first bytes of the file, enough to see its first token (leading whitespace aside)."""
    head = b""
    while True:
        try:
            more = stream.read(4096)
        except (zlib.error, zipfile.BadZipFile, EOFError, OSError) as exc:
            raise JSONBroken(f"the file cannot be read ({exc})", len(head)) from None
        head += more
        if not more or head.lstrip(b"\xef\xbb\xbf" + _WHITESPACE):
            return head


def _error_offset(message: bytes | str, counted: _Counted) -> tuple[int | None, bool]:
    """(byte offset, whether exact) of ijson's error, from the text it quotes around it.

    At the end of the data (a truncated file) the offset is the file's
    length, exactly. Otherwise yajl quotes up to 30 bytes either side of
    where its lexer stopped on the message's second line (decoded, unless
    they are not UTF-8), with an arrow one byte past that point on the third;
    that text is found in the chunk being parsed. The lexer stops at the
    error, or (inside a string) at the end of the token it was reading: "near".
    """
    if isinstance(message, str):
        if "premature EOF" in message:
            return counted.offset, True
        text_s = message.rstrip("\n")
        first, last = text_s.find("\n"), text_s.rfind("\n")
        col = text_s[last + 1:].find("^")
        if not 0 <= first < last or col < 0:
            return None, False
        left = text_s[first + 1:last][:col].lstrip(" ").encode("utf-8", "surrogateescape")
        return _find_left(left, counted)
    text = message.rstrip(b"\n")
    first, last = text.find(b"\n"), text.rfind(b"\n")
    col = text[last + 1:].find(b"^")
    if not 0 <= first < last or col < 0:
        return None, False
    return _find_left(text[first + 1:last][:col].lstrip(b" "), counted)


def _find_left(left: bytes, counted: _Counted) -> tuple[int | None, bool]:
    """Where the quoted text left of the error ends in the chunk, if it occurs there once."""
    for chunk in (counted.chunk, counted.chunk.replace(b"\n", b" ").replace(b"\r", b" ")):
        at = chunk.find(left) if left else -1
        if at >= 0 and chunk.find(left, at + 1) < 0:
            return max(0, counted.chunk_start + at + len(left) - 1), False
    return None, False
