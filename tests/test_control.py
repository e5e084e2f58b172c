"""Status, cancel, resume and faults, on live runs: real processes, signals and sockets.

Runs are slowed with the test-only ``ZEXPORT_TEST_DELAY_PER_CONVERSATION``
so there is time to act on them; waits are on conditions with deadlines.
"Same tree" is byte for byte, folders included (controlkit.full_tree).
"""

from __future__ import annotations

import os
import pickle
import shutil
import signal
import sqlite3
import time
from pathlib import Path
from typing import Any

import msgpack
import pytest
import zmq
from conftest import run_cli
from controlkit import (
    FakeController,
    alive,
    ask,
    finish,
    full_tree,
    kill_group,
    registration_for,
    report,
    start_run,
    status,
    temporaries,
    wait_for,
    wait_progress,
)

from zexport.sample import make_sample

pytestmark = pytest.mark.timeout(60)

CONTROL_SAMPLE = 200
DELAY = 0.02  # seconds per conversation: ~2 s for the sample on 2 workers
MID_DELAY = 0.1  # ~10 s: for tests that talk to a running export, then let it finish
LONG_DELAY = 0.3  # ~30 s: for tests that always cancel the run


@pytest.fixture(scope="session")
def control_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 200-conversation dirty archive for live-run tests (do not modify it)."""
    path = tmp_path_factory.mktemp("control") / "archive.db"
    make_sample(path, conversations=CONTROL_SAMPLE, seed=11)
    return path


def _env(tmp: Path) -> dict[str, str]:
    env = dict(os.environ)
    runtime = tmp / "rt"
    runtime.mkdir(mode=0o700)
    env.update({"HOME": str(tmp), "ZEXPORT_RUNTIME_DIR": str(runtime), "PYTHONUNBUFFERED": "1"})
    env.pop("XDG_RUNTIME_DIR", None)
    return env


@pytest.fixture(scope="session")
def clean_tree(control_db: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """The tree of an uninterrupted, fault-free run of control_db."""
    tmp = tmp_path_factory.mktemp("clean")
    out = tmp / "out"
    proc = start_run(_env(tmp), control_db, out)
    code, _, err = finish(proc)
    assert code == 0, err
    return full_tree(out)


def test_status_and_cancel_with_no_run_say_so_and_create_nothing(tmp_path: Path,
                                                                 isolated_env: dict[str, str]
                                                                 ) -> None:
    env = dict(isolated_env, ZEXPORT_RUNTIME_DIR=str(tmp_path / "no-such-runtime"))
    none = "zexport: error: no zexport export is running\n"
    for cmd, says in ((["status"], none), (["cancel"], none), (["status", "--json"], none),
                      (["cancel", "--run", "abc"],
                       "zexport: error: no running export with id 'abc' (running: none)\n")):
        started = time.monotonic()
        res = run_cli(cmd, env, timeout=20)
        assert (res.returncode, res.stdout, res.stderr) == (1, "", says), cmd
        assert time.monotonic() - started < 5
    assert not (tmp_path / "no-such-runtime").exists()


def test_status_then_cancel_then_resume_gives_the_clean_tree(
        tmp_path: Path, isolated_env: dict[str, str], control_db: Path,
        clean_tree: dict[str, str]) -> None:
    out = tmp_path / "out"
    # Long enough that the run is still going when `cancel` arrives on a loaded machine.
    proc = start_run(isolated_env, control_db, out, delay=LONG_DELAY)
    try:
        reg = registration_for(isolated_env, out)
        assert oct(os.stat(Path(isolated_env["ZEXPORT_RUNTIME_DIR"]) /
                           f"{reg['run_id']}.json").st_mode & 0o777) == "0o600"
        st = wait_progress(reg, 30)
        assert st["conversations"]["total"] == CONTROL_SAMPLE
        assert st["phase"] == "exporting" and st["run_id"] == reg["run_id"]
        assert len(st["workers"]) == 2
        assert {w["state"] for w in st["workers"]} <= {"busy", "idle", "starting"}
        assert st["rate"] > 0 and st["eta"] is not None

        human = run_cli(["status"], isolated_env, timeout=20)
        assert human.returncode == 0, human.stderr
        assert f"run {reg['run_id']}" in human.stdout and "workers:" in human.stdout
        pids = [w["pid"] for w in status(reg)["workers"]]

        res = run_cli(["cancel"], isolated_env, timeout=30)
        assert res.returncode == 0, res.stderr
        assert "cancelling" in res.stdout and "stopped" in res.stdout
        # `cancel` returned: the run has stopped, workers included.
        assert not any(alive(p) for p in pids)
        code, _, err = finish(proc, timeout=10)
    finally:
        kill_group(proc)
    assert code == 130, err
    rep = report(out)
    assert rep["status"] == "cancelled"
    assert 0 < rep["counts"]["exported"] < CONTROL_SAMPLE
    assert temporaries(out) == []
    assert not list(Path(isolated_env["ZEXPORT_RUNTIME_DIR"]).iterdir())

    again = start_run(isolated_env, control_db, out)
    code, _, err = finish(again)
    assert code == 0, err
    counts = report(out)["counts"]
    assert counts["skipped"] > 0
    assert counts["skipped"] + counts["exported"] + counts["failed"] == CONTROL_SAMPLE
    assert full_tree(out) == clean_tree


def test_incremental_rerun_skips_unchanged_moves_renamed_and_force_redoes(
        tmp_path: Path, isolated_env: dict[str, str], sample_db: Path) -> None:
    db = tmp_path / "archive.db"
    shutil.copy(sample_db, db)
    # Two conversations with equal names: the earlier keeps the plain name. Renaming it
    # later moves it AND makes its twin take the plain name: a chain of two moves.
    con = sqlite3.connect(db)
    first_id, twin_id = [r[0] for r in con.execute(
        "SELECT id FROM conversations ORDER BY id LIMIT 2")]
    for cid, created in ((first_id, 1_700_000_000), (twin_id, 1_700_000_100)):
        con.execute("UPDATE conversations SET title='Twin title', created_at=? WHERE id=?",
                    (created, cid))
    con.commit()
    out = tmp_path / "out"
    code, _, err = finish(start_run(isolated_env, db, out))
    assert code == 0, err
    first = report(out)["counts"]
    assert first["exported"] == first["selected"]
    twins = sorted(p.name for p in out.glob("2023-11-14 Twin title*"))
    assert len(twins) == 2 and twins[0] == "2023-11-14 Twin title", twins
    con.execute("UPDATE conversations SET title='Renamed by the test', "
                "updated_at=COALESCE(updated_at, 0)+1 WHERE id=?", (first_id,))
    con.commit()
    con.close()

    code, _, err = finish(start_run(isolated_env, db, out))
    assert code == 0, err
    second = report(out)
    assert second["counts"]["skipped"] > first["selected"] // 2
    assert second["counts"]["exported"] < first["selected"] // 2
    assert any("moved" in note for note in second["notes"]), second["notes"]
    fresh = tmp_path / "fresh"
    code, _, err = finish(start_run(isolated_env, db, fresh))
    assert code == 0, err
    assert full_tree(out) == full_tree(fresh)  # no duplicate left at the old name
    assert any(p.name.endswith("Renamed by the test") for p in out.iterdir())
    assert [p.name for p in out.glob("2023-11-14 Twin title*")] == ["2023-11-14 Twin title"]

    code, _, err = finish(start_run(isolated_env, db, out, "--force"))
    assert code == 0, err
    forced = report(out)["counts"]
    assert forced["skipped"] == 0 and forced["exported"] == forced["selected"]
    assert full_tree(out) == full_tree(fresh)


def test_second_run_on_held_output_is_refused_and_several_runs_need_run_id(
        tmp_path: Path, isolated_env: dict[str, str], control_db: Path) -> None:
    out1, out2 = tmp_path / "out1", tmp_path / "out2"
    # Slow enough that neither run can finish before the test cancels it, however loaded
    # the machine: the cancels end them.
    first = start_run(isolated_env, control_db, out1, delay=LONG_DELAY)
    second = None
    try:
        reg1 = registration_for(isolated_env, out1)
        wait_progress(reg1, 5)
        refused = run_cli(["run", "--db", str(control_db), "--out", str(out1),
                           "--progress", "none"], isolated_env, timeout=30)
        assert refused.returncode == 2
        assert "another zexport run is exporting to" in refused.stderr
        assert reg1["run_id"] in refused.stderr
        second = start_run(isolated_env, control_db, out2, delay=LONG_DELAY)
        reg2 = registration_for(isolated_env, out2)
        listing = run_cli(["status"], isolated_env, timeout=20)
        assert listing.returncode == 2
        assert reg1["run_id"] in listing.stderr and reg2["run_id"] in listing.stderr
        assert "--run" in listing.stderr
        one = run_cli(["status", "--run", reg2["run_id"], "--json"], isolated_env, timeout=20)
        assert one.returncode == 0 and reg2["run_id"] in one.stdout
        for reg in (reg1, reg2):
            res = run_cli(["cancel", "--run", reg["run_id"]], isolated_env, timeout=30)
            assert res.returncode == 0, res.stderr
        assert finish(first)[0] == 130 and finish(second)[0] == 130
    finally:
        kill_group(first, second)


@pytest.mark.parametrize("presses", [1, 2])
def test_ctrl_c_inside_long_conversations_stops_fast_and_clean(
        tmp_path: Path, isolated_env: dict[str, str], control_db: Path, presses: int) -> None:
    out = tmp_path / "out"
    # Every conversation takes 60 s: workers are always inside one when Ctrl-C comes.
    proc = start_run(isolated_env, control_db, out, delay=60)
    try:
        reg = registration_for(isolated_env, out)
        st = wait_for(lambda: (s := status(reg)) and any(
            w["state"] == "busy" for w in s["workers"]) and len(s["workers"]) == 2 and s,
            20, "a worker inside a conversation")
        pids = [w["pid"] for w in st["workers"]]
        started = time.monotonic()
        for _ in range(presses):  # a terminal's Ctrl-C reaches the whole process group
            os.killpg(proc.pid, signal.SIGINT)
        code, _, err = finish(proc, timeout=10)
        took = time.monotonic() - started
    finally:
        kill_group(proc)
    assert code == 130, err
    assert took < 3, took
    assert not any(alive(p) for p in pids)
    assert temporaries(out) == []
    assert report(out)["status"] == "cancelled"
    assert not list(out.glob("*/conversation.md"))  # nothing was half done, or done
    logs = "".join(p.read_text() for p in (out / ".zexport").glob("worker-*.log"))
    assert "KeyboardInterrupt" not in logs and "Traceback" not in logs, logs


def test_worker_killed_mid_run_is_replaced_and_its_work_redone(
        tmp_path: Path, isolated_env: dict[str, str], control_db: Path,
        clean_tree: dict[str, str]) -> None:
    out = tmp_path / "out"
    proc = start_run(isolated_env, control_db, out, delay=DELAY)
    try:
        reg = registration_for(isolated_env, out)
        st = wait_progress(reg, 20, busy=True)
        victim = next(w for w in st["workers"] if w["state"] == "busy")
        os.kill(victim["pid"], signal.SIGKILL)
        wait_for(lambda: any(w["state"] == "dead" for w in status(reg)["workers"]), 10,
                 "the killed worker to be declared dead")
        code, _, err = finish(proc)
    finally:
        kill_group(proc)
    assert code == 0, err
    rep = report(out)
    assert rep["status"] in ("ok", "partial")
    assert [d["worker"] for d in rep["worker_deaths"]] == [victim["id"]]
    assert rep["counts"]["exported"] == CONTROL_SAMPLE
    assert (out / ".zexport" / "worker-2.log").exists()  # the replacement
    assert full_tree(out) == clean_tree


def test_stopped_worker_past_the_deadline_counts_as_dead(
        tmp_path: Path, isolated_env: dict[str, str], control_db: Path,
        clean_tree: dict[str, str]) -> None:
    out = tmp_path / "out"
    proc = start_run(isolated_env, control_db, out, delay=DELAY, extra_env={
        "ZEXPORT_HB_TIMEOUT": "1.0", "ZEXPORT_HB_INTERVAL": "0.1"})
    victim: dict[str, Any] = {}
    try:
        reg = registration_for(isolated_env, out)
        st = wait_progress(reg, 20, busy=True)
        victim = next(w for w in st["workers"] if w["state"] == "busy")
        os.kill(victim["pid"], signal.SIGSTOP)
        code, _, err = finish(proc)
    finally:
        if victim and alive(victim["pid"]):
            os.kill(victim["pid"], signal.SIGCONT)
        kill_group(proc)
    assert code == 0, err
    rep = report(out)
    deaths = rep["worker_deaths"]
    assert [d["worker"] for d in deaths] == [victim["id"]]
    assert "silent" in deaths[0]["reason"]
    assert rep["counts"]["exported"] == CONTROL_SAMPLE
    assert full_tree(out) == clean_tree


def test_workers_exit_by_themselves_when_the_controller_is_killed(
        tmp_path: Path, isolated_env: dict[str, str], control_db: Path) -> None:
    out = tmp_path / "out"
    proc = start_run(isolated_env, control_db, out, delay=DELAY)
    try:
        reg = registration_for(isolated_env, out)
        st = wait_progress(reg, 10, busy=True)
        pids = [w["pid"] for w in st["workers"]]
        proc.kill()
        proc.wait(timeout=10)
        wait_for(lambda: not any(alive(p) for p in pids), 5, "workers to exit by themselves")
    finally:
        kill_group(proc)
    # The dead controller's registration is swept by the next client; nothing is running.
    res = run_cli(["status"], isolated_env, timeout=20)
    assert res.returncode == 1 and "no zexport export is running" in res.stderr
    assert list(Path(isolated_env["ZEXPORT_RUNTIME_DIR"]).iterdir()) == []


BAD_FRAMES = [
    b"", b"\xff\xfe garbage", msgpack.packb({"v": 1, "t": "status", "id": 7})[:-2],
    msgpack.packb({"v": 99, "t": "status", "id": 7}), msgpack.packb([1, 2, 3]),
    msgpack.packb({"v": 1, "t": "batch", "batch": 0, "items": []}),
    pickle.dumps({"v": 1, "t": "status"}),
]


def test_bad_frames_on_live_sockets_are_rejected_and_the_run_goes_on(
        tmp_path: Path, isolated_env: dict[str, str], control_db: Path,
        clean_tree: dict[str, str]) -> None:
    out = tmp_path / "out"
    proc = start_run(isolated_env, control_db, out, delay=MID_DELAY)
    ctx = zmq.Context.instance()
    try:
        reg = registration_for(isolated_env, out)
        wait_progress(reg, 5)
        for frame in BAD_FRAMES:
            sock = ctx.socket(zmq.DEALER)
            sock.setsockopt(zmq.LINGER, 0)
            sock.connect(reg["control"])
            sock.send(frame)
            assert sock.poll(3000), f"no answer to {frame!r}"
            reply = msgpack.unpackb(sock.recv())
            sock.close()
            assert reply["t"] == "error" and reply["v"] == 1, (frame, reply)
        # Oversized: libzmq drops the peer before the bytes reach zexport.
        big = ctx.socket(zmq.DEALER)
        big.setsockopt(zmq.LINGER, 0)
        big.connect(reg["control"])
        big.send(b"\x00" * (1 << 20))
        assert not big.poll(300)
        big.close()
        # The results socket (workers' PUSH -> controller PULL): garbage and forged frames.
        run_dir = Path(reg["control"].removeprefix("ipc://")).parent
        push = ctx.socket(zmq.PUSH)
        push.setsockopt(zmq.LINGER, 1000)
        push.connect(f"ipc://{run_dir / 'results'}")
        for frame in [*BAD_FRAMES, msgpack.packb({"v": 1, "t": "done", "w": 99, "batch": 0,
                                                   "results": [{"id": "x", "ok": True}]}),
                      msgpack.packb({"v": 1, "t": "hb"})]:
            push.send(frame)
        push.close()
        st = status(reg)  # still answering, still exporting
        assert st["phase"] in ("exporting", "finishing")
        code, _, err = finish(proc)
    finally:
        kill_group(proc)
    assert code == 0, err
    assert "dropped bad result frame" not in err  # the run's log, not the terminal
    assert "dropped bad result frame" in (out / ".zexport" / "run.log").read_text()
    rep = report(out)
    assert rep["counts"]["exported"] == CONTROL_SAMPLE
    assert full_tree(out) == clean_tree


def test_worker_survives_bad_frames_on_its_control_and_task_sockets(
        tmp_path: Path, sample_db: Path) -> None:
    """A fake controller feeds a real worker garbage on PAIR and PULL, then real work."""
    run_dir = tmp_path / "run"
    run_dir.mkdir(mode=0o700)
    out = tmp_path / "out"
    out.mkdir()
    con = sqlite3.connect(f"file:{sample_db}?mode=ro", uri=True)
    cid = con.execute("SELECT id FROM conversations ORDER BY id LIMIT 1").fetchone()[0]
    con.close()
    with FakeController(run_dir) as fake:
        assert fake.recv(fake.pair, "hello")["pid"] == fake.worker.pid
        for frame in BAD_FRAMES:
            fake.pair.send(frame)
        fake.send(fake.pair, "config", config={
            "db": str(sample_db), "out": str(out), "format": "markdown", "format_options": {},
            "tz": "UTC", "branches": "active", "exported_at": "2024-01-01T00:00:00+00:00",
            "attachments": "off", "downloads": False,
            "hb_interval": 0.1, "hb_timeout": 30})
        for frame in BAD_FRAMES:
            fake.tasks.send(frame)
        fake.send(fake.tasks, "batch", batch=5, items=[[cid, "the folder"]])
        # (BAD_FRAMES holds one valid, empty batch 0)
        assert fake.recv(fake.results, "took", batch=5)["batch"] == 5
        done = fake.recv(fake.results, "done", batch=5)
        assert done["batch"] == 5 and done["results"][0]["ok"], done
        assert (out / "the folder" / "conversation.md").is_file()
        fake.send(fake.pair, "cancel", reason="test")
        assert fake.recv(fake.pair, "bye")["w"] == 0
        assert fake.worker.wait(timeout=10) == 0
        err = fake.worker.stderr.read() if fake.worker.stderr else ""
    assert "dropped bad control frame" in err


def test_worker_asks_in_fetch_many_and_takes_fetched_many_answers(
        tmp_path: Path, sample_db: Path) -> None:
    """A fake controller gets one fetch_many for a batch's missing attachments and
    answers in one fetched_many (with malformed items the worker must skip)."""
    from zexport.sources.archive import build_attachment_index

    run_dir = tmp_path / "run"
    run_dir.mkdir(mode=0o700)
    out = tmp_path / "out"
    out.mkdir()
    index = run_dir / "attachments.db"
    build_attachment_index(str(sample_db), str(index))
    con = sqlite3.connect(f"file:{index}?mode=ro", uri=True)
    cids = [r[0] for r in con.execute(
        "SELECT conversation_id FROM att WHERE local_path = '' GROUP BY conversation_id"
        " ORDER BY conversation_id LIMIT 3")]
    con.close()
    assert cids, "the sample has missing attachments"
    with FakeController(run_dir) as fake:
        fake.recv(fake.pair, "hello")
        fake.send(fake.pair, "config", config={
            "db": str(sample_db), "out": str(out), "format": "markdown", "format_options": {},
            "tz": "UTC", "branches": "active", "exported_at": "2024-01-01T00:00:00+00:00",
            "attachments": "copy", "index_parts": [str(index)], "downloads": True,
            "hb_interval": 0.1, "hb_timeout": 30})
        fake.send(fake.tasks, "batch", batch=0, items=[[cid, f"f-{cid}"] for cid in cids])
        asked = fake.recv(fake.pair, "fetch_many")
        reqs = [item["req"] for item in asked["items"]]
        assert len(reqs) >= len(cids)
        assert {item["conversation_id"] for item in asked["items"]} == set(cids)
        fake.send(fake.pair, "fetched_many", items=[
            "not a map", {"req": "not a number"},
            *({"req": req, "path": None, "error": "the test says no"} for req in reqs)])
        done = fake.recv(fake.results, "done")
        assert [r["ok"] for r in done["results"]] == [True] * len(cids), done
        assert sum(len(r["attachments_failed"]) for r in done["results"]) == len(reqs)
        for cid in cids:
            text = (out / f"f-{cid}" / "conversation.md").read_text()
            assert "Attachment unavailable" in text and "the test says no" in text
        fake.send(fake.pair, "cancel", reason="test")
        assert fake.worker.wait(timeout=10) == 0


def test_status_and_cancel_are_answered_while_the_run_is_still_planning(
        tmp_path: Path, isolated_env: dict[str, str], control_db: Path) -> None:
    """Planning a huge archive takes seconds (made slow here by a test hook): the
    control endpoint still answers at once, and a cancel then stops the run before
    any conversation is exported, without waiting for the plan to be complete (the
    60 s plan here would outlast the test's deadline)."""
    out = tmp_path / "out"
    proc = start_run(isolated_env, control_db, out,
                     extra_env={"ZEXPORT_TEST_PLAN_DELAY": "60"})
    try:
        reg = registration_for(isolated_env, out)
        started = time.monotonic()
        st = status(reg)  # ask() fails if there is no reply within 3 s
        assert time.monotonic() - started < 2.0
        assert st["phase"] == "counting", st
        reply = ask(reg["control"], {"v": 1, "t": "cancel_request", "id": 2})
        assert reply["t"] == "cancel_reply", reply
        assert time.monotonic() - started < 3.0  # both answered inside the plan
        code, _, err = finish(proc, timeout=30)
    finally:
        kill_group(proc)
    assert code == 130, err
    rep = report(out)
    assert rep["status"] == "cancelled" and rep["counts"]["exported"] == 0
    assert "cancelled while planning: nothing was exported" in rep["notes"]


def test_workers_started_before_a_long_plan_hear_the_controller_and_live_through_it(
        tmp_path: Path, isolated_env: dict[str, str], control_db: Path) -> None:
    """Workers boot while the controller plans (a fresh output renders everything):
    a plan three times the heartbeat deadline must not make them think the controller
    is gone, exit, and be counted as deaths (they hear its heartbeats from the start)."""
    out = tmp_path / "out"
    proc = start_run(isolated_env, control_db, out, extra_env={
        "ZEXPORT_TEST_PLAN_DELAY": "3", "ZEXPORT_HB_TIMEOUT": "1.0",
        "ZEXPORT_HB_INTERVAL": "0.1"})
    try:
        code, _, err = finish(proc, timeout=45)
    finally:
        kill_group(proc)
    assert code == 0, err
    rep = report(out)
    assert rep["worker_deaths"] == []
    assert rep["counts"]["exported"] == CONTROL_SAMPLE

