"""The control endpoint: how ``zexport status``, ``zexport cancel`` and GUIs reach a run.

Each controller listens as a ZeroMQ **ROUTER** at ``ipc://<run folder>/control``
(the run folder is inside the 0700 per-user runtime folder, so only the same
user can connect). ROUTER, not PAIR: clients come and go, several at once, and
PAIR takes one peer and never another. Requests and replies are single msgpack
frames (see :mod:`zexport.protocol` and docs/protocol.md); the frames before a
request (REQ's delimiter, routing frames) go back in front of the reply, so
DEALER and REQ clients both work. The ROUTER is :mod:`zexport.run.zmtp_server`,
not libzmq, for its caps on the size of a whole request.

What each request does is its command's business (:mod:`zexport.run.commands`):
the server decodes, finds the command for the request's type in the
registry, and runs it against the run (a
:class:`~zexport.run.commands.RunControl`). A bad frame is answered with an
``error`` reply (when the client can be told) and logged; it never reaches a
command and never stops the server.
"""

from __future__ import annotations

import logging
import os
from typing import Any

from zexport import protocol
from zexport.core.runtime import endpoint
from zexport.errors import ProtocolError
from zexport.run.commands import Registry, RunControl, commands
from zexport.run.zmtp_server import RouterServer

log = logging.getLogger("zexport.run.control")

CONTROL_NAME = "control"


class ControlServer:
    """The control endpoint and its serving loop (a task on the controller's loop).

    Served by :class:`~zexport.run.zmtp_server.RouterServer` (ZMTP in asyncio, not
    libzmq), which refuses a request over its part, part-count or total size
    caps after reading at most one part of it. ``registry``: zexport's commands
    unless told otherwise.
    """

    def __init__(self, run_dir: str, run: RunControl, registry: Registry | None = None) -> None:
        self.run = run
        self.commands = registry if registry is not None else commands()
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
            command = self.commands.for_request(msg["t"])
            if command is None:
                raise ProtocolError(f"{msg['t']!r} is not a control request (send one of: "
                                    f"{', '.join(self.commands.request_types())})")
            reply = command.execute(self.run, msg)
            why = command.reply_shape().problem(reply)
            if why:
                raise TypeError(f"{command.name} made a bad {command.reply_type}: {why}")
            return protocol.encode(command.reply_type, id=req_id, **reply)
        except ProtocolError as exc:
            if req_id is None:
                req_id = protocol.request_id(payload)
            self.rejected += 1
            log.warning("control: rejected a request: %s", exc)
            error = {"code": "bad_request", "message": str(exc)}
        except Exception as exc:  # a bug in a command must not end the run
            log.exception("control: command failed")
            error = {"code": "internal", "message": f"{type(exc).__name__}: {exc}"}
        return protocol.encode("error", id=req_id, **error)

    def close(self) -> None:
        """Stop serving and close every connection now."""
        self.server.close()
