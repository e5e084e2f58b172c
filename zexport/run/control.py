"""The control endpoint: how ``zexport status``, ``zexport cancel`` and GUIs reach a run.

Each controller listens as a ZeroMQ **ROUTER** at ``ipc://<run folder>/control``
(the run folder is inside the 0700 per-user runtime folder, so only the same
user can connect). ROUTER, not PAIR: clients come and go, several at once, and
PAIR takes one peer and never another. Requests and replies are single msgpack
frames (see :mod:`zexport.protocol` and docs/protocol.md); the frames before a
request (REQ's delimiter, routing frames) go back in front of the reply, so
DEALER and REQ clients both work. The ROUTER is :mod:`zexport.run.zmtp_server`,
not libzmq, for its caps on the size of a whole request.

Commands are a small registry (:data:`COMMANDS`): a request type, and a
function ``(controller, request) -> reply``. A bad frame is answered with an
``error`` reply (when the client can be told) and logged; it never reaches a
command and never stops the server.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from zexport import protocol
from zexport.core.runtime import endpoint
from zexport.errors import ProtocolError
from zexport.run.zmtp_server import RouterServer

if TYPE_CHECKING:
    from zexport.run.controller import Controller

log = logging.getLogger("zexport.run.control")

CONTROL_NAME = "control"
REQUEST_TYPES = ("status", "cancel_request")


def cancel_command(c: Controller, msg: dict[str, Any]) -> dict[str, Any]:
    """``cancel_request``: start cancelling, or say that it is already under way."""
    state, already = c.cancel(msg.get("reason") or "cancelled")
    return {"t": "cancel_reply", "state": state, "already": already, "run_id": c.run_id}


def status_command(c: Controller, msg: dict[str, Any]) -> dict[str, Any]:
    """``status``: a snapshot of the run."""
    return {"t": "status_reply", "status": c.status()}


COMMANDS: dict[str, Callable[[Controller, dict[str, Any]], dict[str, Any]]] = {
    "status": status_command,
    "cancel_request": cancel_command,
}


class ControlServer:
    """The control endpoint and its serving loop (a task on the controller's loop).

    Served by :class:`~zexport.run.zmtp_server.RouterServer` (ZMTP in asyncio, not
    libzmq), which refuses a request over its part, part-count or total size
    caps after reading at most one part of it.
    """

    def __init__(self, run_dir: str, controller: Controller) -> None:
        self.controller = controller
        path = os.path.join(run_dir, CONTROL_NAME)
        self.endpoint = endpoint(run_dir, CONTROL_NAME)
        self.server = RouterServer(path, self.handle)
        self.rejected = 0

    async def serve(self) -> None:
        """Answer requests until cancelled."""
        await self.server.serve()

    def handle(self, envelope: list[bytes], payload: bytes) -> bytes:
        """The reply to one request (never raises: a client cannot take the controller down).

        A rejected request is logged (to the run's log, never the terminal)
        and answered with ``error``.
        """
        req_id: Any = None
        try:
            msg = protocol.decode(payload)
            req_id = msg.get("id")
            kind = msg["t"]
            if kind not in COMMANDS:
                raise ProtocolError(f"{kind!r} is not a control request "
                                    f"(send one of: {', '.join(REQUEST_TYPES)})")
            reply = COMMANDS[kind](self.controller, msg)
        except ProtocolError as exc:
            self.rejected += 1
            log.warning("control: rejected a request: %s", exc)
            reply = {"t": "error", "code": "bad_request", "message": str(exc)}
        except Exception as exc:  # a bug in a command must not end the run
            log.exception("control: command failed")
            reply = {"t": "error", "code": "internal", "message": f"{type(exc).__name__}: {exc}"}
        kind_out = reply.pop("t")
        return protocol.encode(kind_out, id=req_id, **reply)

    def close(self) -> None:
        """Stop serving and close every connection now."""
        self.server.close()
