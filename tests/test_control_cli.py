"""``zexport status`` and ``zexport cancel`` as real processes, against fixed answers.

To make the output exact, "a running export" here is a fake controller: a
libzmq ROUTER registered in the runtime folder exactly as a controller
registers (docs/protocol.md), answering fixed replies. tests/test_control.py
drives the same commands against real exports.
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

import msgpack
import pytest
import zmq

pytestmark = pytest.mark.timeout(120)

def zexport(args: list[str], env: dict[str, str],
            timeout: float = 30) -> subprocess.CompletedProcess[str]:
    """``zexport ARGS`` as a process (``python -m zexport``); never a traceback."""
    res = subprocess.run([sys.executable, "-m", "zexport", *args], env=env, capture_output=True,
                         text=True, timeout=timeout, stdin=subprocess.DEVNULL)
    assert "Traceback" not in res.stderr, res.stderr
    return res


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


def registered(runs: list[FakeRun], args: list[str],
               env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """``zexport ARGS`` with every fake run registered afresh (a cancel unregisters)."""
    for run in runs:
        run.register()
    return zexport(args, env)


# -- no run, help, usage errors ---------------------------------------------------------

@pytest.mark.parametrize("args", [
    ["status"], ["status", "--json"], ["status", "--run", "abc"], ["cancel"],
    ["cancel", "--run=abc", "--no-wait"], ["status", "--run="],
])
def test_no_run_says_so_and_exits_1(isolated_env: dict[str, str], args: list[str]) -> None:
    res = zexport(args, isolated_env)
    assert res.returncode == 1
    expected = ("zexport: error: no running export with id 'abc' (running: none)\n"
                if "abc" in str(args) else "zexport: error: no zexport export is running\n")
    assert (res.stdout, res.stderr) == ("", expected)


def test_no_runtime_folder_at_all_creates_nothing(isolated_env: dict[str, str],
                                                  tmp_path: Path) -> None:
    env = dict(isolated_env, ZEXPORT_RUNTIME_DIR=str(tmp_path / "absent"))
    assert zexport(["status"], env).returncode == 1
    assert not (tmp_path / "absent").exists()


def test_a_runtime_folder_not_ours_is_refused_the_same_way(isolated_env: dict[str, str],
                                                           tmp_path: Path) -> None:
    not_a_folder = tmp_path / "file"
    not_a_folder.write_text("")
    res = zexport(["status"], dict(isolated_env, ZEXPORT_RUNTIME_DIR=str(not_a_folder)))
    assert res.returncode == 2 and "not a folder owned by you" in res.stderr


# -- one run, several runs --------------------------------------------------------------

@pytest.mark.parametrize("args", [
    ["status"], ["status", "--json"], ["status", "--run", "0badcafe", "--json"],
    ["status", "--json", "--json", "--timeout", "5"], ["cancel"], ["cancel", "--no-wait"],
    ["cancel", "--run=0badcafe", "--timeout=10"],
])
def test_one_run(isolated_env: dict[str, str], args: list[str]) -> None:
    with fake_runs(isolated_env, {"run_id": "0badcafe", "status": STATUS}) as runs:
        res = registered(runs, args, isolated_env)
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
        res = registered(runs, ["status", "--run", "feedface"], isolated_env)
    assert res.returncode == 1
    assert "no running export with id 'feedface' (running: 0badcafe)" in res.stderr


def test_several_runs_without_run_exit_2_and_list_them(isolated_env: dict[str, str]) -> None:
    other = dict(STATUS, run_id="12345678", out="/exports/other")
    with fake_runs(isolated_env, {"run_id": "0badcafe", "status": STATUS},
                   {"run_id": "12345678", "status": other}) as runs:
        for args in (["status"], ["status", "--json"], ["cancel"]):
            res = registered(runs, args, isolated_env)
            assert res.returncode == 2
            assert "several exports are running" in res.stderr
            assert "0badcafe" in res.stderr and "12345678" in res.stderr
        res = registered(runs, ["status", "--run", "12345678", "--json"], isolated_env)
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
        res = registered(runs, args, isolated_env)
    assert res.returncode == code and says in res.stderr


def test_cancel_of_a_run_that_does_not_stop_times_out(isolated_env: dict[str, str]) -> None:
    with fake_runs(isolated_env, {"run_id": "0badcafe", "status": STATUS,
                                  "stops": False}) as runs:
        res = registered(runs, ["cancel", "--timeout", "0.3"], isolated_env)
    assert res.returncode == 1
    assert "zexport: run 0badcafe still running after 0.3s" in res.stderr


def test_ctrl_c_while_cancel_waits_is_aborted(isolated_env: dict[str, str]) -> None:
    with fake_runs(isolated_env, {"run_id": "0badcafe", "status": STATUS,
                                  "stops": False}) as runs:
        runs[0].register()
        proc = subprocess.Popen([sys.executable, "-m", "zexport", "cancel"], env=isolated_env,
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
    assert (proc.returncode, first + out, err) == (1, "run 0badcafe: cancelling\n",
                                                   "\nAborted!\n")


def test_console_script_is_the_click_cli() -> None:
    from importlib.metadata import entry_points

    (script,) = entry_points(group="console_scripts", name="zexport")
    assert script.value == "zexport.cli:main"
