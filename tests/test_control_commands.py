"""Control commands as objects: a command is one class, reached over a real control socket.

The server here is zexport's own :class:`~zexport.run.control.ControlServer`
(its asyncio ZMTP listener on a real ipc socket, in a thread of the test), in
front of a small :class:`~zexport.run.commands.RunControl` instead of a whole
export: the commands only ever see that protocol. The client is zexport's
CLI (click's in-process runner, through the real registration file and
pyzmq), or a raw DEALER as docs/protocol.md describes.
"""

from __future__ import annotations

import asyncio
import os
import threading
from collections.abc import Iterator, Mapping
from typing import Any

import pytest
from click.testing import CliRunner, Result
from controlkit import ask

from zexport import protocol
from zexport.cli.app import cli
from zexport.core.runtime import new_run_dir, register_run, remove_run_dir, unregister_run
from zexport.errors import ExitStatus, ProtocolError
from zexport.protocol import STR
from zexport.run.commands import Command, Console, Option, Registry, RunControl, commands
from zexport.run.control import ControlServer

pytestmark = pytest.mark.timeout(30)

SNAPSHOT = {"run_id": "stub", "phase": "exporting", "cancelled": None}


class StubRun:
    """A RunControl that is not a controller: what commands may rely on, and nothing more."""

    def __init__(self, run_id: str) -> None:
        self.run_id = run_id
        self.cancels: list[str] = []

    def status(self) -> dict[str, Any]:
        return dict(SNAPSHOT, run_id=self.run_id, cancelled=self.cancels[0] if self.cancels
                    else None)

    def cancel(self, reason: str) -> tuple[str, bool]:
        self.cancels.append(reason)
        return "cancelling", len(self.cancels) > 1


class Ping(Command):
    """A command that exists only in this test: the one class is all it needs."""

    name = "ping"
    help = "Ask a running export for its phase, with a word it shouts back."
    request_type = "ping"
    reply_type = "pong"
    request_fields = ({"word": STR}, {})
    reply_fields = ({"word": STR, "phase": STR}, {})
    options = (Option("--word", "word", "What to say.", default="hello"),)

    def request(self, options: Mapping[str, Any]) -> dict[str, Any]:
        return {"word": options["word"]}

    def execute(self, run: RunControl, request: dict[str, Any]) -> dict[str, Any]:
        return {"word": request["word"].upper(), "phase": run.status()["phase"]}

    def show(self, run: Mapping[str, Any], reply: dict[str, Any], options: Mapping[str, Any],
             console: Console) -> int:
        console.out(f"run {run['run_id']}: {reply['word']} ({reply['phase']})")
        return ExitStatus.OK


class Served:
    """A ControlServer for ``run`` on its own loop in a thread, registered as a run is."""

    def __init__(self, registry: Registry | None = None) -> None:
        self.run_id, self.run_dir = new_run_dir()
        self.run = StubRun(self.run_id)
        self.server = ControlServer(self.run_dir, self.run, registry)
        self.loop = asyncio.new_event_loop()
        self.task: asyncio.Task[None] | None = None
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()
        register_run(self.run_id, {"protocol": protocol.VERSION, "pid": os.getpid(),
                                   "control": self.server.endpoint, "out": "/out", "db": "/a.db",
                                   "format": "markdown", "workers": 1, "started_at": 1.0})

    def _serve(self) -> None:
        self.task = self.loop.create_task(self._until_cancelled())
        try:
            self.loop.run_until_complete(self.task)
        except asyncio.CancelledError:
            pass
        finally:
            self.loop.close()

    async def _until_cancelled(self) -> None:
        try:
            await self.server.serve()
        finally:  # as the controller's teardown does: close, then let connections end
            connections = list(self.server.server.connections)
            self.server.close()
            await asyncio.gather(*connections, return_exceptions=True)

    def close(self) -> None:
        unregister_run(self.run_id)
        while self.task is None and self.thread.is_alive():
            self.thread.join(0.01)  # the loop has not started its task yet
        if self.task is not None:
            self.loop.call_soon_threadsafe(self.task.cancel)
        self.thread.join(5)
        assert not self.thread.is_alive()
        remove_run_dir(self.run_dir)


@pytest.fixture
def served(isolated_env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> Iterator[Served]:
    monkeypatch.setenv("ZEXPORT_RUNTIME_DIR", isolated_env["ZEXPORT_RUNTIME_DIR"])
    run = Served()
    try:
        yield run
    finally:
        run.close()


def zexport(*args: str) -> Result:
    """The CLI, in this process (so it sees commands registered here)."""
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


def request(served: Served, msg: dict[str, Any]) -> dict[str, Any]:
    return ask(served.server.endpoint, {"v": 1, "id": 7, **msg})


def test_a_command_registered_in_process_is_served_and_on_the_command_line(
        served: Served) -> None:
    assert zexport("ping").exit_code == 2  # click: no such command
    unknown = request(served, {"t": "ping", "word": "hi"})
    assert (unknown["t"], unknown["code"]) == ("error", "bad_request")
    assert unknown["message"] == "unknown message type 'ping'"

    with commands().added(Ping):
        res = zexport("ping", "--word", "hi")
        assert (res.exit_code, res.stdout, res.stderr) == (
            0, f"run {served.run_id}: HI (exporting)\n", "")
        assert zexport("ping").stdout == f"run {served.run_id}: HELLO (exporting)\n"
        assert "ping" in zexport("--help").stdout
        # The request's fields are checked through its shapes before execute() sees them.
        assert request(served, {"t": "ping", "word": "raw"}) == {
            "v": 1, "t": "pong", "id": 7, "word": "RAW", "phase": "exporting"}
        missing = request(served, {"t": "ping"})
        assert (missing["t"], missing["message"]) == ("error", "ping: field 'word' missing")
        wrong = request(served, {"t": "ping", "word": 5})
        assert wrong["message"] == "ping: field 'word': str expected, got an int"

    assert zexport("ping").exit_code == 2  # gone again, on both sides
    assert "ping" not in protocol.SCHEMA and "pong" not in protocol.SCHEMA
    assert request(served, {"t": "ping", "word": "hi"})["t"] == "error"


def test_status_and_cancel_need_only_run_control(served: Served) -> None:
    res = zexport("status", "--json")
    assert res.exit_code == 0, res.stderr
    assert '"phase": "exporting"' in res.stdout and served.run_id in res.stdout
    res = zexport("cancel", "--no-wait")
    assert (res.exit_code, res.stdout) == (0, f"run {served.run_id}: cancelling\n")
    res = zexport("cancel", "--no-wait")
    assert res.stdout == f"run {served.run_id}: cancelling (already under way)\n"
    assert served.run.cancels == ["cancelled", "cancelled"]
    assert request(served, {"t": "status"})["status"]["cancelled"] == "cancelled"


class Broken(Command):
    """Raises in execute()."""

    name = "broken"
    help = "Fails."
    request_type = "broken"
    reply_type = "broken_reply"

    def execute(self, run: RunControl, request: dict[str, Any]) -> dict[str, Any]:
        raise RuntimeError("the command has a bug")


class Sloppy(Command):
    """Replies with a field of the wrong type."""

    name = "sloppy"
    help = "Answers badly."
    request_type = "sloppy"
    reply_type = "sloppy_reply"
    reply_fields = ({"count": protocol.INT}, {})

    def execute(self, run: RunControl, request: dict[str, Any]) -> dict[str, Any]:
        return {"count": "three"}


def test_a_failing_or_sloppy_command_is_an_internal_error_and_the_server_goes_on(
        served: Served) -> None:
    with commands().added(Broken), commands().added(Sloppy):
        broken = request(served, {"t": "broken"})
        assert (broken["t"], broken["code"], broken["message"]) == (
            "error", "internal", "RuntimeError: the command has a bug")
        sloppy = request(served, {"t": "sloppy"})
        assert (sloppy["code"], sloppy["message"]) == (
            "internal", "TypeError: sloppy made a bad sloppy_reply: field 'count': "
            "int expected, got a str")
        res = zexport("broken")
        assert (res.exit_code, res.stderr) == (ExitStatus.REFUSED, "zexport: controller "
                                               "answered: RuntimeError: the command has a bug\n")
    assert request(served, {"t": "status"})["t"] == "status_reply"
    other = request(served, {"t": "batch", "batch": 0, "items": []})
    assert other["message"] == "'batch' is not a control request (send one of: " \
        "cancel_request, status)"


def test_the_registry_finds_the_built_in_commands_and_refuses_clashes() -> None:
    found = commands()
    assert [c.name for c in found] == ["cancel", "status"]
    assert found.for_request("cancel_request") is found.get("cancel")

    class Twin(Ping):
        name = "status"

    class Thief(Ping):
        name = "thief"
        reply_type = "batch"  # another socket's frame, with another shape

    with pytest.raises(ValueError, match="'status' .* already registered"):
        found.add(Twin)
    with pytest.raises(ProtocolError, match="'batch' is already registered"):
        found.add(Thief)
    assert found.get("thief") is None and "ping" not in protocol.SCHEMA  # nothing half-added
