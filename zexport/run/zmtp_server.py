"""The listening side of ZMTP 3 over a Unix socket, in asyncio, with hard size caps.

Why not a libzmq ROUTER: libzmq's only inbound limit, ``ZMQ_MAXMSGSIZE``,
caps each *part* of a message, and a multipart message is buffered whole
before the application sees its first part. A client that sent 16,000 parts
of 60 KB made the controller hold ~1 GB twice (libzmq's copy, then pyzmq's)
before any check could run. Here every frame header is read before its
body, so a message over :data:`MAX_PARTS` parts or :data:`MAX_MESSAGE_BYTES`
in all is refused after at most one part's worth of bytes, and the
connection closed, as libzmq does with an oversized part.

It speaks what a ROUTER speaks to DEALER and REQ peers (RFC 23/28, ZMTP 3.0,
NULL mechanism), one connection per peer: a request is the frames of one
message, the last one the payload and those before it (REQ's empty
delimiter, routing frames) its envelope, sent back in front of the reply on
the same connection. Clients are any ZMTP 3 DEALER or REQ (pyzmq's, in
``zexport status``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
from collections.abc import Callable

log = logging.getLogger("zexport.run.control")

SIGNATURE = b"\xff" + b"\x00" * 8 + b"\x7f"
# ZMTP 3.0 greeting: signature, version, mechanism "NULL" padded to 20, as-server 1, filler.
GREETING = SIGNATURE + b"\x03\x00" + b"NULL".ljust(20, b"\x00") + b"\x01" + b"\x00" * 31
_MORE, _LONG, _COMMAND = 0x01, 0x02, 0x04
MAX_PART_BYTES = 64 * 1024  # a request is a few dozen bytes
MAX_PARTS = 8  # the request, REQ's delimiter, a few routing frames of a proxy
MAX_MESSAGE_BYTES = 64 * 1024  # all parts together
MAX_CONNECTIONS = 64  # at once; each may hold at most one message's bytes
HANDSHAKE_SECONDS = 5.0
PEER_TYPES = (b"DEALER", b"REQ", b"ROUTER")  # who may talk to a ROUTER (RFC 28)

# handler(envelope, payload) -> the reply frame, or None for no reply.
Handler = Callable[[list[bytes], bytes], "bytes | None"]


class Refused(Exception):
    """The peer broke the protocol or a cap: its connection is closed."""


def _frame(body: bytes, flags: int = 0) -> bytes:
    if len(body) > 255:
        return bytes([flags | _LONG]) + len(body).to_bytes(8, "big") + body
    return bytes([flags, len(body)]) + body


def _ready() -> bytes:
    name, value = b"Socket-Type", b"ROUTER"
    props = bytes([len(name)]) + name + len(value).to_bytes(4, "big") + value
    return _frame(b"\x05READY" + props, _COMMAND)


def _socket_type(data: bytes) -> bytes:
    """The Socket-Type property of a READY command's metadata."""
    pos = 0
    while pos < len(data):
        size = data[pos]
        name = data[pos + 1:pos + 1 + size]
        vsize = int.from_bytes(data[pos + 1 + size:pos + 5 + size], "big")
        value = data[pos + 5 + size:pos + 5 + size + vsize]
        if len(value) != vsize:
            raise Refused("truncated READY metadata")
        if name.lower() == b"socket-type":
            return value
        pos += 5 + size + vsize
    return b""


class RouterServer:
    """Accepts peers on a Unix socket path and answers each message with ``handler``.

    The socket is bound when the object is made (so the endpoint can be
    published at once); connections wait in the backlog until :meth:`serve`.
    """

    def __init__(self, path: str, handler: Handler) -> None:
        self.path = path
        self.handler = handler
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            self.sock.bind(path)
            os.chmod(path, 0o600)
            self.sock.listen(MAX_CONNECTIONS)
            self.sock.setblocking(False)
        except BaseException:
            self.sock.close()
            raise
        self.server: asyncio.AbstractServer | None = None
        self.connections: set[asyncio.Task[None]] = set()
        self.refused = 0

    async def serve(self) -> None:
        """Serve until cancelled."""
        self.server = await asyncio.start_unix_server(self._connection, sock=self.sock,
                                                      limit=MAX_PART_BYTES)
        async with self.server:
            await self.server.serve_forever()

    async def _connection(self, reader: asyncio.StreamReader,
                          writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self.connections.add(task)
        # The handshake's deadline cancels this task (not asyncio.wait_for: its extra task
        # costs loop turns, milliseconds each in a busy controller, on every connection).
        expired: list[bool] = []

        def expire() -> None:
            expired.append(True)
            task.cancel()
        timer = asyncio.get_running_loop().call_later(HANDSHAKE_SECONDS, expire)
        try:
            if len(self.connections) > MAX_CONNECTIONS:
                raise Refused(f"more than {MAX_CONNECTIONS} connections at once")
            try:
                await self._handshake(reader, writer)
            except asyncio.CancelledError:
                if not expired:
                    raise
                return  # never finished its greeting (the finally closes it)
            finally:
                timer.cancel()
            while True:
                frames = await self._message(reader)
                reply = self.handler(frames[:-1], frames[-1])
                if reply is not None:
                    writer.write(b"".join(_frame(f, _MORE) for f in frames[:-1])
                                 + _frame(reply))
                    await writer.drain()
        except Refused as exc:
            self.refused += 1
            log.warning("control: closed a connection: %s", exc)
        except (asyncio.IncompleteReadError, ConnectionError):
            pass  # the peer went away
        finally:
            self.connections.discard(task)
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    async def _handshake(self, reader: asyncio.StreamReader,
                         writer: asyncio.StreamWriter) -> None:
        writer.write(GREETING)
        greeting = await reader.readexactly(64)
        if greeting[0] != 0xFF or not greeting[9] & 0x01:
            raise Refused("not a ZMTP peer (bad signature)")
        if greeting[10] < 3:
            raise Refused(f"peer speaks ZMTP {greeting[10]}.x; 3.x is needed")
        if greeting[12:32].rstrip(b"\x00") != b"NULL":
            raise Refused("peer wants a security mechanism other than NULL")
        flags, body = await self._frame_of(reader, MAX_PART_BYTES)
        if not flags & _COMMAND or not body or body[1:1 + body[0]] != b"READY":
            raise Refused("peer did not start with READY")
        kind = _socket_type(body[1 + body[0]:])
        if kind not in PEER_TYPES:
            raise Refused(f"a {kind.decode('latin-1') or '?'} socket cannot talk to a ROUTER")
        writer.write(_ready())
        await writer.drain()

    async def _message(self, reader: asyncio.StreamReader) -> list[bytes]:
        """The frames of the next message; commands (PING...) in between are skipped."""
        frames: list[bytes] = []
        total = 0
        while True:
            flags, body = await self._frame_of(reader, MAX_MESSAGE_BYTES - total)
            if flags & _COMMAND:
                if frames:
                    raise Refused("command inside a multipart message")
                continue
            frames.append(body)
            total += len(body)
            if not flags & _MORE:
                return frames
            if len(frames) >= MAX_PARTS:
                raise Refused(f"message of more than {MAX_PARTS} parts")

    @staticmethod
    async def _frame_of(reader: asyncio.StreamReader, room: int) -> tuple[int, bytes]:
        """One frame whose body fits in ``room`` bytes (checked before it is read)."""
        flags = (await reader.readexactly(1))[0]
        if flags & ~(_MORE | _LONG | _COMMAND):
            raise Refused(f"bad frame flags {flags:#04x}")
        size = int.from_bytes(await reader.readexactly(8 if flags & _LONG else 1), "big")
        if size > MAX_PART_BYTES:
            raise Refused(f"a part of {size} bytes (at most {MAX_PART_BYTES})")
        if size > room:
            raise Refused(f"a message of more than {MAX_MESSAGE_BYTES} bytes in all")
        return flags, await reader.readexactly(size)

    def close(self) -> None:
        """Stop listening and drop every connection."""
        if self.server is not None:
            self.server.close()
        for task in list(self.connections):
            task.cancel()
        self.sock.close()
