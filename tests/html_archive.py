"""Small archives for the HTML tests, and the pieces of exported pages they read.

Conversations are written in the archive schema zexport reads (only named
columns, so the tests hold whether or not an index exists), then exported by
the real CLI with the installed ``zexport-html`` plugin.
"""

from __future__ import annotations

import json
import os
import re
import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from conftest import run_cli
from corpora import APP_FIXTURES

from zexport.schema import DDL

REPO = Path(__file__).resolve().parent.parent


@dataclass
class Conv:
    """One conversation to write: messages are (role, parts) in order, flat."""

    id: str
    title: str
    messages: Sequence[tuple[str, list[dict[str, Any]]]]
    provider: str = "chatgpt"
    created_at: int | None = 1_700_000_000
    updated_at: int | None = 1_700_000_000
    extra: dict[str, Any] = field(default_factory=dict)


def text(value: str) -> list[dict[str, Any]]:
    """Parts of a message holding one text."""
    return [{"type": "text", "text": value}]


def make_archive(path: Path, convs: Sequence[Conv]) -> Path:
    """Write ``convs`` to a new archive at ``path``."""
    con = sqlite3.connect(path)
    con.executescript(DDL)
    for c in convs:
        con.execute("INSERT INTO conversations (id, title, provider, created_at, updated_at,"
                    " message_count) VALUES (?, ?, ?, ?, ?, ?)",
                    (c.id, c.title, c.provider, c.created_at, c.updated_at, len(c.messages)))
        for i, (role, parts) in enumerate(c.messages):
            con.execute("INSERT INTO messages (id, conversation_id, role, parts, order_index,"
                        " created_at) VALUES (?, ?, ?, ?, ?, ?)",
                        (f"{c.id}-m{i}", c.id, role, json.dumps(parts), i, c.created_at))
    con.commit()
    con.close()
    return path


def env_for(tmp: Path) -> dict[str, str]:
    """A private HOME and runtime folder, and only installed plugins."""
    env = dict(os.environ)
    for sub in ("home", "rt"):
        (tmp / sub).mkdir(exist_ok=True, mode=0o700)
    env.update({"HOME": str(tmp / "home"), "ZEXPORT_RUNTIME_DIR": str(tmp / "rt"),
                "XDG_CACHE_HOME": str(tmp / "home" / ".cache")})
    env.pop("ZEXPORT_PLUGINS", None)
    env.pop("XDG_RUNTIME_DIR", None)
    return env


def export_html(tmp: Path, db: Path, out: Path, *extra: str, status: int = 0) -> None:
    """``zexport run --format html`` into ``out``, which must end with ``status``
    (1 when attachments are expected to be unavailable)."""
    res = run_cli(["run", "--db", str(db), "--out", str(out), "--format", "html", "--tz", "UTC",
                   "--progress", "none", "--no-downloads", *extra], env_for(tmp), cwd=tmp)
    assert res.returncode == status, res.stdout + res.stderr
    assert "not loaded" not in res.stderr, res.stderr


_BODY = re.compile(r'<article class="msg [a-z]+" id="m-([^"]+)">\n<div class="role">.*?</div>\n'
                   r'<div class="body">\n(.*?)</div>\n</article>\n', re.S)


def bodies(page: Path) -> dict[str, str]:
    """Message id -> the HTML inside its ``article.msg > div.body``."""
    return dict(_BODY.findall(page.read_text("utf-8")))


def page_of(out: Path, title: str) -> Path:
    """The page of the (only) conversation titled ``title``."""
    found = [p for p in out.glob("*/conversation.html")
             if p.parent.name == title or p.parent.name.endswith(" " + title)]
    assert len(found) == 1, (title, sorted(p.parent.name for p in out.glob("*/")))
    return found[0]


def app_fixture(name: str) -> Path:
    """One of the app's own archives (tests/fixtures/app)."""
    path = APP_FIXTURES / name
    assert path.is_file(), f"the app's fixture {name} is missing from {APP_FIXTURES}"
    return path
