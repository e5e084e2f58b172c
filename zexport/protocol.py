"""The wire protocol: every frame on every zexport socket (see docs/protocol.md).

A frame is ONE ZeroMQ frame holding a msgpack map with at least
``v`` (protocol version, :data:`VERSION`) and ``t`` (message type). Nothing
is ever pickled: a peer in any language can speak this. :func:`decode`
checks every field a message type documents, nested maps and lists
included, and rejects garbage, truncated, oversized, wrong-version,
unknown-type and wrong-shaped frames with :class:`ProtocolError`; callers log
and drop them. Receivers can then trust a decoded frame completely: a frame
that would make them raise never gets past here.

The shapes are data (:data:`SCHEMA`), written with a few small checkers
(:class:`Map`, :class:`ListOf`, :class:`Pair`...). The two lists whose items
are independent requests or answers (``fetch_many``, ``fetched_many``) are
*lenient*: a malformed item is dropped alone (and logged), the rest kept.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import msgpack

from zexport.errors import ProtocolError

TYPE_CHECKING = False  # typing's, without importing typing (3 ms of `zexport status`)
if TYPE_CHECKING:
    from typing import Any

VERSION = 1
MAX_FRAME_BYTES = 16 * 1024 * 1024

log = logging.getLogger("zexport.protocol")


class Shape:
    """Checks one decoded value; :meth:`problem` says what is wrong, or None."""

    def problem(self, value: Any) -> str | None:
        raise NotImplementedError


class Kind(Shape):
    """A scalar of the given Python types (booleans never count as numbers)."""

    def __init__(self, *types: type, nullable: bool = False, name: str = "") -> None:
        self.types = types
        self.nullable = nullable
        self.name = name or " or ".join(t.__name__ for t in types) + (
            " or nil" if nullable else "")

    def problem(self, value: Any) -> str | None:
        if value is None and self.nullable:
            return None
        if isinstance(value, bool) and bool not in self.types:
            return f"{self.name} expected, got a boolean"
        if isinstance(value, self.types):
            return None
        return f"{self.name} expected, got {_kind_of(value)}"


class ListOf(Shape):
    """A list whose every item has ``item``'s shape (``lenient``: see :func:`decode`)."""

    def __init__(self, item: Shape, lenient: bool = False) -> None:
        self.item = item
        self.lenient = lenient

    def problem(self, value: Any) -> str | None:
        if not isinstance(value, list):
            return f"list expected, got {_kind_of(value)}"
        if self.lenient:
            return None
        for i, item in enumerate(value):
            why = self.item.problem(item)
            if why:
                return f"item {i}: {why}"
        return None


class Pair(Shape):
    """A two-item list ``[a, b]`` (msgpack has no tuples)."""

    def __init__(self, first: Shape, second: Shape) -> None:
        self.parts = (first, second)

    def problem(self, value: Any) -> str | None:
        if not isinstance(value, list) or len(value) != 2:
            return f"a list of 2 expected, got {_kind_of(value)}"
        for i, (part, item) in enumerate(zip(self.parts, value, strict=True)):
            why = part.problem(item)
            if why:
                return f"item {i}: {why}"
        return None


class MapOf(Shape):
    """A map of string keys to values of one shape."""

    def __init__(self, value: Shape) -> None:
        self.value = value

    def problem(self, value: Any) -> str | None:
        if not isinstance(value, dict):
            return f"map expected, got {_kind_of(value)}"
        for key, item in value.items():
            if not isinstance(key, str):
                return f"key {key!r} is not a string"
            why = self.value.problem(item)
            if why:
                return f"{key!r}: {why}"
        return None


class Map(Shape):
    """A map with ``required`` and ``optional`` fields; unknown keys are allowed.

    An optional field may be absent; when present it must have its shape
    (a wrong-typed optional field is an error, not silently ignored).
    """

    def __init__(self, required: dict[str, Shape] | None = None,
                 optional: dict[str, Shape] | None = None) -> None:
        self.required = required or {}
        self.optional = optional or {}

    def problem(self, value: Any) -> str | None:
        if not isinstance(value, dict):
            return f"map expected, got {_kind_of(value)}"
        for name, shape in self.required.items():
            if name not in value:
                return f"field {name!r} missing"
            why = shape.problem(value[name])
            if why:
                return f"field {name!r}: {why}"
        for name, shape in self.optional.items():
            if name in value:
                why = shape.problem(value[name])
                if why:
                    return f"field {name!r}: {why}"
        return None


def _kind_of(value: Any) -> str:
    if value is None:
        return "nil"
    return {bool: "a boolean", int: "an int", float: "a float", str: "a str",
            bytes: "bytes", list: "a list", dict: "a map"}.get(type(value), type(value).__name__)


INT = Kind(int)
STR = Kind(str)
BOOL = Kind(bool)
NUMBER = Kind(int, float, name="number")
OPT_STR = Kind(str, nullable=True)
ANY_MAP = Kind(dict, name="map")
REQUEST_ID = Kind(int, str, nullable=True, name="int, str or nil")


def _str_pairs(value: Any) -> bool:
    """Whether ``value`` is a list of ``[str, str]`` (the fast test of :class:`ResultShape`).

    A loop, not ``all()`` over a generator: most of these lists are empty or hold one
    pair, and making the generator cost more than testing them."""
    if type(value) is not list:
        return False
    for p in value:
        if type(p) is not list or len(p) != 2 or type(p[0]) is not str or type(p[1]) is not str:
            return False
    return True


def _strs(value: Any) -> bool:
    """Whether ``value`` is a list of str (the fast test of :class:`ResultShape`)."""
    if type(value) is not list:
        return False
    for item in value:
        if type(item) is not str:
            return False
    return True


def _is_str(value: Any) -> bool:
    return type(value) is str


def _is_bool(value: Any) -> bool:
    return type(value) is bool


def _is_int(value: Any) -> bool:
    return type(value) is int  # (not a bool: the map decides those)


def _is_opt_str(value: Any) -> bool:
    return value is None or type(value) is str


class ResultShape(Map):
    """One conversation's result in ``done``: a :class:`Map`, checked first by one fast
    test of the usual case (a result per conversation: the controller's hottest check).

    The fast test accepts only what the :class:`Map` accepts; anything it does not
    accept goes through the :class:`Map`, which decides and says what is wrong. It
    names the fields itself, so a field added to the map but not to it is refused at
    import: the fast test can never pass what the map would refuse. It looks only at
    the fields a result holds (a plain one: ``id``, ``ok``, ``title``, ``files``).
    """

    FAST_CHECKS: dict[str, Callable[[Any], bool]] = {
        "id": _is_str, "ok": _is_bool, "title": _is_str, "error": _is_opt_str,
        "warnings": _strs, "attachments_ok": _is_int, "attachments_failed": _str_pairs,
        "skipped": _is_bool, "files": _str_pairs, "conflicts": _str_pairs}

    def __init__(self, required: dict[str, Shape], optional: dict[str, Shape]) -> None:
        super().__init__(required, optional)
        if set(required) | set(optional) != set(self.FAST_CHECKS):
            raise TypeError("ResultShape's fast test does not check the same fields as its"
                            " map: change both")

    def fast_ok(self, value: Any) -> bool:
        """The fast test: True only for a result the map accepts too."""
        if type(value) is not dict or "id" not in value or "ok" not in value:
            return False
        checks = self.FAST_CHECKS
        for key, item in value.items():
            check = checks.get(key)
            if check is not None and not check(item):
                return False
        return True

    def problem(self, value: Any) -> str | None:
        return None if self.fast_ok(value) else super().problem(value)


RESULT = ResultShape(
    required={"id": STR, "ok": BOOL},
    # Left out when empty, 0, "" or nil (docs/protocol.md, ``done``). files: (path,
    # SHA-256) written; conflicts: (path, reason) left alone (edits)
    optional={"title": STR, "error": OPT_STR, "warnings": ListOf(STR), "attachments_ok": INT,
              "attachments_failed": ListOf(Pair(STR, STR)), "skipped": BOOL,
              "files": ListOf(Pair(STR, STR)), "conflicts": ListOf(Pair(STR, STR))})
ATTACHMENT = Map(
    required={"id": STR},
    optional={key: OPT_STR for key in ("provider", "file_id", "original_url", "filename",
                                      "mime_type", "message_id", "local_path")})
FETCH = {"req": INT, "conversation_id": STR, "attachment": ATTACHMENT}
FETCHED = Map(required={"req": INT}, optional={"path": OPT_STR, "name": OPT_STR,
                                                "error": OPT_STR})


class BatchItem(Shape):
    """``[id, folder]``, or ``[id, folder, {path: hash}]`` with what zexport wrote there."""

    def problem(self, value: Any) -> str | None:
        if not isinstance(value, list) or len(value) not in (2, 3):
            return f"a list of 2 or 3 expected, got {_kind_of(value)}"
        for i, item in enumerate(value[:2]):
            if not isinstance(item, str):
                return f"item {i}: str expected, got {_kind_of(item)}"
        return MapOf(STR).problem(value[2]) if len(value) == 3 else None


BATCH_ITEM = BatchItem()
CONFIG = Map(
    required={"db": STR, "out": STR, "format": STR, "tz": STR, "branches": STR,
              "exported_at": STR},
    optional={"format_options": MapOf(STR), "attachments": STR,
              "index_parts": ListOf(STR), "downloads": BOOL,
              "refused_providers": MapOf(STR), "render_timeout": NUMBER,
              "hb_interval": NUMBER, "hb_timeout": NUMBER, "controller_pid": INT,
              "log": STR, "overwrite_edited": BOOL, "conflicts_exist": BOOL,
              "attachment_roots": ListOf(STR), "app_attachments": ListOf(STR),
              "attachment_cache": OPT_STR, "layout": STR})

# type -> its fields: (required, optional). Every one is checked by decode().
SCHEMA: dict[str, tuple[dict[str, Shape], dict[str, Shape]]] = {
    # t<N> sockets (controller PUSH -> worker N's PULL)
    "batch": ({"batch": INT, "items": ListOf(BATCH_ITEM)}, {}),
    "index": ({"part": INT}, {"messages": Pair(INT, INT), "attachments": Pair(INT, INT)}),
    # results socket (worker PUSH -> controller PULL)
    "ready": ({"w": INT}, {}),
    "took": ({"w": INT, "batch": INT}, {}),
    "done": ({"w": INT, "batch": INT, "results": ListOf(RESULT)}, {}),
    "indexed": ({"w": INT, "part": INT}, {"messages_error": OPT_STR,
                                          "attachments_error": OPT_STR}),
    # per-worker control channel (PAIR, both directions)
    "hello": ({"w": INT, "pid": INT}, {}),
    "config": ({"config": CONFIG}, {}),
    "hb": ({}, {"w": INT}),  # the render watchdog's, on results, carries w
    "cancel": ({"reason": STR}, {}),
    "bye": ({"w": INT, "reason": STR}, {}),
    "fetch": (FETCH, {}),
    "fetched": (FETCHED.required, FETCHED.optional),
    "fetch_many": ({"items": ListOf(Map(FETCH), lenient=True)}, {}),
    "fetched_many": ({"items": ListOf(FETCHED, lenient=True)}, {}),
    "timed_out": ({"w": INT, "batch": INT, "conversation_id": STR, "seconds": NUMBER}, {}),
    # control endpoint (ROUTER): the answer to a request that reached no command. The
    # commands' own requests and replies are registered by zexport.run.commands.
    "error": ({"message": STR}, {"id": REQUEST_ID, "code": STR}),
}
_SHAPES = {kind: Map(required, optional) for kind, (required, optional) in SCHEMA.items()}


def register_message(msg_type: str, required: dict[str, Shape],
                     optional: dict[str, Shape]) -> bool:
    """Add a message type to :data:`SCHEMA` (a control command's request or reply).

    A control request or reply may carry an ``id`` (int, str or nil): it is
    added to ``optional`` here. Registering a type again with the very same
    shapes is a no-op; a type already taken by another shape is an error, so
    two commands can never disagree about one frame. True if it was added.
    """
    optional = {"id": REQUEST_ID, **optional}
    if msg_type in SCHEMA:
        if SCHEMA[msg_type] != (required, optional):
            raise ProtocolError(f"message type {msg_type!r} is already registered")
        return False
    SCHEMA[msg_type] = (required, optional)
    _SHAPES[msg_type] = Map(required, optional)
    return True


def unregister_message(msg_type: str) -> None:
    """Remove a type added by :func:`register_message` (a command taken out again)."""
    SCHEMA.pop(msg_type, None)
    _SHAPES.pop(msg_type, None)


def encode(msg_type: str, **fields: Any) -> bytes:
    """Build one frame of type ``msg_type``."""
    if msg_type not in SCHEMA:
        raise ProtocolError(f"unknown message type {msg_type!r}")
    body = {"v": VERSION, "t": msg_type}
    body.update(fields)
    data: bytes = msgpack.packb(body, use_bin_type=True)
    return data


def request_id(frame: bytes) -> int | str | None:
    """The ``id`` of a frame that :func:`decode` refused, when it is readable (a map with
    an int or str ``id``), so that the ``error`` reply can still be matched to its request."""
    if len(frame) > MAX_FRAME_BYTES:
        return None
    try:
        msg = msgpack.unpackb(frame, raw=False, strict_map_key=True)
    except Exception:  # msgpack raises several unrelated exception types
        return None
    req_id = msg.get("id") if isinstance(msg, dict) else None
    return req_id if type(req_id) in (int, str) else None


def decode(frame: bytes) -> dict[str, Any]:
    """Parse and validate one frame; raise ProtocolError if it is not a valid message.

    Items of a lenient list that do not fit are removed from it (one log
    line says how many); everything else that does not fit rejects the frame.
    """
    if len(frame) > MAX_FRAME_BYTES:
        raise ProtocolError(f"frame of {len(frame)} bytes exceeds {MAX_FRAME_BYTES}")
    try:
        msg = msgpack.unpackb(frame, raw=False, strict_map_key=True)
    except Exception as exc:  # msgpack raises several unrelated exception types
        raise ProtocolError(f"undecodable frame ({type(exc).__name__})") from None
    if not isinstance(msg, dict):
        raise ProtocolError("frame is not a map")
    version = msg.get("v")
    if type(version) is not int or version != VERSION:  # True == 1, but is no version
        raise ProtocolError(f"unsupported protocol version {version!r}")
    msg_type = msg.get("t")
    if not isinstance(msg_type, str) or msg_type not in SCHEMA:
        raise ProtocolError(f"unknown message type {msg_type!r}")
    shape = _SHAPES[msg_type]
    why = shape.problem(msg)
    if why:
        raise ProtocolError(f"{msg_type}: {why}")
    for name, field_shape in shape.required.items():
        if isinstance(field_shape, ListOf) and field_shape.lenient:
            kept = [item for item in msg[name] if field_shape.item.problem(item) is None]
            if len(kept) != len(msg[name]):
                log.warning("%s: dropped %d malformed item(s) of %r", msg_type,
                            len(msg[name]) - len(kept), name)
                msg[name] = kept
    return msg
