"""The side index parts are built by the workers (zexport.run.indexing), with real
processes: a worker dying in the middle of a part costs the run nothing (the part
is built again elsewhere, or by the controller when workers keep dying on it),
and a cancel while the parts are being built stops every process within a second."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from controlkit import (
    ask,
    finish,
    full_tree,
    kill_group,
    registration_for,
    report,
    start_run,
    status,
    wait_for,
    worker_processes,
)

from zexport.sample import make_sample

pytestmark = pytest.mark.timeout(120)
SAMPLE = 120


@pytest.fixture(scope="module")
def index_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("index") / "archive.db"
    make_sample(path, conversations=SAMPLE, seed=23)
    return path


@pytest.fixture(scope="module")
def clean(index_db: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """The tree of a run in which no worker dies."""
    tmp = tmp_path_factory.mktemp("clean")
    env = _env(tmp)
    out = tmp / "out"
    code, _, err = finish(start_run(env, index_db, out))
    assert code == 0, err
    assert report(out)["worker_deaths"] == []
    return full_tree(out)


def _env(tmp: Path) -> dict[str, str]:
    import os

    env = dict(os.environ)
    runtime = tmp / "rt"
    runtime.mkdir(mode=0o700)
    env.update({"HOME": str(tmp), "ZEXPORT_RUNTIME_DIR": str(runtime), "PYTHONUNBUFFERED": "1"})
    env.pop("XDG_RUNTIME_DIR", None)
    return env


def test_a_worker_dying_in_the_middle_of_a_part_costs_nothing(
        tmp_path: Path, isolated_env: dict[str, str], index_db: Path,
        clean: dict[str, str]) -> None:
    out = tmp_path / "out"
    proc = start_run(isolated_env, index_db, out, extra_env={
        "ZEXPORT_TEST_DIE_INDEXING": str(tmp_path / "cue")})
    try:
        code, _, err = finish(proc, timeout=60)
    finally:
        kill_group(proc)
    assert code == 0, err
    rep = report(out)
    assert len(rep["worker_deaths"]) == 1, rep["worker_deaths"]
    assert rep["counts"]["exported"] == SAMPLE and rep["run_errors"] == []
    assert not [n for n in rep["notes"] if "message index" in n]
    assert full_tree(out) == clean


def test_a_part_that_kills_every_worker_is_built_by_the_controller(
        tmp_path: Path, isolated_env: dict[str, str], index_db: Path,
        clean: dict[str, str]) -> None:
    out = tmp_path / "out"
    proc = start_run(isolated_env, index_db, out, extra_env={
        "ZEXPORT_TEST_DIE_INDEXING": "always"})
    try:
        code, _, err = finish(proc, timeout=60)
    finally:
        kill_group(proc)
    assert code == 0, err
    rep = report(out)
    # Two parts, each lost with two workers; then their replacements export everything.
    assert len(rep["worker_deaths"]) == 4, rep["worker_deaths"]
    assert rep["counts"]["exported"] == SAMPLE and rep["run_errors"] == []
    assert full_tree(out) == clean


def test_a_cancel_while_workers_build_the_parts_stops_everything_within_a_second(
        tmp_path: Path, isolated_env: dict[str, str], index_db: Path) -> None:
    out = tmp_path / "out"
    runtime = Path(isolated_env["ZEXPORT_RUNTIME_DIR"])
    proc = start_run(isolated_env, index_db, out, extra_env={
        "ZEXPORT_TEST_INDEX_DELAY": "60"})  # every part would take minutes
    try:
        reg = registration_for(isolated_env, out)
        wait_for(lambda: len(list(runtime.glob("*/index-*.partial"))) == 2, 30,
                 "both workers building a part")
        # status says what they are doing (not "idle", as if there were no work yet).
        assert [w["state"] for w in status(reg)["workers"]] == ["indexing", "indexing"]
        started = time.monotonic()
        reply = ask(reg["control"], {"v": 1, "t": "cancel_request", "id": 1})
        assert reply["t"] == "cancel_reply", reply
        code, _, err = finish(proc, timeout=30)
        stopped = time.monotonic() - started
        mine = [p for p in worker_processes() if p[1] == proc.pid]
    finally:
        kill_group(proc)
    assert code == 130, err
    assert stopped < 1.0, f"{stopped:.2f} s"
    assert mine == []
    rep = report(out)
    assert rep["status"] == "cancelled" and rep["counts"]["exported"] == 0
    assert rep["worker_deaths"] == []
    assert list(runtime.glob("*/index-*")) == []  # the run folder went with the run
