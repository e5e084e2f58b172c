"""The wire protocol: every frame on every zexport socket (see docs/protocol.md).

A frame is ONE ZeroMQ frame holding a msgpack map with at least
``v`` (protocol version, :data:`VERSION`) and ``t`` (message type). Nothing
is ever pickled: a peer in any language can speak this. :func:`decode`
rejects garbage, truncated, oversized, wrong-version and unknown-type
frames with :class:`ProtocolError`; callers log and drop them.
"""

from __future__ import annotations

import msgpack

from .errors import ProtocolError

TYPE_CHECKING = False  # typing's, without importing typing (3 ms of `zexport status`)
if TYPE_CHECKING:
    from typing import Any

VERSION = 1
MAX_FRAME_BYTES = 16 * 1024 * 1024

# type -> required fields and their Python types (after msgpack decoding).
SCHEMA: dict[str, dict[str, type | tuple[type, ...]]] = {
    # t<N> sockets (controller PUSH -> worker N's PULL)
    "batch": {"batch": int, "items": list},
    # results socket (worker PUSH -> controller PULL)
    "ready": {"w": int},
    "took": {"w": int, "batch": int},
    "done": {"w": int, "batch": int, "results": list},
    # per-worker control channel (PAIR, both directions)
    "hello": {"w": int, "pid": int},
    "config": {"config": dict},
    "hb": {},
    "cancel": {"reason": str},
    "bye": {"w": int, "reason": str},
    "fetch": {"req": int, "conversation_id": str, "attachment": dict},
    "fetched": {"req": int},
    "fetch_many": {"items": list},
    "fetched_many": {"items": list},
    "timed_out": {"w": int, "batch": int, "conversation_id": str, "seconds": (int, float)},
    # control endpoint (ROUTER, `zexport status` / `zexport cancel` and GUIs)
    "status": {},
    "status_reply": {"status": dict},
    "cancel_request": {},
    "cancel_reply": {"state": str},
    "error": {"message": str},
}


def encode(msg_type: str, **fields: Any) -> bytes:
    """Build one frame of type ``msg_type``."""
    if msg_type not in SCHEMA:
        raise ProtocolError(f"unknown message type {msg_type!r}")
    body = {"v": VERSION, "t": msg_type}
    body.update(fields)
    data: bytes = msgpack.packb(body, use_bin_type=True)
    return data


def decode(frame: bytes) -> dict[str, Any]:
    """Parse and validate one frame; raise ProtocolError if it is not a valid message."""
    if len(frame) > MAX_FRAME_BYTES:
        raise ProtocolError(f"frame of {len(frame)} bytes exceeds {MAX_FRAME_BYTES}")
    try:
        msg = msgpack.unpackb(
            frame, raw=False, strict_map_key=True
        )
    except Exception as exc:  # msgpack raises several unrelated exception types
        raise ProtocolError(f"undecodable frame ({type(exc).__name__})") from None
    if not isinstance(msg, dict):
        raise ProtocolError("frame is not a map")
    if msg.get("v") != VERSION:
        raise ProtocolError(f"unsupported protocol version {msg.get('v')!r}")
    msg_type = msg.get("t")
    if not isinstance(msg_type, str) or msg_type not in SCHEMA:
        raise ProtocolError(f"unknown message type {msg_type!r}")
    for name, kind in SCHEMA[msg_type].items():
        if not isinstance(msg.get(name), kind) or isinstance(msg.get(name), bool):
            raise ProtocolError(f"{msg_type}: field {name!r} missing or of wrong type")
    return msg
