"""Shared fixtures: real archives, and zexport run as a real subprocess.

Every test that starts processes goes through :func:`run_cli`, which has a
timeout, so a hang fails fast instead of stalling CI. Each test gets its own
runtime folder, cache folder and HOME, so no test sees the developer's
OwnYourChat archive or another test's running export.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from cdp import Browser, Page, find_chromium

from zexport.sample import make_sample

SAMPLE_SIZE = 60


@pytest.fixture(scope="session")
def sample_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A dirty sample archive shared by read-only tests (do not modify it)."""
    path = tmp_path_factory.mktemp("archive") / "sample.db"
    make_sample(path, conversations=SAMPLE_SIZE, seed=7)
    return path


@pytest.fixture
def isolated_env(tmp_path: Path) -> dict[str, str]:
    """Environment for a zexport subprocess: private HOME, runtime and cache folders."""
    env = dict(os.environ)
    home = tmp_path / "home"
    home.mkdir()
    runtime = tmp_path / "rt"
    runtime.mkdir(mode=0o700)
    env.update({
        "HOME": str(home),
        "XDG_CONFIG_HOME": str(home / ".config"),
        "XDG_CACHE_HOME": str(home / ".cache"),
        "ZEXPORT_RUNTIME_DIR": str(runtime),
        "PYTHONUNBUFFERED": "1",
    })
    env.pop("XDG_RUNTIME_DIR", None)
    env.pop("ZEXPORT_CACHE_DIR", None)
    return env


def run_cli(args: list[str], env: dict[str, str], cwd: Path | None = None,
            timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """Run ``python -m zexport ARGS`` to completion (or fail the test on timeout)."""
    return subprocess.run(
        [sys.executable, "-m", "zexport", *args], env=env, cwd=cwd, timeout=timeout,
        capture_output=True, text=True, stdin=subprocess.DEVNULL,
    )


def tree_digest(root: Path) -> dict[str, str]:
    """``{relative path: sha256}`` of every file under root except zexport's state folder."""
    out: dict[str, str] = {}
    for path in sorted(root.rglob("*")):
        rel = path.relative_to(root).as_posix()
        if rel.startswith(".zexport") or not path.is_file():
            continue
        out[rel] = hashlib.sha256(path.read_bytes()).hexdigest()
    return out


@pytest.fixture
def cli(isolated_env: dict[str, str], tmp_path: Path) -> Iterator[object]:
    """A callable ``cli(*args, timeout=...)`` running zexport in the isolated environment."""

    def call(*args: str, timeout: float = 120,
             cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
        return run_cli(list(args), isolated_env, cwd=cwd or tmp_path, timeout=timeout)

    yield call


# Headless Chromium for the HTML plugin's tests: one browser per test module, a fresh
# page per test.
@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Browser]:
    binary = find_chromium()
    assert binary, "chromium is not installed (.ci/run installs Debian's chromium)"
    b = Browser(binary, tmp_path_factory.mktemp("chromium-profile"))
    try:
        yield b
    finally:
        b.close()


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    p = browser.new_page()
    try:
        yield p
    finally:
        p.close()
