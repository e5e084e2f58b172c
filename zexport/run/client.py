"""The control client behind ``zexport status``, ``zexport cancel`` and every control command.

It only ever *connects*: it finds runs through their registration files
(:func:`zexport.core.runtime.list_runs`), which creates nothing, and talks to a
controller as a DEALER with a deadline, so a dead or wedged controller gives
a clear error in a second or two instead of a hang (Lazy Pirate, without the
retry: status is cheap to ask again). Replies carry the request's ``id``;
anything else is dropped.

:func:`run_command` is the one client path of every command: find the run,
send the command's request, let the command show the reply.

Request ids need to be unlikely to repeat, not unpredictable: :func:`os.urandom`
is enough.
"""

from __future__ import annotations

import os
import time
from collections.abc import Generator, Mapping
from typing import TYPE_CHECKING, Any

import zmq

from zexport import protocol
from zexport.core.runtime import existing_runtime_base, list_runs, pid_alive
from zexport.errors import ControlError, ExitStatus, ProtocolError, UsageError, ZexportError

if TYPE_CHECKING:
    from zexport.run.commands import Command, Console

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


def run_command(command: Command, run_id: str | None, options: Mapping[str, Any],
                console: Console) -> int:
    """Run one control command against a run, as the CLI does; return the exit status.

    No run or no answer: what went wrong, and its status (1, or 2 for several
    runs and no ``run_id``); an answer that is not the command's reply: 3.
    """
    try:
        info = pick_run(run_id)
        reply = request(info, command.request_type, timeout=command.timeout(options),
                        **command.request(options))
    except ZexportError as exc:
        console.err(f"zexport: error: {exc}")
        return exc.exit_code
    if reply["t"] != command.reply_type:
        console.err(f"zexport: controller answered: {reply.get('message')}")
        return ExitStatus.REFUSED
    return command.show(info, reply, options, console)


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


def wait_stopped(info: Mapping[str, Any], timeout: float) -> bool:
    """Wait until the run has stopped (its registration is gone or its process dead)."""
    base = existing_runtime_base()
    path = os.path.join(base, f"{info['run_id']}.json") if base else ""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not path or not os.path.exists(path) or not pid_alive(int(info["pid"])):
            return True
        time.sleep(0.01)
    return False
