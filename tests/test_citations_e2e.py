"""Cited answers of the app's real archives, exported by real ``zexport run`` processes.

``realistic.db`` holds ChatGPT, Claude and Perplexity conversations made by the
app's own sync transforms, ``table.db`` a Perplexity table with a citation in
its cells (BRIEF §3). Each exported message is parsed with markdown-it-py: its
structure must be that of the message's text with the citations taken out
(nothing split: paragraphs, list items, table rows), with a link at each cut,
to the cited URL, in order; markdown lists each distinct source once below.
"""

from __future__ import annotations

import json
import re
import sqlite3
from pathlib import Path
from typing import Any

import pytest
from conftest import run_cli
from corpora import APP_FIXTURES
from mdshape import MD, cell_texts, normalize_link, shape, table_cells

pytestmark = pytest.mark.timeout(120)

FIXTURES = APP_FIXTURES
REALISTIC = FIXTURES / "realistic.db"
TABLE = FIXTURES / "table.db"
# A message's heading and time line, as the markdown format writes them.
TURN = re.compile(r"^## (?:User|Assistant|System)\n\n\*[^*\n]+\*\n\n", re.M)
# The placeholders of attachments (not exported: --no-attachments) end a section.
PLACEHOLDERS = re.compile(r"(?:\n*> ⚠ Attachment unavailable: [^\n]*)+\n*\Z")


def archive(db: Path) -> dict[str, tuple[str, list[list[dict[str, Any]]]]]:
    """``{conversation id: (provider, [parts of each message in order_index order])}``."""
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    out: dict[str, tuple[str, list[list[dict[str, Any]]]]] = {}
    for cid, provider in con.execute("SELECT id, provider FROM conversations"):
        rows = con.execute("SELECT parts FROM messages WHERE conversation_id = ? "
                           "ORDER BY order_index, id", (cid,))
        out[cid] = (provider, [json.loads(parts) for (parts,) in rows])
    con.close()
    return out


def uncited(parts: list[dict[str, Any]], provider: str) -> str:
    """The message's text with its citations taken out: the text parts joined with
    nothing (Claude's side-by-side text parts, separate content blocks, by a blank line)."""
    text, previous = "", ""
    for part in parts:
        if part["type"] == "text":
            if previous == "text" and provider == "claude":
                text += "\n\n"
            text += part.get("text") or ""
        previous = part["type"]
    return text


def cited_urls(parts: list[dict[str, Any]]) -> list[str]:
    return [normalize_link(p["url"]) for p in parts if p["type"] == "source-url" and p["url"]]


def distinct(urls: list[str]) -> list[str]:
    return list(dict.fromkeys(urls))


def export(tmp: Path, env: dict[str, str], db: Path, fmt: str, *extra: str) -> Path:
    out = tmp / f"{db.stem}-{fmt}"
    res = run_cli(["run", "--db", str(db), "--out", str(out), "--format", fmt, "--tz", "UTC",
                   "--progress", "none", "--no-attachments", *extra], env, cwd=tmp)
    assert res.returncode == 0, res.stderr
    return out


def check_body(body: str, parts: list[dict[str, Any]], provider: str,
               heading_levels: bool = True) -> None:
    """``body`` is the message's text, whole, with a link to each citation at its cut."""
    expected = shape(uncited(parts, provider), heading_levels)
    got = shape(body, heading_levels)
    assert got.blocks == expected.blocks, body
    assert got.hrefs == cited_urls(parts), body


def markdown_messages(out: Path) -> dict[str, list[str]]:
    """``{conversation id: [each message's section, after its heading and time]}``."""
    found: dict[str, list[str]] = {}
    for path in out.glob("*/conversation.md"):
        text = path.read_text()
        cid = json.loads(re.search(r'^id: (".*")$', text, re.M).group(1))  # type: ignore[union-attr]
        found[cid] = [PLACEHOLDERS.sub("", s.rstrip("\n")) for s in TURN.split(text)[1:]]
    return found


@pytest.mark.parametrize("db", [REALISTIC, TABLE], ids=["realistic", "table"])
def test_markdown_keeps_cited_answers_whole_with_each_source_at_its_cut(
        db: Path, isolated_env: dict[str, str], tmp_path: Path) -> None:
    convs = archive(db)
    sections = markdown_messages(export(tmp_path, isolated_env, db, "markdown"))
    assert set(sections) == set(convs)
    checked = 0
    for cid, (provider, messages) in convs.items():
        assert len(sections[cid]) == len(messages)
        for section, parts in zip(sections[cid], messages, strict=True):
            urls = cited_urls(parts)
            body, listed = section, ""
            if urls:
                body, listed = section.rsplit("\n\n**Sources**\n\n", 1)
                checked += 1
            check_body(body, parts, provider, heading_levels=False)
            # Each distinct source once, numbered in the order of first citation.
            list_tokens = MD.parse(listed)
            assert shape(listed).hrefs == distinct(urls)
            assert sum(t.type == "list_item_open" for t in list_tokens) == len(distinct(urls))
    assert checked == (4 if db == REALISTIC else 1)


@pytest.mark.parametrize("db", [REALISTIC, TABLE], ids=["realistic", "table"])
def test_json_content_is_the_same_one_text_with_sources_at_their_cuts(
        db: Path, isolated_env: dict[str, str], tmp_path: Path) -> None:
    convs = archive(db)
    out = export(tmp_path, isolated_env, db, "json")
    files = out.glob("*/conversation.json")
    docs = {d["id"]: d for d in (json.loads(p.read_text()) for p in files)}
    assert set(docs) == set(convs)
    for cid, (provider, messages) in convs.items():
        for item, parts in zip(docs[cid]["messages"], messages, strict=True):
            check_body(item["content"], parts, provider)
            urls = distinct(cited_urls(parts))
            assert [normalize_link(s["url"]) for s in item.get("cited_sources", [])] == urls
            assert [s["number"] for s in item.get("cited_sources", [])] == list(
                range(1, len(urls) + 1))


@pytest.mark.parametrize("db", [REALISTIC, TABLE], ids=["realistic", "table"])
def test_jsonl_content_is_the_same_one_text_with_sources_at_their_cuts(
        db: Path, isolated_env: dict[str, str], tmp_path: Path) -> None:
    convs = archive(db)
    out = export(tmp_path, isolated_env, db, "jsonl", "-o", "metadata=true",
                 "-o", "min_messages=1")
    lines = [json.loads(line) for line in (out / "conversations.jsonl").read_text().splitlines()]
    assert {d["id"] for d in lines} == set(convs)
    for doc in lines:
        provider, messages = convs[doc["id"]]
        # jsonl leaves out messages without text (an image-only message): none here.
        assert len(doc["messages"]) == len(messages)
        for item, parts in zip(doc["messages"], messages, strict=True):
            check_body(item["content"], parts, provider)


TABLE_ROWS = [[[], []],
              [[normalize_link("https://example.com/1")], [normalize_link("https://example.com/2")]],
              [[normalize_link("https://example.com/3")], []]]


@pytest.mark.parametrize("fmt", ["markdown", "json", "jsonl"])
def test_table_db_is_a_gfm_table_with_a_link_in_each_cited_cell(
        fmt: str, isolated_env: dict[str, str], tmp_path: Path) -> None:
    out = export(tmp_path, isolated_env, TABLE, fmt, *(
        ("-o", "min_messages=1") if fmt == "jsonl" else ()))
    if fmt == "markdown":
        answer = markdown_messages(out)["tbl"][1].rsplit("\n\n**Sources**\n\n", 1)[0]
    elif fmt == "json":
        answer = json.loads(next(out.glob("*/conversation.json")).read_text())[
            "messages"][1]["content"]
    else:
        answer = json.loads((out / "conversations.jsonl").read_text())["messages"][1]["content"]
    assert table_cells(answer) == TABLE_ROWS
    assert cell_texts(answer) == [["Breed", "Spots"], ["Bengal", "rosettes"],
                                  ["Savannah", "solid"]]
    after = shape(answer.split("| solid |", 1)[1])
    assert after.blocks == [("paragraph_open", "p"),
                            ("inline", "Bengals are active. They like water."),
                            ("paragraph_close", "p")]
    assert after.hrefs == [normalize_link(f"https://example.com/{n}") for n in (1, 2, 3)]
