"""Malformed and oversized frames sent over real sockets to a real running controller.

What the adversarial pass did (issue 17, point 5), reproduced: a forged
``done`` whose nested field has the wrong type, a 2,000-part request to the
control endpoint, wrong-typed versions and optional fields. Each is dropped
or answered with ``error``, logged to ``<out>/.zexport/run.log`` (never the
terminal), and the run goes on to the same result as an undisturbed one.
"""

from __future__ import annotations

import socket
import sqlite3
import time
from pathlib import Path
from typing import Any

import msgpack
import pytest
import zmq
from controlkit import (
    ask,
    finish,
    kill_group,
    registration_for,
    report,
    start_run,
    status,
    wait_progress,
)

from zexport.sample import make_sample

pytestmark = pytest.mark.timeout(90)

CONVERSATIONS = 200
DELAY = 0.02  # seconds per conversation: a few seconds to act on the run


@pytest.fixture(scope="module")
def frames_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("frames") / "archive.db"
    make_sample(path, conversations=CONVERSATIONS, seed=11)
    return path


def _ids(db: Path) -> list[str]:
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        return [r[0] for r in con.execute("SELECT id FROM conversations")]
    finally:
        con.close()


def _rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError("no VmRSS")


def test_a_done_frame_with_a_wrong_nested_type_is_dropped_and_the_run_finishes(
        tmp_path: Path, isolated_env: dict[str, str], frames_db: Path) -> None:
    """Forged ``done`` frames for every batch, each result with ``attachments_ok: "x"``:
    before, the first one that matched a live batch ended the run with exit 1."""
    out = tmp_path / "out"
    proc = start_run(isolated_env, frames_db, out, "--no-attachments", delay=DELAY)
    ctx = zmq.Context.instance()
    try:
        reg = registration_for(isolated_env, out)
        st = wait_progress(reg, 5, busy=True)
        results = [{"id": cid, "ok": True, "title": "", "error": None, "warnings": [],
                    "attachments_ok": "x", "attachments_failed": []}
                   for cid in _ids(frames_db)]
        push = ctx.socket(zmq.PUSH)
        push.setsockopt(zmq.LINGER, 2000)
        run_dir = Path(reg["control"].removeprefix("ipc://")).parent
        push.connect(f"ipc://{run_dir / 'results'}")
        for worker in st["workers"]:
            for batch in range(40):
                push.send(msgpack.packb({"v": 1, "t": "done", "w": worker["id"],
                                         "batch": batch, "results": results}))
        push.close()
        assert status(reg)["phase"] in ("exporting", "finishing")
        code, _, err = finish(proc)
    finally:
        kill_group(proc)
    assert code == 0, err
    assert "dropped" not in err and "attachments_ok" not in err  # not on the terminal
    counts = report(out)["counts"]
    assert counts["exported"] == CONVERSATIONS and counts["failed"] == 0
    log = (out / ".zexport" / "run.log").read_text()
    assert ("dropped bad result frame: done: field 'results': item 0: field 'attachments_ok':"
            " int expected, got a str") in log


# ZMTP 3.0 (RFC 23): greeting (signature, version 3.0, NULL mechanism, as-server 0), and
# READY as libzmq's DEALER sends it.
GREETING = b"\xff" + b"\x00" * 8 + b"\x7f\x03\x00" + b"NULL".ljust(20, b"\x00") + b"\x00" * 32
_PROPS = b"\x0bSocket-Type" + (6).to_bytes(4, "big") + b"DEALER"
READY = bytes([0x04, 6 + len(_PROPS)]) + b"\x05READY" + _PROPS


def _raw_dealer(path: str) -> socket.socket:
    """A Unix socket that has done the ZMTP handshake as a DEALER."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(5)
    sock.connect(path)
    sock.sendall(GREETING)
    got = b""
    while len(got) < 64:
        got += sock.recv(64 - len(got))
    sock.sendall(READY)
    ready = b""
    while len(ready) < 2 or len(ready) < 2 + ready[1]:  # the controller's READY
        ready += sock.recv(2 + (ready[1] if len(ready) > 1 else 0) - len(ready) or 1)
    assert ready[2:8] == b"\x05READY", ready
    return sock


def _bad_request(reg: dict[str, Any], msg: dict[str, Any]) -> dict[str, Any]:
    reply = ask(reg["control"], msg)
    assert reply["t"] == "error" and reply["code"] == "bad_request", (msg, reply)
    return reply


def test_control_requests_too_big_or_wrong_typed_are_refused_and_logged_not_printed(
        tmp_path: Path, isolated_env: dict[str, str], frames_db: Path) -> None:
    out = tmp_path / "out"
    proc = start_run(isolated_env, frames_db, out, "--no-attachments", delay=DELAY)
    try:
        reg = registration_for(isolated_env, out)
        wait_progress(reg, 5)
        before = _rss_kib(reg["pid"])
        # 2,000 parts of 60 KB (each under the per-part cap): the connection is closed
        # after the first few parts, long before 120 MB could pile up in the controller.
        sock = _raw_dealer(reg["control"].removeprefix("ipc://"))
        part = b"\x03" + (60_000).to_bytes(8, "big") + b"x" * 60_000  # MORE|LONG
        sent = 0
        with pytest.raises((BrokenPipeError, ConnectionResetError)):
            for sent in range(2000):  # noqa: B007 (read after the loop)
                sock.sendall(part)
        sock.close()
        assert sent < 100, f"{sent} parts of 60 KB were taken in"
        # Many tiny parts, and one part over the cap: refused too.
        for flood in (b"\x01\x01z" * 20, b"\x02" + (70_000).to_bytes(8, "big") + b"y" * 70_000):
            sock = _raw_dealer(reg["control"].removeprefix("ipc://"))
            sock.sendall(flood)
            assert sock.recv(100) == b""  # closed, unanswered
            sock.close()
        grown = _rss_kib(reg["pid"]) - before
        assert grown < 20_000, f"controller grew by {grown} KiB"
        # A boolean is not version 1; wrong-typed optional fields are errors, not nil.
        # The error still carries the request's id whenever that id can be read.
        rejected = _bad_request(reg, {"v": True, "t": "status", "id": 1})
        assert "version True" in rejected["message"] and rejected["id"] == 1
        assert _bad_request(reg, {"v": 1, "t": "status", "id": [1]})["id"] is None
        assert _bad_request(reg, {"v": 1, "t": "status", "id": 1.5})["id"] is None
        assert _bad_request(reg, {"v": 1, "t": "cancel_request", "id": 2, "reason": 5})[
            "id"] == 2
        assert _bad_request(reg, {"v": 1, "t": "cancel_request", "id": "c3", "reason": None})[
            "id"] == "c3"
        assert _bad_request(reg, {"v": 2, "t": "nonsense", "id": 4})["id"] == 4
        st = status(reg)
        assert st["cancelled"] is None and st["phase"] in ("exporting", "finishing")
        code, _, err = finish(proc)
    finally:
        kill_group(proc)
    assert code == 0, err
    assert err == ""  # nothing about the requests on the exporting terminal
    assert report(out)["counts"]["exported"] == CONVERSATIONS
    log = (out / ".zexport" / "run.log").read_text()
    assert "control: closed a connection: a message of more than 65536 bytes in all" in log
    assert "control: closed a connection: message of more than 8 parts" in log
    assert "control: closed a connection: a part of 70000 bytes (at most 65536)" in log
    assert "rejected a request: unsupported protocol version True" in log
    assert "rejected a request: cancel_request: field 'reason': str expected, got an int" in log
    assert "rejected a request: status: field 'id': int, str or nil expected, got a list" in log


def test_an_idle_connection_that_never_greets_is_dropped(
        tmp_path: Path, isolated_env: dict[str, str], frames_db: Path) -> None:
    """Connections are capped; one that never finishes its greeting does not hold a
    slot for ever (the handshake has a deadline), and status keeps being answered."""
    out = tmp_path / "out"
    # Slower: the run must outlast the idle connections' 5 s handshake deadline.
    proc = start_run(isolated_env, frames_db, out, "--no-attachments", delay=0.1)
    idle: list[socket.socket] = []
    try:
        reg = registration_for(isolated_env, out)
        wait_progress(reg, 5)
        path = reg["control"].removeprefix("ipc://")
        for _ in range(70):
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            sock.connect(path)
            idle.append(sock)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                status(reg)
                break
            except AssertionError:
                continue
        else:
            raise AssertionError("status never answered again")
        assert proc.poll() is None, "the run ended before the check"
        code, _, err = finish(proc, timeout=60)
    finally:
        for sock in idle:
            sock.close()
        kill_group(proc)
    assert code == 0, err
    assert "more than 64 connections at once" in (out / ".zexport" / "run.log").read_text()
