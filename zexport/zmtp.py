"""A one-shot ZeroMQ DEALER over ``ipc://``, in plain Python (ZMTP 3.0, NULL security).

Why this exists: ``zexport status`` and ``zexport cancel`` must answer in
under 50 ms while an export keeps every core busy, and importing pyzmq alone
costs 20-40 ms (libzmq, its constants and the socket sugar): most of the
budget, spent before a byte is sent. What a client needs to ask a controller
one question is small: connect a Unix stream socket to the ``ipc://`` path,
exchange ZMTP greetings and ``READY`` commands (RFC 23, NULL mechanism), send
one frame, read frames back. That is this module, on ``_socket`` (the C core
of :mod:`socket`, which would also import :mod:`enum` and :mod:`selectors`).

It is deliberately narrow: ipc paths only (no abstract ``@`` names, no path
longer than ``sun_path``), DEALER semantics only, one connection, deadlines
rather than background reconnects. :func:`ipc_path` says whether an endpoint
qualifies; :mod:`zexport.client` uses pyzmq for anything else. The controller
side is always libzmq (a ROUTER), which speaks ZMTP 3.1 and accepts 3.0 peers.
"""

from __future__ import annotations

import _socket
import time

SIGNATURE = b"\xff" + b"\x00" * 8 + b"\x7f"
# signature, version 3.0, mechanism "NULL" padded to 20 bytes, as-server 0, filler.
GREETING = SIGNATURE + b"\x03\x00" + b"NULL".ljust(20, b"\x00") + b"\x00" + b"\x00" * 31
assert len(GREETING) == 64

_MORE, _LONG, _COMMAND = 0x01, 0x02, 0x04
# sun_path is 108 bytes on Linux and 104 on macOS, NUL included: stay under both.
MAX_IPC_PATH_BYTES = 103
CONNECT_RETRY_S = 0.02  # libzmq retries a refused ipc connect too (every 100 ms)


class ZmtpError(ConnectionError):
    """The peer is not a ZMTP 3 peer we can talk to, or broke the protocol."""


class PeerClosed(ConnectionError):
    """The peer closed the connection."""


def ipc_path(endpoint: str) -> str | None:
    """The Unix socket path of an ``ipc://`` endpoint this module can use, else None."""
    if not endpoint.startswith("ipc://"):
        return None
    path = endpoint[len("ipc://"):]
    if not path or path.startswith("@") or len(path.encode()) > MAX_IPC_PATH_BYTES:
        return None
    return path


def _frame(body: bytes, flags: int = 0) -> bytes:
    if len(body) > 255:
        return bytes([flags | _LONG]) + len(body).to_bytes(8, "big") + body
    return bytes([flags, len(body)]) + body


def _ready_command() -> bytes:
    """READY with the properties libzmq's own DEALER sends (Identity empty)."""
    props = b""
    for name, value in ((b"Socket-Type", b"DEALER"), (b"Identity", b"")):
        props += bytes([len(name)]) + name + len(value).to_bytes(4, "big") + value
    return _frame(b"\x05READY" + props, _COMMAND)


def _properties(data: bytes) -> dict[str, bytes]:
    """READY metadata: 1-byte name length, name, 4-byte value length, value; repeated."""
    props: dict[str, bytes] = {}
    pos = 0
    while pos < len(data):
        size = data[pos]
        pos += 1
        if pos + size + 4 > len(data):
            raise ZmtpError("truncated READY metadata")
        name = data[pos:pos + size]
        vsize = int.from_bytes(data[pos + size:pos + size + 4], "big")
        pos += size + 4
        if pos + vsize > len(data):
            raise ZmtpError("truncated READY metadata")
        props[name.decode("latin-1").lower()] = data[pos:pos + vsize]
        pos += vsize
    return props


class Dealer:
    """One connection to a ROUTER (or DEALER) on a Unix socket; blocking, with deadlines.

    Every method takes the absolute ``time.monotonic()`` deadline of the whole
    exchange and raises :class:`TimeoutError` when it passes.
    """

    def __init__(self, path: str, deadline: float, max_frame: int) -> None:
        self.max_frame = max_frame
        self._buf = bytearray()
        self._sock = self._connect(path, deadline)
        try:
            self._handshake(deadline)
        except BaseException:
            self.close()
            raise

    @staticmethod
    def _connect(path: str, deadline: float) -> _socket.socket:
        """Connect, retrying while the socket file is missing or refuses (until the deadline).

        Like libzmq's connect: a controller that is still binding, or has
        just gone, is waited for rather than reported at once.
        """
        while True:
            sock = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM)
            try:
                sock.settimeout(max(1e-3, deadline - time.monotonic()))
                sock.connect(path)
                return sock
            except OSError:
                sock.close()
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"could not connect to {path}") from None
                time.sleep(min(CONNECT_RETRY_S, left))

    def _handshake(self, deadline: float) -> None:
        self._send(GREETING, deadline)
        greeting = self._read(64, deadline)
        if greeting[0] != 0xFF or not greeting[9] & 0x01:
            raise ZmtpError("not a ZMTP peer (bad signature)")
        if greeting[10] < 3:
            raise ZmtpError(f"peer speaks ZMTP {greeting[10]}.x; 3.x is needed")
        if greeting[12:32].rstrip(b"\x00") != b"NULL":
            raise ZmtpError("peer wants a security mechanism other than NULL")
        self._send(_ready_command(), deadline)
        flags, body = self._read_frame(deadline)
        if not flags & _COMMAND:
            raise ZmtpError("peer sent a message before READY")
        name, data = self._command(body)
        if name == b"ERROR":
            reason = data[1:1 + data[0]] if data else b""
            raise ZmtpError(f"peer refused the handshake: {reason.decode('latin-1')!r}")
        if name != b"READY":
            raise ZmtpError(f"expected READY, got {name!r}")
        kind = _properties(data).get("socket-type", b"")
        if kind not in (b"ROUTER", b"DEALER", b"REP"):  # a DEALER's peers (RFC 28)
            raise ZmtpError(f"peer is a {kind.decode('latin-1') or '?'} socket, "
                            "not a ROUTER, DEALER or REP")

    @staticmethod
    def _command(body: bytes) -> tuple[bytes, bytes]:
        if not body or len(body) < 1 + body[0]:
            raise ZmtpError("malformed command")
        return body[1:1 + body[0]], body[1 + body[0]:]

    def send(self, payload: bytes, deadline: float) -> None:
        """Send one single-frame message."""
        self._send(_frame(payload), deadline)

    def recv(self, deadline: float) -> bytes:
        """The next message frame (each frame of a multipart message in turn, as
        pyzmq's ``recv`` gives them). Commands after the handshake (ZMTP 3.1
        PING and the like) are skipped."""
        while True:
            flags, body = self._read_frame(deadline)
            if not flags & _COMMAND:
                return body

    def close(self) -> None:
        """Close the connection (nothing is ever left to send: sends are synchronous)."""
        self._sock.close()

    def _send(self, data: bytes, deadline: float) -> None:
        self._sock.settimeout(self._left(deadline))
        self._sock.sendall(data)

    def _read_frame(self, deadline: float) -> tuple[int, bytes]:
        flags = self._read(1, deadline)[0]
        if flags & ~(_MORE | _LONG | _COMMAND):
            raise ZmtpError(f"bad frame flags {flags:#04x}")
        head = self._read(8 if flags & _LONG else 1, deadline)
        size = int.from_bytes(head, "big")
        if size > self.max_frame:
            raise ZmtpError(f"frame of {size} bytes exceeds {self.max_frame}")
        return flags, self._read(size, deadline)

    def _read(self, size: int, deadline: float) -> bytes:
        while len(self._buf) < size:
            self._sock.settimeout(self._left(deadline))
            chunk = self._sock.recv(max(65536, size - len(self._buf)))
            if not chunk:
                raise PeerClosed("the peer closed the connection")
            self._buf += chunk
        data = bytes(self._buf[:size])
        del self._buf[:size]
        return data

    @staticmethod
    def _left(deadline: float) -> float:
        left = deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError("deadline passed")
        return left
