"""The fast ``zexport status``/``cancel`` (zexport.entry) against the click commands.

Both are run as real processes in the same situations and must print the
same bytes on stdout and stderr and exit with the same status. To make the
output deterministic, "a running export" here is a fake controller: a libzmq
ROUTER registered in the runtime folder exactly as a controller registers
(docs/protocol.md), answering fixed replies. tests/test_control.py drives the
same commands against real exports.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import click
import msgpack
import pytest
import zmq

from zexport import entry
from zexport.cli import cli

pytestmark = pytest.mark.timeout(120)

FAST = "import sys; sys.argv[0] = 'zexport'; from zexport.entry import main; main()"
CLICK = "import sys; sys.argv[0] = 'zexport'; from zexport.cli import cli; cli()"
HEAVY = ("click", "rich", "httpx", "apsw", "pluggy", "zmq", "tempfile", "typing", "secrets",
         "orjson", "asyncio")


def zexport(code: str, args: list[str], env: dict[str, str],
            timeout: float = 30) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", code, *args], env=env, capture_output=True,
                          text=True, timeout=timeout, stdin=subprocess.DEVNULL)


def both(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """Run ``zexport ARGS`` the fast way and the click way; assert they agree; the result."""
    fast = zexport(FAST, args, env)
    slow = zexport(CLICK, args, env)
    assert (fast.returncode, fast.stdout, fast.stderr) == \
        (slow.returncode, slow.stdout, slow.stderr), args
    assert "Traceback" not in fast.stderr, fast.stderr
    return fast


STATUS = {
    "run_id": "0badcafe", "pid": 4242, "out": "/exports/chats", "db": "/a.db",
    "format": "markdown", "phase": "exporting", "cancelled": None, "started_at": 1.7e9,
    "elapsed": 12.345,
    "conversations": {"total": 10000, "done": 4210, "to_render": 9900, "rendered": 4110,
                      "exported": 4100, "skipped": 100, "failed": 10, "remaining": 5790},
    "attachments": {"exported": 812, "failed": 3}, "rate": 2050.4, "eta": 2.82,
    "workers": [{"id": 0, "pid": 4243, "state": "busy", "batch": 70, "conversations": 2080,
                 "last_heard": 0.01},
                {"id": 1, "pid": 4244, "state": "idle", "batch": None, "conversations": 2030,
                 "last_heard": 0.2}],
    "worker_deaths": 1,
}


class FakeRun:
    """A registered "run" whose control endpoint answers like a controller, with fixed data.

    ``answer``: ``ok`` (status_reply / cancel_reply), ``error`` (an ``error`` reply),
    or ``silent`` (never answers). A cancel with ``stops`` removes the registration
    after replying, as a run that has stopped does.
    """

    def __init__(self, runtime: Path, run_id: str, status: dict[str, Any],
                 answer: str = "ok", stops: bool = True) -> None:
        self.runtime, self.run_id, self.status = runtime, run_id, status
        self.answer, self.stops = answer, stops
        self.reg = runtime / f"{run_id}.json"
        (runtime / run_id).mkdir(mode=0o700, exist_ok=True)
        self.endpoint = f"ipc://{runtime / run_id / 'control'}"
        self.stop = threading.Event()
        self.bound = threading.Event()
        self.thread = threading.Thread(target=self.serve, daemon=True)
        self.thread.start()
        assert self.bound.wait(5)

    def register(self) -> None:
        body = {"version": 1, "run_id": self.run_id, "protocol": 1, "pid": os.getpid(),
                "control": self.endpoint, "out": self.status["out"], "db": "/a.db",
                "format": "markdown", "workers": 2, "started_at": time.time(),
                "zexport": "0.1.0"}
        tmp = self.runtime / f".{self.run_id}.tmp"
        tmp.write_text(json.dumps(body))
        os.chmod(tmp, 0o600)
        tmp.replace(self.reg)

    def serve(self) -> None:
        ctx = zmq.Context()
        sock = ctx.socket(zmq.ROUTER)
        sock.bind(self.endpoint)
        self.bound.set()
        while not self.stop.is_set():
            if not sock.poll(20):
                continue
            *envelope, payload = sock.recv_multipart()
            msg = msgpack.unpackb(payload)
            if self.answer == "silent":
                continue
            if self.answer == "error":
                reply = {"t": "error", "code": "bad_request", "message": "no, thank you"}
            elif msg["t"] == "status":
                reply = {"t": "status_reply", "status": self.status}
            else:
                reply = {"t": "cancel_reply", "state": "cancelling", "already": False,
                         "run_id": self.run_id}
            sock.send_multipart([*envelope, msgpack.packb({"v": 1, "id": msg.get("id"),
                                                           **reply})])
            if msg["t"] == "cancel_request" and self.stops:
                self.reg.unlink(missing_ok=True)
        sock.close(linger=1000)
        ctx.term()

    def close(self) -> None:
        self.stop.set()
        self.thread.join(5)
        self.reg.unlink(missing_ok=True)


@contextmanager
def fake_runs(env: dict[str, str], *specs: dict[str, Any]) -> Iterator[list[FakeRun]]:
    runtime = Path(env["ZEXPORT_RUNTIME_DIR"])
    runs = [FakeRun(runtime, **spec) for spec in specs]
    try:
        yield runs
    finally:
        for run in runs:
            run.close()


def both_with(runs: list[FakeRun], args: list[str],
              env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """``both`` with every fake run registered afresh before each of the two processes."""
    def one(code: str) -> subprocess.CompletedProcess[str]:
        for run in runs:
            run.register()
        return zexport(code, args, env)

    fast, slow = one(FAST), one(CLICK)
    assert (fast.returncode, fast.stdout, fast.stderr) == \
        (slow.returncode, slow.stdout, slow.stderr), args
    assert "Traceback" not in fast.stderr, fast.stderr
    return fast


# -- no run, help, usage errors ---------------------------------------------------------

@pytest.mark.parametrize("args", [
    ["status"], ["status", "--json"], ["status", "--run", "abc"], ["cancel"],
    ["cancel", "--run=abc", "--no-wait"], ["status", "--run="],
])
def test_no_run_same_message_and_exit_1(isolated_env: dict[str, str], args: list[str]) -> None:
    res = both(args, isolated_env)
    assert res.returncode == 1
    assert "no zexport export is running" in res.stderr or "no running export" in res.stderr


def test_no_runtime_folder_at_all_creates_nothing(isolated_env: dict[str, str],
                                                  tmp_path: Path) -> None:
    env = dict(isolated_env, ZEXPORT_RUNTIME_DIR=str(tmp_path / "absent"))
    assert both(["status"], env).returncode == 1
    assert not (tmp_path / "absent").exists()


@pytest.mark.parametrize("args", [
    ["status", "--help"], ["status", "-h"], ["cancel", "--help"], ["cancel", "--no-wait", "-h"],
    ["status", "--bogus"], ["status", "--json=yes"], ["status", "--run"],
    ["status", "--timeout", "soon"], ["status", "--timeout=soon"], ["status", "extra"],
    ["status", "--", "--json"], ["cancel", "--json"], ["status", "--no-wait"],
    ["status", "--run", "--json"], ["--help"], ["--version"],
])
def test_help_and_usage_errors_are_clicks_own(isolated_env: dict[str, str],
                                              args: list[str]) -> None:
    both(args, isolated_env)


def test_a_runtime_folder_not_ours_is_refused_the_same_way(isolated_env: dict[str, str],
                                                           tmp_path: Path) -> None:
    not_a_folder = tmp_path / "file"
    not_a_folder.write_text("")
    res = both(["status"], dict(isolated_env, ZEXPORT_RUNTIME_DIR=str(not_a_folder)))
    assert res.returncode == 2 and "not a folder owned by you" in res.stderr


# -- one run, several runs --------------------------------------------------------------

@pytest.mark.parametrize("args", [
    ["status"], ["status", "--json"], ["status", "--run", "0badcafe", "--json"],
    ["status", "--json", "--json", "--timeout", "5"], ["cancel"], ["cancel", "--no-wait"],
    ["cancel", "--run=0badcafe", "--timeout=10"],
])
def test_one_run_same_output(isolated_env: dict[str, str], args: list[str]) -> None:
    with fake_runs(isolated_env, {"run_id": "0badcafe", "status": STATUS}) as runs:
        res = both_with(runs, args, isolated_env)
    assert res.returncode == 0, res.stderr
    if args[0] == "status" and "--json" in args:
        assert json.loads(res.stdout) == STATUS
    elif args[0] == "status":
        assert res.stdout.startswith("run 0badcafe (pid 4242): exporting -> /exports/chats\n")
    elif "--no-wait" in args:
        assert res.stdout == "run 0badcafe: cancelling\n"
    else:
        assert res.stdout == "run 0badcafe: cancelling\nrun 0badcafe: stopped\n"


def test_unknown_run_id_lists_the_running_ones(isolated_env: dict[str, str]) -> None:
    with fake_runs(isolated_env, {"run_id": "0badcafe", "status": STATUS}) as runs:
        res = both_with(runs, ["status", "--run", "feedface"], isolated_env)
    assert res.returncode == 1
    assert "no running export with id 'feedface' (running: 0badcafe)" in res.stderr


def test_several_runs_without_run_exit_2_and_list_them(isolated_env: dict[str, str]) -> None:
    other = dict(STATUS, run_id="12345678", out="/exports/other")
    with fake_runs(isolated_env, {"run_id": "0badcafe", "status": STATUS},
                   {"run_id": "12345678", "status": other}) as runs:
        for args in (["status"], ["status", "--json"], ["cancel"]):
            res = both_with(runs, args, isolated_env)
            assert res.returncode == 2
            assert "several exports are running" in res.stderr
            assert "0badcafe" in res.stderr and "12345678" in res.stderr
        res = both_with(runs, ["status", "--run", "12345678", "--json"], isolated_env)
        assert res.returncode == 0 and json.loads(res.stdout)["out"] == "/exports/other"


@pytest.mark.parametrize("answer, args, code, says", [
    ("error", ["status"], 3, "zexport: controller answered: no, thank you"),
    ("error", ["cancel"], 3, "zexport: controller answered: no, thank you"),
    ("silent", ["status", "--timeout", "0.3"], 1, "did not answer within 0.3s"),
])
def test_controller_errors_and_silence(isolated_env: dict[str, str], answer: str,
                                       args: list[str], code: int, says: str) -> None:
    with fake_runs(isolated_env, {"run_id": "0badcafe", "status": STATUS,
                                  "answer": answer}) as runs:
        res = both_with(runs, args, isolated_env)
    assert res.returncode == code and says in res.stderr


def test_cancel_of_a_run_that_does_not_stop_times_out(isolated_env: dict[str, str]) -> None:
    with fake_runs(isolated_env, {"run_id": "0badcafe", "status": STATUS,
                                  "stops": False}) as runs:
        res = both_with(runs, ["cancel", "--timeout", "0.3"], isolated_env)
    assert res.returncode == 1
    assert "zexport: run 0badcafe still running after 0.3s" in res.stderr


@pytest.mark.parametrize("out, extra_env", [
    ("/exports/\x1b[31mred\x1b[0m", {}),                       # click strips ANSI off a tty
    ("/exports/café 東京", {"PYTHONIOENCODING": "ascii"}),     # click rewraps ASCII as UTF-8
    ("/exports/café 東京", {}),
])
def test_output_that_click_echo_would_alter(isolated_env: dict[str, str], out: str,
                                            extra_env: dict[str, str]) -> None:
    env = dict(isolated_env, **extra_env)
    with fake_runs(env, {"run_id": "0badcafe", "status": dict(STATUS, out=out)}) as runs:
        for args in (["status"], ["status", "--json"], ["cancel", "--no-wait"]):
            res = both_with(runs, args, env)
            assert res.returncode == 0, res.stderr


def test_ctrl_c_while_cancel_waits_is_aborted_like_click(isolated_env: dict[str, str]) -> None:
    results = []
    with fake_runs(isolated_env, {"run_id": "0badcafe", "status": STATUS,
                                  "stops": False}) as runs:
        for code in (FAST, CLICK):
            runs[0].register()
            proc = subprocess.Popen([sys.executable, "-c", code, "cancel"], env=isolated_env,
                                    stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            try:
                assert proc.stdout is not None
                first = proc.stdout.readline()  # "run 0badcafe: cancelling": now waiting
                proc.send_signal(signal.SIGINT)
                out, err = proc.communicate(timeout=20)
            finally:
                if proc.poll() is None:
                    proc.kill()
                    proc.wait()
            results.append((proc.returncode, first + out, err))
    assert results[0] == results[1]
    assert results[0] == (1, "run 0badcafe: cancelling\n", "\nAborted!\n")


# -- what the fast path is made of --------------------------------------------------------

def test_the_fast_options_are_the_click_commands_options() -> None:
    for name, spec in entry.OPTIONS.items():
        command = cli.commands[name]
        seen: dict[str, tuple[str, type | None]] = {}
        for param in command.params:
            if param.name == "help":
                continue
            assert isinstance(param, click.Option) and param.name is not None
            assert len(param.opts) == 1 and not param.secondary_opts and not param.multiple
            assert param.envvar is None and param.nargs == 1
            kind = None if param.is_flag else {click.STRING: str, click.FLOAT: float}[param.type]
            seen[param.opts[0]] = (param.name, kind)
        assert seen == spec, name
        assert command.make_context(name, []).params == entry.DEFAULTS[name], name


@pytest.mark.parametrize("args, params", [
    ([], {}),
    (["--json"], {"as_json": True}),
    (["--run", "ab", "--json", "--run=cd"], {"run_id": "cd", "as_json": True}),
    (["--run="], {"run_id": ""}),
    (["--timeout", "1e1"], {"timeout": 10.0}),
    (["--timeout=-1"], {"timeout": -1.0}),
    (["--run", "-x"], None), (["--json=1"], None), (["--timeout", "x"], None),
    (["--help"], None), (["-h"], None), (["--"], None), ([""], None), (["--run"], None),
    (["--js"], None), (["--no-wait"], None),
])
def test_parse_accepts_only_plain_arguments(args: list[str],
                                            params: dict[str, Any] | None) -> None:
    """What it accepts, it reads as click does; the rest it leaves to click."""
    parsed = entry.parse("status", args)
    assert parsed == (None if params is None else dict(entry.DEFAULTS["status"], **params))
    if parsed is not None:
        assert cli.commands["status"].make_context("status", list(args)).params == parsed


@pytest.mark.parametrize("situation", ["no run", "one run"])
def test_the_fast_path_imports_no_heavy_module(isolated_env: dict[str, str],
                                               situation: str) -> None:
    """Only what the interpreter had already loaded at start-up may be among HEAVY."""
    code = ("import sys\nbefore = set(sys.modules)\n"
            "sys.argv = ['zexport', 'status', '--json']\n"
            "from zexport.entry import main\n"
            "try:\n    main()\nexcept SystemExit as exc:\n    code = exc.code\n"
            "new = {m.split('.')[0] for m in set(sys.modules) - before}\n"
            f"print('RESULT', code, ','.join(sorted(new & {set(HEAVY)!r})))\n")
    with fake_runs(isolated_env, {"run_id": "0badcafe", "status": STATUS}) as runs:
        if situation == "one run":
            runs[0].register()
        res = zexport(code, [], isolated_env)
    assert res.stdout.splitlines()[-1] == f"RESULT {1 if situation == 'no run' else 0} ", \
        res.stdout + res.stderr


def test_console_script_is_the_entry_module() -> None:
    from importlib.metadata import entry_points

    (script,) = entry_points(group="console_scripts", name="zexport")
    assert script.value == "zexport.entry:main"
