"""zexport.zmtp, the plain-Python DEALER ``zexport status``/``cancel`` use, against real libzmq.

Each test binds a pyzmq socket (libzmq, as the controller does) or a raw
Unix socket pretending to be one, and talks to it with :class:`zmtp.Dealer`
or :func:`zexport.client.request`. Peers run in threads with their own
context; every wait has a deadline.
"""

from __future__ import annotations

import os
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import msgpack
import pytest
import zmq

from zexport import client, protocol, zmtp

pytestmark = pytest.mark.timeout(30)

MAX = protocol.MAX_FRAME_BYTES


def deadline(seconds: float = 5.0) -> float:
    return time.monotonic() + seconds


@contextmanager
def zmq_peer(path: Path, kind: int, serve: Callable[[zmq.Socket[bytes]], None],
             bind_when: threading.Event | None = None) -> Iterator[None]:
    """A libzmq socket of ``kind`` bound at ``path``, running ``serve(sock)`` in a thread;
    with ``bind_when``, bound only once that event is set."""
    ready = threading.Event()
    failure: list[BaseException] = []

    def run() -> None:
        ctx = zmq.Context()
        try:
            if bind_when is not None:
                assert bind_when.wait(10), "the bind condition never came"
            sock = ctx.socket(kind)
            sock.bind(f"ipc://{path}")
            ready.set()
            serve(sock)
            sock.close(linger=5000)  # let the last reply leave before the socket goes
        except BaseException as exc:  # reported by the test, not lost in the thread
            failure.append(exc)
        finally:
            ready.set()
            ctx.term()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    if bind_when is None:
        assert ready.wait(5)
    try:
        yield
    finally:
        thread.join(10)
        assert not thread.is_alive(), "peer thread did not finish"
        if failure:
            raise failure[0]


def answer(replies: Callable[[list[bytes]], list[list[bytes]]],
           count: int = 1) -> Callable[[zmq.Socket[bytes]], None]:
    """A serve function: for each of ``count`` requests, send what ``replies`` returns."""
    def serve(sock: zmq.Socket[bytes]) -> None:
        for _ in range(count):
            assert sock.poll(5000), "no request"
            frames = sock.recv_multipart()
            for reply in replies(frames):
                sock.send_multipart(reply)
    return serve


def test_request_reply_with_a_libzmq_router_short_long_and_huge_frames(tmp_path: Path) -> None:
    path = tmp_path / "control"
    sizes = [0, 1, 255, 256, 70_000, 3_000_000]

    def replies(frames: list[bytes]) -> list[list[bytes]]:
        assert len(frames) == 2  # routing id + our single frame: we are a DEALER
        size = int(frames[1])
        return [[frames[0], bytes([size % 251]) * size]]

    with zmq_peer(path, zmq.ROUTER, answer(replies, len(sizes))):
        for size in sizes:
            dealer = zmtp.Dealer(str(path), deadline(), MAX)
            try:
                dealer.send(str(size).encode(), deadline())
                assert dealer.recv(deadline()) == bytes([size % 251]) * size
            finally:
                dealer.close()


def test_multipart_replies_arrive_frame_by_frame_as_pyzmq_recv_gives_them(
        tmp_path: Path) -> None:
    path = tmp_path / "control"
    with zmq_peer(path, zmq.ROUTER, answer(lambda f: [[f[0], b"a", b"b" * 300, b"c"]])):
        dealer = zmtp.Dealer(str(path), deadline(), MAX)
        dealer.send(b"hi", deadline())
        assert [dealer.recv(deadline()) for _ in range(3)] == [b"a", b"b" * 300, b"c"]
        dealer.close()


def test_a_libzmq_dealer_peer_works_and_incompatible_socket_types_are_refused(
        tmp_path: Path) -> None:
    path = tmp_path / "dealer"

    def echo(sock: zmq.Socket[bytes]) -> None:
        assert sock.poll(5000)
        sock.send(sock.recv() + b"!")

    with zmq_peer(path, zmq.DEALER, echo):
        dealer = zmtp.Dealer(str(path), deadline(), MAX)
        dealer.send(b"ping", deadline())
        assert dealer.recv(deadline()) == b"ping!"
        dealer.close()

    pub = tmp_path / "pub"
    stop = threading.Event()
    with zmq_peer(pub, zmq.PUB, lambda sock: stop.wait(10)):
        try:
            with pytest.raises(ConnectionError):  # our check, or libzmq hanging up
                zmtp.Dealer(str(pub), deadline(), MAX)
        finally:
            stop.set()


def test_connect_waits_for_a_socket_that_is_not_bound_yet(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """As libzmq does: a controller still binding is waited for, within the deadline.

    The peer binds once the client has spent 0.3 s in its own connect retries
    (observed through the pauses it takes), not after a fixed delay."""
    path = tmp_path / "late"
    retried = threading.Event()
    paused = [0.0]
    real_sleep = time.sleep

    def counting_sleep(seconds: float) -> None:
        paused[0] += seconds
        if paused[0] >= 0.3:
            retried.set()
        real_sleep(seconds)

    monkeypatch.setattr(zmtp, "time", SimpleNamespace(monotonic=time.monotonic,
                                                      sleep=counting_sleep))
    with zmq_peer(path, zmq.ROUTER, answer(lambda f: [[f[0], b"late reply"]]),
                  bind_when=retried):
        started = time.monotonic()
        dealer = zmtp.Dealer(str(path), deadline(), MAX)
        dealer.send(b"x", deadline())
        assert dealer.recv(deadline()) == b"late reply"
        dealer.close()
        assert time.monotonic() - started >= 0.25


def test_nothing_listening_times_out_at_the_deadline(tmp_path: Path) -> None:
    started = time.monotonic()
    with pytest.raises(TimeoutError):
        zmtp.Dealer(str(tmp_path / "nobody"), deadline(0.3), MAX)
    assert 0.25 <= time.monotonic() - started < 2


@contextmanager
def raw_peer(path: Path, behave: Callable[[socket.socket], None]) -> Iterator[None]:
    """A plain Unix socket server that accepts one connection and runs ``behave`` on it."""
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(str(path))
    server.listen(1)
    server.settimeout(5)

    def run() -> None:
        try:
            conn, _ = server.accept()
        except OSError:
            return
        with conn:
            behave(conn)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    try:
        yield
    finally:
        thread.join(10)
        server.close()


def recv_exactly(conn: socket.socket, size: int) -> bytes:
    data = b""
    while len(data) < size:
        chunk = conn.recv(size - len(data))
        if not chunk:
            break
        data += chunk
    return data


def ready_frame(kind: bytes) -> bytes:
    body = b"\x05READY" + b"\x0bSocket-Type" + len(kind).to_bytes(4, "big") + kind
    return bytes([0x04, len(body)]) + body


@pytest.mark.parametrize("peer_says, error", [
    (b"HTTP/1.1 400 Bad Request\r\n\r\n" + b"x" * 40, "signature"),
    (zmtp.SIGNATURE + b"\x02\x00" + b"\x00" * 52, "ZMTP 2"),
    (zmtp.SIGNATURE + b"\x03\x00" + b"CURVE".ljust(20, b"\x00") + b"\x00" * 32, "NULL"),
    (zmtp.GREETING + bytes([0x00, 2]) + b"hi", "before READY"),
    (zmtp.GREETING + bytes([0x04, 7]) + b"\x05ERROR\x00", "refused"),
    (zmtp.GREETING + bytes([0x04, 11]) + b"\x05READY\x0bSock", "truncated"),
    (zmtp.GREETING + ready_frame(b"PUB"), "PUB"),
    (zmtp.GREETING + ready_frame(b"ROUTER") + bytes([0x40, 1]) + b"x", "flags"),
    (zmtp.GREETING + ready_frame(b"ROUTER") + bytes([0x02]) + (MAX + 1).to_bytes(8, "big"),
     "exceeds"),
], ids=["http", "zmtp2", "curve", "message-first", "error", "truncated", "pub", "bad-flags",
        "oversized"])
def test_a_peer_breaking_the_protocol_is_an_error_not_a_hang(
        tmp_path: Path, peer_says: bytes, error: str) -> None:
    path = tmp_path / "bad"

    def behave(conn: socket.socket) -> None:
        recv_exactly(conn, 64)
        conn.sendall(peer_says)
        conn.settimeout(5)
        try:
            while conn.recv(65536):  # until the client hangs up
                pass
        except OSError:
            pass

    dealer = None
    with raw_peer(path, behave):
        try:
            with pytest.raises(zmtp.ZmtpError, match=error):
                dealer = zmtp.Dealer(str(path), deadline(), MAX)
                dealer.send(b"x", deadline())
                dealer.recv(deadline())
        finally:
            if dealer is not None:
                dealer.close()


def test_peer_hanging_up_and_peer_saying_nothing(tmp_path: Path) -> None:
    def hang_up_after_ready(conn: socket.socket) -> None:
        recv_exactly(conn, 64)
        conn.sendall(zmtp.GREETING + ready_frame(b"ROUTER"))
        recv_exactly(conn, len(zmtp._ready_command()) + 3)  # READY, then the request "x"

    with raw_peer(tmp_path / "a", hang_up_after_ready):
        dealer = zmtp.Dealer(str(tmp_path / "a"), deadline(), MAX)
        dealer.send(b"x", deadline())
        with pytest.raises(zmtp.PeerClosed):
            dealer.recv(deadline())
        dealer.close()

    release = threading.Event()
    with raw_peer(tmp_path / "b", lambda conn: release.wait(10)):
        started = time.monotonic()
        try:
            with pytest.raises(TimeoutError):
                zmtp.Dealer(str(tmp_path / "b"), deadline(0.3), MAX)
        finally:
            release.set()
        assert time.monotonic() - started < 2


def test_ipc_path_takes_only_what_zmtp_can_reach() -> None:
    assert zmtp.ipc_path("ipc:///run/user/1/zexport/ab/control") == "/run/user/1/zexport/ab/control"
    assert zmtp.ipc_path("tcp://127.0.0.1:5555") is None
    assert zmtp.ipc_path("ipc://@abstract") is None
    assert zmtp.ipc_path("ipc://") is None
    assert zmtp.ipc_path("ipc:///" + "x" * 200) is None


def router_answering(extra_first: list[bytes]) -> Callable[[zmq.Socket[bytes]], None]:
    """A ROUTER that, per request, sends ``extra_first`` frames, then the real reply."""
    def replies(frames: list[bytes]) -> list[list[bytes]]:
        msg = protocol.decode(frames[-1])
        reply = protocol.encode("status_reply", id=msg["id"], status={"n": 1, "t": "é"})
        return [[frames[0], f] for f in extra_first] + [[frames[0], reply]]
    return answer(replies, 2)


def test_client_request_gives_the_same_reply_through_zmtp_and_pyzmq(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Replies with another id and undecodable frames are skipped by both transports."""
    path = tmp_path / "control"
    noise = [b"garbage", protocol.encode("status_reply", id=-1, status={}),
             msgpack.packb({"v": 1, "t": "status_reply", "id": 5})]
    info: dict[str, Any] = {"control": f"ipc://{path}", "run_id": "r", "pid": os.getpid()}
    with zmq_peer(path, zmq.ROUTER, router_answering(noise)):
        via_zmtp = client.request(info, "status", timeout=5)
        monkeypatch.setattr(client, "zmtp_path", lambda endpoint: None)
        via_zmq = client.request(info, "status", timeout=5)
    del via_zmtp["id"], via_zmq["id"]
    assert via_zmtp == via_zmq == {"v": 1, "t": "status_reply", "status": {"n": 1, "t": "é"}}


@pytest.mark.parametrize("transport", ["zmtp", "pyzmq"])
def test_client_request_to_a_silent_or_missing_controller_is_controller_unreachable(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, transport: str) -> None:
    if transport == "pyzmq":
        monkeypatch.setattr(client, "zmtp_path", lambda endpoint: None)
    info: dict[str, Any] = {"control": f"ipc://{tmp_path / 'none'}", "run_id": "r", "pid": 1}
    started = time.monotonic()
    with pytest.raises(client.ControllerUnreachable, match="did not answer within 0.3s"):
        client.request(info, "status", timeout=0.3)
    assert time.monotonic() - started < 2
