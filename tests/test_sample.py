"""Tests for ``zexport.sample``: the synthetic archive every benchmark and test relies on.

The generator is only useful if it is reproducible, if it is what the app
writes (its schema and conventions, checked against the app's own databases in
``tests/fixtures/app``) and if its dirt is really there, so each promised case
is checked in the database itself.
"""

from __future__ import annotations

import os
import re
import shutil
import struct
import unicodedata
import zlib
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

import apsw
import orjson
import pytest

from zexport.sample import (
    DEFAULT_EXPORT_SETTINGS,
    SampleStats,
    attachment_dir,
    generator,
    make_sample,
)
from zexport.schema import CLAUDE_ROOT_PARENT, REQUIRED_TABLES

APP_FIXTURES = Path(__file__).parent / "fixtures" / "app"


def _rows(db: Path, sql: str, *args: Any) -> list[tuple[Any, ...]]:
    conn = apsw.Connection(str(db), flags=apsw.SQLITE_OPEN_READONLY)
    try:
        return list(conn.execute(sql, args))
    finally:
        conn.close()


def _tree_bytes(db: Path) -> dict[str, bytes]:
    """The database and every cached file, by name, for byte comparison."""
    out = {"db": db.read_bytes()}
    folder = attachment_dir(db)
    for f in sorted(folder.rglob("*")):
        if f.is_file():
            out[f.relative_to(folder).as_posix()] = f.read_bytes()
    return out


@pytest.fixture(scope="module")
def s50(tmp_path_factory: pytest.TempPathFactory) -> Path:
    db = tmp_path_factory.mktemp("s50") / "ownyourchat.db"
    make_sample(db, conversations=50, seed=0)
    return db


@pytest.fixture(scope="module")
def s50_conversations(s50: Path) -> dict[str, dict[str, Any]]:
    cols = ("id", "title", "provider", "created_at", "updated_at", "message_count",
            "current_node_id", "sync_error", "sync_retry_count")
    return {r[0]: dict(zip(cols, r, strict=True))
            for r in _rows(s50, f"SELECT {', '.join(cols)} FROM conversations")}


@pytest.fixture(scope="module")
def s50_messages(s50: Path) -> list[dict[str, Any]]:
    cols = REQUIRED_TABLES["messages"]
    return [dict(zip(cols, r, strict=True))
            for r in _rows(s50, f"SELECT {', '.join(cols)} FROM messages ORDER BY rowid")]


# -- reproducibility and safety ---------------------------------------------


def test_same_seed_same_bytes(tmp_path: Path) -> None:
    db = tmp_path / "a.db"
    first_stats = make_sample(db, conversations=60, seed=7)
    first = _tree_bytes(db)
    assert len(first) == first_stats.attachment_files + 1
    db.unlink()
    shutil.rmtree(attachment_dir(db))
    assert make_sample(db, conversations=60, seed=7) == first_stats
    assert _tree_bytes(db) == first
    assert not list(tmp_path.glob("*.tmp-*")) and not list(tmp_path.glob("*-journal"))
    assert not (tmp_path / "a.db-wal").exists()

    other = tmp_path / "other" / "a.db"
    other.parent.mkdir()
    make_sample(other, conversations=60, seed=8)
    assert other.read_bytes() != first["db"]


def test_refuses_existing_path(tmp_path: Path) -> None:
    db = tmp_path / "archive.db"
    db.write_bytes(b"precious")
    with pytest.raises(FileExistsError):
        make_sample(db, conversations=5)
    assert db.read_bytes() == b"precious"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["archive.db"]


def test_refuses_existing_attachment_folder(tmp_path: Path) -> None:
    db = tmp_path / "archive.db"
    attachment_dir(db).mkdir()
    (attachment_dir(db) / "keep.txt").write_text("mine")
    with pytest.raises(FileExistsError):
        make_sample(db, conversations=5)
    assert not db.exists()
    assert (attachment_dir(db) / "keep.txt").read_text() == "mine"


def test_failure_leaves_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def boom(self: object, conn: object) -> None:
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(generator.Generator, "_flush", boom)
    with pytest.raises(RuntimeError):
        make_sample(tmp_path / "x.db", conversations=30)
    assert list(tmp_path.iterdir()) == []


def test_rejects_negative_count(tmp_path: Path) -> None:
    with pytest.raises(ValueError):
        make_sample(tmp_path / "x.db", conversations=-1)


def test_zero_conversations(tmp_path: Path) -> None:
    stats = make_sample(tmp_path / "x.db", conversations=0)
    assert stats == SampleStats(0, 0, 0, 0)
    assert _rows(tmp_path / "x.db", "SELECT count(*) FROM conversations") == [(0,)]


# -- shape: the app's schema ---------------------------------------------------


def _schema(db: Path) -> dict[str, Any]:
    """Everything SQLite says about a database's schema, in comparable form."""
    tables = [r[0] for r in _rows(db, "SELECT name FROM sqlite_master WHERE type = 'table'"
                                      " ORDER BY name")]
    out: dict[str, Any] = {"master": _rows(db, "SELECT type, name, tbl_name, sql"
                                               " FROM sqlite_master ORDER BY name")}
    for table in tables:
        indexes = _rows(db, f"PRAGMA index_list('{table}')")
        out[table] = {
            "columns": _rows(db, f"PRAGMA table_xinfo('{table}')"),
            "foreign_keys": _rows(db, f"PRAGMA foreign_key_list('{table}')"),
            "indexes": sorted(indexes),
            "indexed": {i[1]: _rows(db, f"PRAGMA index_xinfo('{i[1]}')") for i in indexes},
        }
    return out


def test_schema_is_the_apps(s50: Path) -> None:
    """Tables, columns, types, NOT NULL, defaults, keys, indexes: what the app's
    migrations create (its own empty database), down to the SQL text."""
    app = _schema(APP_FIXTURES / "app-empty-sqlite.db")
    assert _schema(s50) == app
    assert set(app) - {"master"} == {"conversations", "messages", "attachments",
                                     "sync_state", "provider_state", "user_preferences"}


def test_schema_has_no_index_on_the_foreign_keys(s50: Path) -> None:
    """Real archives: provider_idx, and nothing on messages.conversation_id or
    attachments.message_id, so zexport is measured where the app leaves it."""
    def indexed(table: str) -> set[str]:
        cols: set[str] = set()
        for index in _rows(s50, f"PRAGMA index_list('{table}')"):
            cols |= {r[2] for r in _rows(s50, f"PRAGMA index_info('{index[1]}')")}
        return cols

    assert indexed("conversations") == {"id", "provider"}
    assert indexed("messages") == {"id"}
    assert indexed("attachments") == {"id"}
    assert [r[1] for r in _rows(s50, "PRAGMA index_list('conversations')")
            if r[3] == "c"] == ["provider_idx"]
    assert _rows(s50, "PRAGMA journal_mode") == [("delete",)]


def test_app_state_tables(s50: Path) -> None:
    prefs = _rows(s50, "SELECT id, has_completed_onboarding, show_debug_panel, export_settings"
                       " FROM user_preferences")
    assert len(prefs) == 1 and prefs[0][:3] == ("default", 1, 0)
    settings = orjson.loads(prefs[0][3])
    assert settings == DEFAULT_EXPORT_SETTINGS
    # The app's key names and types (its ExportModal saves exactly these).
    assert list(settings) == ["format", "includeAttachments", "prefixTimestamp", "outputPath"]
    assert settings["format"] == "markdown" and settings["prefixTimestamp"] is True
    assert settings["outputPath"] == ""
    states = _rows(s50, "SELECT provider_name, status FROM provider_state ORDER BY 1")
    assert [s[0] for s in states] == ["chatgpt", "claude", "perplexity"]
    assert _rows(s50, "SELECT count(*) FROM sync_state")[0][0] >= 1


def test_export_settings_row_follows_the_argument(tmp_path: Path) -> None:
    mine = {"format": "json", "includeAttachments": False, "prefixTimestamp": False,
            "outputPath": "/home/me/Exports"}
    make_sample(tmp_path / "a.db", conversations=3, export_settings=mine)
    make_sample(tmp_path / "b.db", conversations=3, export_settings=None)
    assert _rows(tmp_path / "a.db", "SELECT export_settings FROM user_preferences") == [(
        '{"format":"json","includeAttachments":false,"prefixTimestamp":false,'
        '"outputPath":"/home/me/Exports"}',)]
    assert _rows(tmp_path / "b.db", "SELECT export_settings FROM user_preferences") == [(None,)]


def test_counts_plausible(tmp_path: Path) -> None:
    db = tmp_path / "s200.db"
    stats = make_sample(db, conversations=200, seed=3)
    assert stats.conversations == 200
    assert _rows(db, "SELECT count(*), count(DISTINCT id) FROM conversations") == [(200, 200)]
    assert _rows(db, "SELECT count(*) FROM messages")[0][0] == stats.messages
    assert _rows(db, "SELECT count(*) FROM attachments")[0][0] == stats.attachments
    assert 10 <= stats.messages / 200 <= 40
    assert 0.02 <= stats.attachments / stats.messages <= 0.10
    assert 0 < stats.attachment_files < stats.attachments
    files = [f for f in attachment_dir(db).rglob("*") if f.is_file()]
    assert len(files) == stats.attachment_files
    providers = dict(_rows(db, "SELECT provider, count(*) FROM conversations GROUP BY 1"))
    assert set(providers) == {"chatgpt", "claude", "perplexity"}
    avg_text = _rows(db, "SELECT avg(length(CAST(parts AS BLOB))) FROM messages")[0][0]
    assert 300 <= avg_text <= 1500
    # Heavy tail: most conversations short, a few long.
    lengths = [r[0] for r in _rows(
        db, "SELECT count(*) FROM messages GROUP BY conversation_id")]
    assert sum(2 <= n <= 30 for n in lengths) > 0.6 * len(lengths)
    assert max(lengths) >= 60
    assert _rows(db, "SELECT count(*) FROM conversations WHERE title = 'New chat'")[0][0] >= 15


# -- the specials, all in a 50-conversation sample ----------------------------


def test_hostile_titles(s50_conversations: dict[str, dict[str, Any]]) -> None:
    titles = [c["title"] for c in s50_conversations.values()]
    have = set(titles)
    assert any("/" in t for t in titles)
    for exact in ("..", ".", "CON", "nul.txt", "", "Report", "REPORT", "🚀🔥💯"):
        assert exact in have, repr(exact)
    assert any(":" in t and "?" in t and "*" in t for t in titles)
    cjk = [t for t in titles if len(t) == 100 and all(ord(ch) > 0x2E80 for ch in t)]
    assert cjk and len(cjk[0].encode()) >= 300
    assert any(t.rstrip(". ") != t and t.strip(". ") for t in titles)  # trailing dots/spaces
    assert any("\x00" in t for t in titles)
    assert any(any(unicodedata.category(ch) == "Cc" and ch != "\x00" for ch in t)
               for t in titles)
    assert any("\u202e" in t for t in titles)
    nfc, nfd = "Caf\u00e9", "Cafe\u0301"
    assert nfc in have and nfd in have and unicodedata.normalize("NFC", nfd) == nfc
    counts = Counter(titles)
    assert counts["New chat"] >= 2
    assert any(n >= 2 for t, n in counts.items() if t != "New chat")
    assert any(len(t.encode()) > 255 and t.isascii() for t in titles)


def test_structural_dirt(
    s50: Path, s50_conversations: dict[str, dict[str, Any]], s50_messages: list[dict[str, Any]]
) -> None:
    by_conv: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for m in s50_messages:
        by_conv[m["conversation_id"]].append(m)
    ids = {m["id"] for m in s50_messages}
    convs = s50_conversations.values()

    assert any(c["id"] not in by_conv for c in convs)  # zero messages
    assert any(c["current_node_id"] is None and by_conv[c["id"]] for c in convs)
    assert any(c["current_node_id"] is not None and c["current_node_id"] not in ids
               for c in convs)
    assert any(c["created_at"] is None for c in convs)
    assert any(c["updated_at"] is None for c in convs)
    assert any(c["message_count"] is None for c in convs)
    assert any(c["message_count"] is not None
               and c["message_count"] != len(by_conv[c["id"]]) for c in convs)
    assert any(c["sync_error"] for c in convs)
    assert sum(c["sync_error"] is None for c in convs) > 40
    assert {c["provider"] for c in convs} == {"chatgpt", "claude", "perplexity"}

    assert any(m["created_at"] is None for m in s50_messages)
    assert any(m["parent_id"] not in ids | {None, CLAUDE_ROOT_PARENT} for m in s50_messages)
    assert any(msgs[0]["role"] == "system" for msgs in by_conv.values())
    assert {m["role"] for m in s50_messages} == {"user", "assistant", "system"}

    unparseable = 0
    for m in s50_messages:
        try:
            orjson.loads(m["parts"])
        except orjson.JSONDecodeError:
            unparseable += 1
    assert unparseable >= 1
    assert any(m["parts"].startswith('[{"type":"text","text":"trunc') for m in s50_messages)


def _by_provider(conversations: dict[str, dict[str, Any]],
                 messages: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    out: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for m in messages:
        out[conversations[m["conversation_id"]]["provider"]].append(m)
    return out


def test_provider_conventions(
    s50_conversations: dict[str, dict[str, Any]], s50_messages: list[dict[str, Any]]
) -> None:
    """Parents, siblings and current nodes as each provider's sync writes them
    (BRIEF §3; the app's realistic.db shows the same)."""
    by = _by_provider(s50_conversations, s50_messages)
    ids = {m["id"] for m in s50_messages}
    claude, perplexity, chatgpt = by["claude"], by["perplexity"], by["chatgpt"]

    claude_roots = [m for m in claude if m["parent_id"] == CLAUDE_ROOT_PARENT]
    assert len({m["conversation_id"] for m in claude_roots}) == len(
        {m["conversation_id"] for m in claude})  # every Claude thread hangs under the zero uuid
    assert not any(m["parent_id"] is None for m in claude)
    assert {m["sibling_ids"] for m in claude} == {"[]", None}  # None: the sibling-null dirt
    assert {m["sibling_index"] for m in claude} == {0}

    assert all(m["parent_id"] is None for m in perplexity)
    assert {m["sibling_ids"] for m in perplexity} == {"[]"}
    for m in perplexity:
        assert re.fullmatch(r"[0-9a-f-]{36}-(query|answer)", m["id"]), m["id"]
        assert m["id"].endswith("-query") == (m["role"] == "user")
    assert all(c["current_node_id"] is None for c in s50_conversations.values()
               if c["provider"] == "perplexity")

    first = {m["conversation_id"]: m for m in chatgpt if m["order_index"] == 0}
    assert first and all(m["parent_id"] is None for m in first.values())  # a ChatGPT root
    assert all(m["parent_id"] in ids for m in chatgpt if m["order_index"] > 0)
    assert any(m["sibling_ids"] == f'["{m["id"]}"]' for m in chatgpt)

    assert {m["updated_at"] for m in s50_messages} == {None}
    assert sum(c["sync_retry_count"] == 0 for c in s50_conversations.values()) > 40


def test_claude_roots_are_no_orphans(s50_messages: list[dict[str, Any]]) -> None:
    """The all-zero parent is a root marker: no message of the sample has that id,
    and the orphan dirt is a parent that is neither a message nor the marker."""
    assert CLAUDE_ROOT_PARENT not in {m["id"] for m in s50_messages}


def test_parts(s50_messages: list[dict[str, Any]]) -> None:
    kinds: Counter[str] = Counter()
    untitled_sources = 0
    fences = tables = latex = 0
    for m in s50_messages:
        try:
            parts = orjson.loads(m["parts"])
        except orjson.JSONDecodeError:
            continue
        if not isinstance(parts, list):
            continue
        for p in parts:
            if not isinstance(p, dict):
                continue
            kinds[str(p.get("type"))] += 1
            if p.get("type") == "source-url":
                assert p["url"].startswith("https://") and p["sourceId"]
                untitled_sources += "title" not in p
            text = p.get("text") or ""
            fences += "```python" in text or "```sql" in text or "```bash" in text
            tables += "\n|---|" in text
            latex += "$$" in text or "\\[" in text
    assert kinds["text"] > 100
    assert kinds["source-url"] >= 3 and untitled_sources >= 1
    assert kinds["reasoning"] >= 1
    assert set(kinds) - {"text", "source-url"}  # unknown types to be preserved
    assert fences and tables and latex




def _parts_of(messages: list[dict[str, Any]]) -> list[tuple[dict[str, Any], list[Any]]]:
    out = []
    for m in messages:
        try:
            parts = orjson.loads(m["parts"])
        except orjson.JSONDecodeError:
            continue
        if isinstance(parts, list) and all(isinstance(p, dict) for p in parts):
            out.append((m, parts))
    return out


def test_source_parts_have_the_apps_keys(
    s50_conversations: dict[str, dict[str, Any]], s50_messages: list[dict[str, Any]]
) -> None:
    """Each provider's source-url parts carry the keys, in the order, that the app's
    transform gives them in realistic.db (a missing title is the dirt it lets through)."""
    app: dict[str, set[tuple[str, ...]]] = defaultdict(set)
    for provider, parts in _rows(APP_FIXTURES / "realistic.db",
                                 "SELECT c.provider, m.parts FROM messages m JOIN conversations"
                                 " c ON c.id = m.conversation_id"):
        for p in orjson.loads(parts):
            if p["type"] == "source-url":
                app[provider].add(tuple(p))
    assert set(app) == {"chatgpt", "claude", "perplexity"}
    seen: dict[str, Counter[tuple[str, ...]]] = defaultdict(Counter)
    for m, parts in _parts_of(s50_messages):
        provider = s50_conversations[m["conversation_id"]]["provider"]
        for p in parts:
            if p.get("type") == "source-url":
                seen[provider][tuple(p)] += 1
    assert set(seen) == {"chatgpt", "claude", "perplexity"}
    for provider, shapes in seen.items():
        (real,) = app[provider]
        untitled = tuple(k for k in real if k != "title")
        assert set(shapes) <= {real, untitled}, provider
        assert shapes[real] > shapes[untitled], provider


def _cuts(parts: list[dict[str, Any]]) -> list[tuple[str, str]]:
    """(text before, text after) around every run of source-url parts between two texts."""
    out = []
    for i, p in enumerate(parts):
        if p.get("type") != "source-url" or i == 0 or parts[i - 1].get("type") != "text":
            continue
        j = i
        while j < len(parts) and parts[j].get("type") == "source-url":
            j += 1
        if j < len(parts) and parts[j].get("type") == "text":
            out.append((parts[i - 1]["text"], parts[j]["text"]))
    return out


def test_citations_cut_the_text_inline(
    s50_conversations: dict[str, dict[str, Any]], s50_messages: list[dict[str, Any]]
) -> None:
    """Citations sit where the app's transforms put them: in the middle of the
    answer, at a sentence's end (before its full stop for ChatGPT), at a list
    item's end and inside table cells; never inside a code block."""
    in_cell = in_list_item = before_stop = after_stop = 0
    for m, parts in _parts_of(s50_messages):
        provider = s50_conversations[m["conversation_id"]]["provider"]
        for before, after in _cuts(parts):
            last_line = before.rsplit("\n", 1)[-1]
            if last_line.startswith("|") and after.startswith(" |"):
                in_cell += 1
            elif re.match(r"\s*(- |\d+\. )", last_line) and re.match(r"[.?!]?\n", after):
                in_list_item += 1
            if provider == "chatgpt" and after[:1] in ".?!":
                before_stop += 1
            if provider != "chatgpt" and before[-1:] in ".?!":
                after_stop += 1
        if any(p.get("type") == "source-url" for p in parts):
            assert _fence_balanced(parts), m["id"]
    assert in_cell >= 2 and in_list_item >= 1 and before_stop >= 1 and after_stop >= 1


def _fence_balanced(parts: list[dict[str, Any]]) -> bool:
    """Every cut lies outside code: each text piece opens as many fences as it closes."""
    return all(sum(line.startswith("```") for line in p["text"].split("\n")) % 2 == 0
               for p in parts if p.get("type") == "text")


def test_image_only_answer(s50: Path, s50_messages: list[dict[str, Any]]) -> None:
    """An answer that is only an image: one empty text part and an image attachment."""
    empty = [m["id"] for m in s50_messages
             if m["role"] == "assistant" and m["parts"] == '[{"type":"text","text":""}]']
    assert empty
    for mid in empty:
        kinds = {r[0] for r in _rows(s50, "SELECT type FROM attachments WHERE message_id = ?",
                                     mid)}
        assert kinds == {"image"}, mid


def test_branches(
    s50_conversations: dict[str, dict[str, Any]], s50_messages: list[dict[str, Any]]
) -> None:
    by_id = {m["id"]: m for m in s50_messages}
    provider = {m["id"]: s50_conversations[m["conversation_id"]]["provider"]
                for m in s50_messages}
    for m in s50_messages:
        assert m["sibling_index"] is not None
        if m["sibling_ids"] is None or provider[m["id"]] != "chatgpt":
            assert m["sibling_index"] == 0
            continue
        sibs = orjson.loads(m["sibling_ids"])
        assert sibs[m["sibling_index"]] == m["id"]
        for s in sibs:
            assert by_id[s]["parent_id"] == m["parent_id"]
            assert by_id[s]["conversation_id"] == m["conversation_id"]
    assert any(m["sibling_ids"] is None for m in s50_messages)  # dirt: no sibling list

    # order_index grows along creation: a child comes after its parent.
    for m in s50_messages:
        parent = by_id.get(m["parent_id"] or "")
        if parent is not None:
            assert parent["order_index"] < m["order_index"]

    children: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for m in s50_messages:
        if m["parent_id"] in by_id:
            children[m["parent_id"]].append(m)
    forks = {p: kids for p, kids in children.items() if len(kids) > 1}
    branched = {by_id[p]["conversation_id"] for p in forks}
    assert {s50_conversations[c]["provider"] for c in branched} == {"chatgpt", "claude"}
    listed = [kids for kids in forks.values() if provider[kids[0]["id"]] == "chatgpt"]
    assert any(orjson.loads(kids[0]["sibling_ids"] or "[]") == [k["id"] for k in kids]
               for kids in listed)  # ChatGPT lists its siblings
    not_last = 0
    for cid in branched:
        node = by_id.get(s50_conversations[cid]["current_node_id"] or "")
        while node is not None:  # walk up to the branch point
            sibs = children.get(node["parent_id"] or "", [])
            if len(sibs) > 1:
                newest = max(sibs, key=lambda s: s["order_index"])
                not_last += newest["id"] != node["id"]
                break
            node = by_id.get(node["parent_id"] or "")
    assert not_last >= 1  # the active branch is not always the newest


def test_attachments(
    s50: Path, s50_conversations: dict[str, dict[str, Any]], s50_messages: list[dict[str, Any]]
) -> None:
    cols = REQUIRED_TABLES["attachments"]
    atts = [dict(zip(cols, r, strict=True))
            for r in _rows(s50, f"SELECT {', '.join(cols)} FROM attachments")]
    messages = {m["id"]: m for m in s50_messages}
    assert all(a["message_id"] in messages for a in atts)
    assert {a["type"] for a in atts} == {"image", "file"}
    folder = attachment_dir(s50)
    assert folder == s50.parent / "attachments"  # the app's own user-data layout

    for a in atts:
        cid = messages[a["message_id"]]["conversation_id"]
        provider = s50_conversations[cid]["provider"]
        assert a["id"] == f"{a['message_id']}-att-{a['file_id']}"
        assert a["created_at"] is None and a["updated_at"] is None
        assert a["local_path"] is not None and a["original_url"] is not None  # '' instead
        on_disk = sorted((folder / cid).glob(f"{a['file_id']}_*"))
        if a["local_path"]:
            assert Path(a["local_path"]).parent == folder / cid
            assert Path(a["local_path"]).name.startswith(f"{a['file_id']}_")
        if provider == "chatgpt":
            assert a["original_url"] == ""
            assert re.fullmatch(r"file[_-][0-9a-f]{24,32}", a["file_id"])
            if on_disk:
                assert a["size"] in (None, on_disk[0].stat().st_size)  # NULL size is dirt
        else:
            assert a["size"] == 0
            host = "claude.example.invalid" if provider == "claude" else "files.example.invalid"
            assert a["original_url"].startswith(f"https://{host}/")
        if provider == "perplexity":
            assert a["filename"] is None and a["width"] is None and a["height"] is None
        elif a["type"] == "image":
            assert a["mime_type"] in ("image/png", "image/jpeg")
            assert a["width"] and a["height"]

    cached = [a for a in atts if a["local_path"] and os.path.exists(a["local_path"])]
    gone = [a for a in atts if a["local_path"] and not os.path.exists(a["local_path"])]
    blank = [a for a in atts if a["local_path"] == ""]
    resynced = [a for a in blank if list((folder / messages[a["message_id"]]["conversation_id"])
                                         .glob(f"{a['file_id']}_*"))]
    assert cached and gone and resynced and len(blank) > len(resynced)  # some never fetched

    pngs = [a for a in cached if a["mime_type"] == "image/png"]
    jpegs = [a for a in cached if a["mime_type"] == "image/jpeg"]
    assert pngs and jpegs
    for a in pngs:
        _check_png(Path(a["local_path"]).read_bytes(), a["width"], a["height"])
    for a in jpegs:
        data = Path(a["local_path"]).read_bytes()
        assert data[:2] == b"\xff\xd8" and data[-2:] == b"\xff\xd9"

    names = {a["filename"] for a in atts}
    assert {"../../etc/passwd", "a/b.png", "CON.txt"} <= names
    assert any(n and len(n.encode()) > 255 for n in names)
    assert any(n and any(ord(ch) > 0xFFFF for ch in n) for n in names)  # emoji
    per_message = Counter((a["message_id"], a["filename"]) for a in atts)
    assert max(per_message.values()) >= 2  # same filename twice on one message
    for f in folder.rglob("*"):  # hostile names stay names: nothing outside the layout
        assert f.relative_to(folder).parts[0] in {messages[a["message_id"]]["conversation_id"]
                                                   for a in atts}
        assert len(f.name.encode()) <= 255


def _check_png(data: bytes, width: int, height: int) -> None:
    """Parse the PNG far enough to know an image viewer would accept it."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    pos, idat, chunks = 8, b"", []
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos:pos + 4])
        tag, body = data[pos + 4:pos + 8], data[pos + 8:pos + 8 + length]
        (crc,) = struct.unpack(">I", data[pos + 8 + length:pos + 12 + length])
        assert zlib.crc32(tag + body) & 0xFFFFFFFF == crc
        chunks.append(tag)
        if tag == b"IHDR":
            assert struct.unpack(">II", body[:8]) == (width, height)
        if tag == b"IDAT":
            idat += body
        pos += 12 + length
    assert chunks[0] == b"IHDR" and chunks[-1] == b"IEND"
    assert len(zlib.decompress(idat)) == height * (1 + 3 * width)


def test_the_sample_command_says_what_it_wrote_in_words(
        tmp_path: Path, isolated_env: dict[str, str]) -> None:
    """`zexport sample` tells a user the counts, not a dataclass's repr."""
    from conftest import run_cli

    target = tmp_path / "a.db"
    res = run_cli(["sample", str(target), "-n", "3"], isolated_env, cwd=tmp_path, timeout=60)
    assert res.returncode == 0, res.stderr
    stats = make_sample(tmp_path / "again.db", conversations=3)
    assert res.stdout == (
        f"Wrote {target}: 3 conversations, {stats.messages} messages, {stats.attachments}"
        f" attachments ({stats.attachment_files} with a file in {attachment_dir(target)})\n")
