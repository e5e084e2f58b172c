"""Helpers for tests that drive a live export: start it, wait on conditions, ask it things.

Deliberately independent of zexport's own client code: runs are found by
reading registration files and asked over a raw DEALER socket with msgpack,
as docs/protocol.md describes. No fixed sleeps: everything waits on a
condition with a deadline.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import msgpack
import zmq

from zexport.core.runtime import pid_alive

T = TypeVar("T")


class Gate:
    """A file the test holds locked: a plugin in another process waits on it with
    :data:`WAIT_AT_GATE` (a blocking shared lock, no polling) until :meth:`open`, or
    until the test's process ends and the kernel drops the lock."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.fd: int | None = os.open(path, os.O_WRONLY | os.O_CREAT, 0o600)
        fcntl.flock(self.fd, fcntl.LOCK_EX)

    def open(self) -> None:
        if self.fd is not None:
            os.close(self.fd)  # closing drops the lock: the waiter goes on
            self.fd = None


# The plugin's side of a Gate, as source for the plugins the tests write.
WAIT_AT_GATE = """
def wait_at_gate(path):
    import fcntl, os
    fd = os.open(path, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_SH)
    finally:
        os.close(fd)
"""


def wait_for(cond: Callable[[], T], timeout: float, what: str, step: float = 0.02) -> T:
    """Poll ``cond`` until it returns something truthy; fail the test after ``timeout``."""
    deadline = time.monotonic() + timeout
    while not (value := cond()):
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(step)
    return value


def worker_processes() -> list[tuple[int, int, str]]:
    """``(pid, parent pid, command line)`` of every live ``zexport.work.worker`` (reads /proc)."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as fh:
                ppid = int(fh.read().rsplit(b")", 1)[1].split()[1])
            with open(f"/proc/{entry}/cmdline", "rb") as fh:
                cmdline = fh.read().replace(b"\0", b" ").decode(errors="replace")
        except (OSError, ValueError, IndexError):
            continue  # gone meanwhile, or not ours to read
        if "zexport.work.worker" in cmdline:
            found.append((int(entry), ppid, cmdline))
    return found


def start_run(env: dict[str, str], db: Path, out: Path, *args: str, delay: float = 0.0,
              extra_env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    """Start ``zexport run`` in its own session (so tests can signal its process group)."""
    run_env = dict(env)
    if delay:
        run_env["ZEXPORT_TEST_DELAY_PER_CONVERSATION"] = str(delay)
    run_env.update(extra_env or {})
    return subprocess.Popen(
        [sys.executable, "-m", "zexport", "run", "--db", str(db), "--out", str(out),
         "--workers", "2", "--tz", "UTC", "--progress", "none", *args],
        env=run_env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True, start_new_session=True)


def registrations(env: dict[str, str]) -> list[dict[str, Any]]:
    """The registration files in the runtime folder (docs/protocol.md)."""
    base = Path(env["ZEXPORT_RUNTIME_DIR"])
    found = []
    for path in sorted(base.glob("*.json")) if base.is_dir() else []:
        try:
            found.append(json.loads(path.read_text()))
        except (OSError, ValueError):
            continue  # being written
    return found


def registration_for(env: dict[str, str], out: Path, timeout: float = 20) -> dict[str, Any]:
    """Wait until the run exporting to ``out`` has registered; return its registration."""
    def find() -> dict[str, Any] | None:
        for reg in registrations(env):
            if reg["out"] == str(out):
                return reg
        return None
    return wait_for(find, timeout, f"a run registered for {out}")


def ask(endpoint: str, msg: dict[str, Any], timeout: float = 3.0) -> dict[str, Any]:
    """One request over a raw DEALER socket; the decoded reply."""
    ctx = zmq.Context.instance()
    sock = ctx.socket(zmq.DEALER)
    sock.setsockopt(zmq.LINGER, 0)
    try:
        sock.connect(endpoint)
        sock.send(msgpack.packb(msg))
        assert sock.poll(int(timeout * 1000)), f"no reply to {msg} within {timeout}s"
        reply: dict[str, Any] = msgpack.unpackb(sock.recv())
        return reply
    finally:
        sock.close(linger=0)


def status(reg: dict[str, Any]) -> dict[str, Any]:
    """The ``status`` payload of a registered run."""
    reply = ask(reg["control"], {"v": 1, "t": "status", "id": 1})
    assert reply["t"] == "status_reply", reply
    st: dict[str, Any] = reply["status"]
    return st


def wait_progress(reg: dict[str, Any], done: int, timeout: float = 20,
                  busy: bool = False) -> dict[str, Any]:
    """Wait until at least ``done`` conversations are done (and, with ``busy``, a worker is)."""
    def ready() -> dict[str, Any] | None:
        st = status(reg)
        ok = st["conversations"]["done"] >= done and st["phase"] == "exporting"
        if busy:
            ok = ok and any(w["state"] == "busy" for w in st["workers"])
        return st if ok else None
    return wait_for(ready, timeout, f"{done} conversations done", step=0.05)


alive = pid_alive  # a process that exists and is not a zombie (zexport.core.runtime)


def kill_group(*procs: subprocess.Popen[Any] | None) -> None:
    """Kill the process group of each run still going, and reap it (a test's ``finally``:
    a failed assertion must not leave a controller and its workers running)."""
    for proc in procs:
        if proc is not None and proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.communicate()


def finish(proc: subprocess.Popen[str], timeout: float = 30) -> tuple[int, str, str]:
    """Wait for a run to exit; its (status, stdout, stderr). Kills it on timeout."""
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, err = proc.communicate()
        raise AssertionError(f"run did not exit within {timeout}s: {err}") from None
    return proc.returncode, out, err


def full_tree(root: Path) -> dict[str, str]:
    """Every file (sha256) and folder under root, except zexport's state folder."""
    tree: dict[str, str] = {}
    for path in sorted(root.rglob("*")):
        rel = path.relative_to(root).as_posix()
        if rel.startswith(".zexport"):
            continue
        if path.is_symlink():
            tree[rel] = "symlink"
        elif path.is_dir():
            tree[rel] = "dir"
        else:
            tree[rel] = hashlib.sha256(path.read_bytes()).hexdigest()
    return tree


def temporaries(root: Path) -> list[str]:
    """Leftover temporary files (``.zexport-tmp-*``) or move folders under root."""
    return [p.as_posix() for p in root.rglob(".zexport-*")]


def report(out: Path) -> dict[str, Any]:
    """The run report."""
    doc: dict[str, Any] = json.loads((out / ".zexport" / "report.json").read_text())
    return doc


class FakeController:
    """The controller's three worker-facing sockets, bound in ``run_dir``, and one real
    worker process (index 0) connected to them: tests play the controller's part."""

    def __init__(self, run_dir: Path, worker_args: tuple[str, ...] = (),
                 env: dict[str, str] | None = None) -> None:
        self.ctx = zmq.Context()
        self.pair = self.ctx.socket(zmq.PAIR)
        self.tasks = self.ctx.socket(zmq.PUSH)
        self.results = self.ctx.socket(zmq.PULL)
        for sock, name in ((self.pair, "w0"), (self.tasks, "t0"), (self.results, "results")):
            sock.setsockopt(zmq.LINGER, 0)
            sock.bind(f"ipc://{run_dir / name}")
        self.worker = subprocess.Popen(
            [sys.executable, "-m", "zexport.work.worker", str(run_dir), "0", *worker_args],
            stderr=subprocess.PIPE, text=True, env=env)

    def recv(self, sock: zmq.Socket[bytes], kind: str, batch: int | None = None,
             timeout: float = 10) -> dict[str, Any]:
        """The next frame of type ``kind`` (about ``batch``, if given) on ``sock``."""
        while True:
            assert sock.poll(int(timeout * 1000)), f"no {kind} from the worker"
            msg: dict[str, Any] = msgpack.unpackb(sock.recv())
            if msg["t"] == kind and (batch is None or msg.get("batch") in (None, batch)):
                return msg

    def send(self, sock: zmq.Socket[bytes], msg_type: str, **fields: Any) -> None:
        """Send a version-1 frame."""
        sock.send(msgpack.packb({"v": 1, "t": msg_type, **fields}))

    def __enter__(self) -> FakeController:
        return self

    def __exit__(self, *exc: object) -> None:
        if self.worker.poll() is None:
            self.worker.kill()
        self.worker.wait()
        self.ctx.destroy(linger=0)
