"""docs/protocol.md is enough to drive a run: status and cancel from raw frames.

The live test below uses nothing of zexport's client code: it finds the run
the way the document says (registration files in the runtime folder), and
speaks to the control endpoint with plain pyzmq and msgpack, as a GUI in
another language would.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import msgpack
import pytest
import zmq
from controlkit import kill_group, wait_for

from zexport import protocol
from zexport.run.commands import commands
from zexport.sample import make_sample

DOC = Path(__file__).resolve().parent.parent / "docs" / "protocol.md"


def test_every_message_type_is_documented() -> None:
    text = DOC.read_text()
    assert {"status", "cancel"} <= {c.name for c in commands()}  # their frames are in SCHEMA
    for msg_type in protocol.SCHEMA:
        assert re.search(rf"`{msg_type}`", text), f"{msg_type} is not in docs/protocol.md"
    for socket_name in ("control", "t<N>", "results", "w<N>"):
        assert socket_name in text


@pytest.mark.timeout(60)
def test_a_client_built_from_the_document_gets_status_and_cancels(tmp_path: Path) -> None:
    db = tmp_path / "archive.db"
    make_sample(db, conversations=150, seed=3)
    runtime = tmp_path / "runtime"  # "$ZEXPORT_RUNTIME_DIR, if set"
    env = dict(os.environ, ZEXPORT_RUNTIME_DIR=str(runtime), HOME=str(tmp_path),
               ZEXPORT_TEST_DELAY_PER_CONVERSATION="0.03")
    out = tmp_path / "out"
    proc = subprocess.Popen(
        [sys.executable, "-m", "zexport", "run", "--db", str(db), "--out", str(out),
         "--workers", "2", "--progress", "none"],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
        start_new_session=True)
    ctx = zmq.Context()
    try:
        # Find the run: "<run_id>.json" in the runtime folder; skip names starting with ".".
        def registration() -> dict[str, Any] | None:
            for path in runtime.glob("*.json") if runtime.is_dir() else []:
                if not path.name.startswith("."):
                    found: dict[str, Any] = json.loads(path.read_text())
                    return found
            return None

        reg = wait_for(registration, 20, "the run to register")
        reg_file = runtime / f"{reg['run_id']}.json"
        assert reg["version"] == 1 and reg["protocol"] == 1 and reg["out"] == str(out)
        assert os.stat(runtime).st_mode & 0o777 == 0o700

        # status over REQ: one request frame, one reply frame.
        req = ctx.socket(zmq.REQ)
        req.setsockopt(zmq.LINGER, 0)
        req.connect(reg["control"])
        def exporting() -> dict[str, Any] | None:
            req.send(msgpack.packb({"v": 1, "t": "status", "id": "gui-1"}))
            assert req.poll(2000), "no status reply"
            reply = msgpack.unpackb(req.recv(), raw=False)
            assert reply["v"] == 1 and reply["t"] == "status_reply" and reply["id"] == "gui-1"
            status: dict[str, Any] = reply["status"]
            done = status["phase"] == "exporting" and status["conversations"]["done"] >= 10
            return status if done else None

        st = wait_for(exporting, 20, "10 conversations exported", step=0.05)
        assert st["run_id"] == reg["run_id"] and st["pid"] == reg["pid"] == proc.pid
        assert st["conversations"]["total"] == 150
        assert {"exported", "skipped", "failed", "remaining"} <= set(st["conversations"])
        assert {"exported", "failed"} <= set(st["attachments"])
        assert isinstance(st["rate"], float) and "eta" in st
        for w in st["workers"]:
            assert w["state"] in ("starting", "idle", "busy", "stopping", "exited", "dead")
            assert isinstance(w["pid"], int)

        # A request of another version is answered with an error, not silence.
        req.send(msgpack.packb({"v": 2, "t": "status", "id": 9}))
        assert req.poll(2000)
        err = msgpack.unpackb(req.recv(), raw=False)
        assert err["t"] == "error" and err["code"] == "bad_request" and err["message"]
        req.close()

        # cancel over DEALER, twice: the second is answered ("already"), not an error.
        dealer = ctx.socket(zmq.DEALER)
        dealer.setsockopt(zmq.LINGER, 0)
        dealer.connect(reg["control"])
        dealer.send(msgpack.packb({"v": 1, "t": "cancel_request", "id": 1}))
        dealer.send(msgpack.packb({"v": 1, "t": "cancel_request", "id": 2, "reason": "gui"}))
        replies = {}
        for _ in range(2):
            assert dealer.poll(2000), "no cancel reply"
            msg = msgpack.unpackb(dealer.recv(), raw=False)
            replies[msg["id"]] = msg
        dealer.close()
        assert replies[1]["t"] == "cancel_reply" and replies[1]["state"] == "cancelling"
        assert replies[1]["already"] is False and replies[2]["already"] is True

        # "A run has stopped when its registration file is gone."
        wait_for(lambda: not reg_file.exists(), 5, "the run to stop", step=0.01)
        assert proc.wait(timeout=5) == 130
        report = json.loads((out / ".zexport" / "report.json").read_text())
        assert report["status"] == "cancelled"
    finally:
        kill_group(proc)
        ctx.destroy(linger=0)
