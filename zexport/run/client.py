"""The control client behind ``zexport status`` and ``zexport cancel``.

It only ever *connects*: it finds runs through their registration files
(:func:`zexport.core.runtime.list_runs`), which creates nothing, and talks to a
controller as a DEALER with a deadline, so a dead or wedged controller gives
a clear error in a second or two instead of a hang (Lazy Pirate, without the
retry: status is cheap to ask again). Replies carry the request's ``id``;
anything else is dropped.

Request ids need to be unlikely to repeat, not unpredictable: :func:`os.urandom`
is enough.
"""

from __future__ import annotations

import os
import time
from collections.abc import Generator
from typing import Any

import zmq

from zexport import protocol
from zexport.core.runtime import existing_runtime_base, list_runs, pid_alive
from zexport.errors import ControlError, ProtocolError, UsageError

DEFAULT_TIMEOUT = 2.0


class NoRunError(ControlError):
    """No export is running (for this user)."""


class ControllerUnreachable(ControlError):
    """A registered controller did not answer in time."""


def pick_run(run_id: str | None) -> dict[str, Any]:
    """The registration of the run to talk to: the only one, or the one named."""
    runs = list_runs()
    if run_id:
        for info in runs:
            if info["run_id"] == run_id:
                return info
        known = ", ".join(r["run_id"] for r in runs) or "none"
        raise NoRunError(f"no running export with id {run_id!r} (running: {known})")
    if not runs:
        raise NoRunError("no zexport export is running")
    if len(runs) > 1:
        lines = [f"  {r['run_id']}  pid {r['pid']}  -> {r['out']}" for r in runs]
        raise UsageError("several exports are running; choose one with --run ID:\n"
                         + "\n".join(lines))
    return runs[0]


def request(info: dict[str, Any], msg_type: str, timeout: float = DEFAULT_TIMEOUT,
            **fields: Any) -> dict[str, Any]:
    """Send one control request to a run; return the decoded reply (any type)."""
    req_id = int.from_bytes(os.urandom(4), "big") >> 1  # [0, 2**31), as before
    frame = protocol.encode(msg_type, id=req_id, **fields)
    endpoint = str(info["control"])
    deadline = time.monotonic() + timeout
    frames = _frames(endpoint, frame, deadline)
    try:
        for data in frames:
            try:
                reply = protocol.decode(data)
            except ProtocolError:
                continue
            if reply.get("id") == req_id:
                return reply
    except TimeoutError:
        pass
    finally:
        frames.close()
    raise ControllerUnreachable(
        f"run {info['run_id']} (pid {info['pid']}) did not answer within "
        f"{timeout:g}s; it may be finishing or stuck")


def _frames(endpoint: str, frame: bytes, deadline: float) -> Generator[bytes, None, None]:
    """Frames received after sending ``frame`` (DEALER, LINGER 0, MAXMSGSIZE); TimeoutError
    at the deadline."""
    ctx: zmq.Context[zmq.Socket[bytes]] = zmq.Context.instance()
    sock = ctx.socket(zmq.DEALER)
    sock.setsockopt(zmq.LINGER, 0)
    sock.setsockopt(zmq.MAXMSGSIZE, protocol.MAX_FRAME_BYTES)
    try:
        sock.connect(endpoint)
        sock.send(frame)
        while True:
            left = deadline - time.monotonic()
            if left <= 0 or not sock.poll(int(left * 1000) + 1):
                raise TimeoutError
            yield sock.recv()
    finally:
        sock.close(linger=0)


def wait_stopped(info: dict[str, Any], timeout: float) -> bool:
    """Wait until the run has stopped (its registration is gone or its process dead)."""
    base = existing_runtime_base()
    path = os.path.join(base, f"{info['run_id']}.json") if base else ""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not path or not os.path.exists(path) or not pid_alive(int(info["pid"])):
            return True
        time.sleep(0.01)
    return False


def format_status(st: dict[str, Any]) -> str:
    """A status reply as a few human lines."""
    conv = st["conversations"]
    att = st["attachments"]
    pct = f" ({100 * conv['done'] / conv['total']:.0f}%)" if conv["total"] else ""
    eta = st.get("eta")
    eta_text = "-" if eta is None else f"{eta:.0f}s"
    state = st["phase"] + (f" ({st['cancelled']})" if st.get("cancelled") else "")
    lines = [
        f"run {st['run_id']} (pid {st['pid']}): {state} -> {st['out']}",
        f"  conversations: {conv['done']}/{conv['total']}{pct}: {conv['exported']} exported, "
        f"{conv['skipped']} skipped, {conv['failed']} failed",
        f"  attachments:   {att['exported']} exported, {att['failed']} unavailable",
        f"  rate: {st['rate']:,.0f}/s  ETA: {eta_text}  elapsed: {st['elapsed']:.1f}s",
        "  workers:",
    ]
    for w in st["workers"]:
        batch = f", batch {w['batch']}" if w.get("batch") is not None else ""
        lines.append(f"    w{w['id']} pid {w['pid']}: {w['state']}{batch}, "
                     f"{w['conversations']} done, heard {w['last_heard']:.1f}s ago")
    if st.get("worker_deaths"):
        lines.append(f"  worker deaths: {st['worker_deaths']}")
    return "\n".join(lines)
