"""Notes people keep, through real ``zexport run`` processes (issue 13.5-13.7).

An archive in the app's own schema (a copy of app-empty-sqlite.db) holds
conversations whose assistant message is a CommonMark spec example (the ones
that leak when pasted as they are: a heading, an open fence, an open HTML
block, ...) or a ChatGPT answer with math; the notes are parsed with
markdown-it-py: every note has exactly its three turns and the turn after
the message is untouched.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import apsw
import pytest
from corpora import APP_FIXTURES, commonmark_examples
from markdown_it import MarkdownIt

from zexport.formats.markdown_units import UnitOptions, closed_unit

pytestmark = pytest.mark.timeout(180)
MD = MarkdownIt("commonmark")


def leaky_examples() -> list[dict[str, Any]]:
    """The spec examples that, pasted as they are, forge or swallow a turn."""
    out = []
    for example in commonmark_examples():
        text = example["markdown"].rstrip("\n")
        pasted = f"## User\n\nq\n\n## Assistant\n\n{text}\n\n## User\n\nafter\n"
        as_is = [t for t in MD.parse(pasted)
                 if t.type == "heading_open" and t.level == 0 and t.tag == "h2"]
        if len(as_is) != 3 or closed_unit(text, UnitOptions("keep")) != text:
            out.append(example)
    return out


def archive(tmp: Path, conversations: list[tuple[str, str, str, str]]) -> Path:
    """``(id, provider, title, assistant text)`` each, in the app's schema."""
    db = tmp / "archive.db"
    shutil.copy(APP_FIXTURES / "app-empty-sqlite.db", db)
    con = apsw.Connection(str(db))
    with con:
        for n, (cid, provider, title, text) in enumerate(conversations):
            con.execute("INSERT INTO conversations (id, title, provider, created_at, updated_at,"
                        " current_node_id) VALUES (?, ?, ?, ?, ?, ?)",
                        (cid, title, provider, 1_700_000_000 + n, 1_700_000_100 + n, f"{cid}-3"))
            for i, (role, body) in enumerate([("user", "before"), ("assistant", text),
                                              ("user", "after")], start=1):
                con.execute("INSERT INTO messages (id, conversation_id, role, parts, created_at,"
                            " order_index, parent_id) VALUES (?, ?, ?, ?, ?, ?, ?)",
                            (f"{cid}-{i}", cid, role, json.dumps([{"type": "text",
                                                                    "text": body}]),
                             1_700_000_000 + n, i, f"{cid}-{i - 1}" if i > 1 else None))
    con.close()
    return db


def notes(out: Path) -> dict[str, str]:
    """conversation id -> note text."""
    found = {}
    for path in out.glob("*/conversation.md"):
        text = path.read_text(encoding="utf-8")
        cid = json.loads(text.split("\n", 2)[1].removeprefix("id: "))
        found[cid] = text
    return found


def body_of(note: str) -> str:
    """The note without its front matter."""
    return note.split("\n---\n", 1)[1]


def turns(note: str) -> list[str]:
    tokens = MD.parse(body_of(note))
    return [tokens[i + 1].content for i, t in enumerate(tokens)
            if t.type == "heading_open" and t.level == 0 and t.tag == "h2"]


def last_turn(note: str) -> list[tuple[str, str]]:
    tokens = MD.parse(body_of(note))
    heads = [i for i, t in enumerate(tokens)
             if t.type == "heading_open" and t.level == 0 and t.tag == "h2"]
    rest = tokens[heads[-1] + 3:]
    return [(t.type, t.content) for t in rest if t.type != "em_open"]


def test_spec_examples_that_leak_are_closed_units_in_a_real_export(cli: Any,
                                                                   tmp_path: Path) -> None:
    examples = leaky_examples()
    assert len(examples) >= 20, "the corpus has the leaky shapes this test is about"
    db = archive(tmp_path, [(f"ex{e['example']}", "chatgpt", f"Example {e['example']}",
                             e["markdown"]) for e in examples])
    out = tmp_path / "out"
    res = cli("run", "--db", str(db), "--out", str(out), "--tz", "UTC", "--progress", "none",
              "--no-attachments", "-o", "math=keep", timeout=150)
    assert res.returncode == 0, res.stderr
    got = notes(out)
    assert sorted(got) == sorted(f"ex{e['example']}" for e in examples)
    for cid, note in got.items():
        assert turns(note) == ["User", "Assistant", "User"], (cid, note)
        when = [t for t in MD.parse(body_of(note)) if t.type == "inline"][-2].content
        assert last_turn(note) == [("paragraph_open", ""), ("inline", when),
                                   ("paragraph_close", ""), ("paragraph_open", ""),
                                   ("inline", "after"), ("paragraph_close", "")], (cid, note)


def test_front_matter_titles_and_math_for_obsidian(cli: Any, tmp_path: Path) -> None:
    db = archive(tmp_path, [
        ("c-gpt", "chatgpt", "Line one\nline two\x07\x1b", "Area \\(\\pi r^2\\) costs $5.\n\n"
         "\\[\nE = mc^2\n\\]\n\n`\\(code\\)`"),
        ("c-claude", "claude", "Claude chat", "## User\n\nnot a turn"),
        ("c-pplx", "perplexity", "Perplexity chat", "```py\nprint('cut off"),
    ])
    out = tmp_path / "out"
    res = cli("run", "--db", str(db), "--out", str(out), "--tz", "UTC", "--progress", "none",
              "--no-attachments", timeout=120)
    assert res.returncode == 0, res.stderr
    got = notes(out)
    gpt = got["c-gpt"]
    assert gpt.startswith('---\nid: "c-gpt"\ntitle: "Line one\\nline two\\u0007\\u001b"\n'
                          'provider: "chatgpt"\n')
    assert ('aliases:\n  - "Line one line two"\nsource: "https://chatgpt.com/c/c-gpt"\n'
            'tags:\n  - "chatgpt"\n---\n\n# Line one line two\n') in gpt
    assert "Area $\\pi r^2$ costs \\$5.\n\n$$\nE = mc^2\n$$\n\n`\\(code\\)`" in gpt
    claude = got["c-claude"]
    assert 'source: "https://claude.ai/chat/c-claude"' in claude
    assert turns(claude) == ["User", "Assistant", "User"]
    assert "### User\n\nnot a turn" in claude
    pplx = got["c-pplx"]
    assert "source:" not in pplx  # no address is made up
    assert "```py\nprint('cut off\n```\n" in pplx
    assert turns(pplx) == ["User", "Assistant", "User"]

    plain = tmp_path / "plain"
    res = cli("run", "--db", str(db), "--out", str(plain), "--tz", "UTC", "--progress", "none",
              "--no-attachments", "-o", "math=keep", "-o", "properties=basic", timeout=120)
    assert res.returncode == 0, res.stderr
    kept = notes(plain)["c-gpt"]
    assert "Area \\(\\pi r^2\\) costs $5." in kept
    assert "aliases:" not in kept and "source:" not in kept and "tags:" not in kept
