"""Tests for ``zexport.sample``: the synthetic archive every benchmark and test relies on.

The generator is only useful if it is reproducible and if its dirt is really
there, so each promised special case is checked in the database itself.
"""

from __future__ import annotations

import os
import struct
import unicodedata
import zlib
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

import apsw
import orjson
import pytest

from zexport import sample
from zexport.sample import SampleStats, attachment_dir, make_sample
from zexport.schema import REQUIRED_TABLES


def _rows(db: Path, sql: str, *args: Any) -> list[tuple[Any, ...]]:
    conn = apsw.Connection(str(db), flags=apsw.SQLITE_OPEN_READONLY)
    try:
        return list(conn.execute(sql, args))
    finally:
        conn.close()


def _tree_bytes(db: Path) -> dict[str, bytes]:
    """The database and every cached file, by name, for byte comparison."""
    out = {"db": db.read_bytes()}
    for f in sorted(attachment_dir(db).iterdir()):
        out[f.name] = f.read_bytes()
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
    db.unlink()
    for f in attachment_dir(db).iterdir():
        f.unlink()
    attachment_dir(db).rmdir()
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

    monkeypatch.setattr(sample._Generator, "_flush", boom)
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


# -- shape ------------------------------------------------------------------


def test_schema(s50: Path) -> None:
    for table, columns in REQUIRED_TABLES.items():
        have = {r[1] for r in _rows(s50, f"PRAGMA table_info({table})")}
        assert set(columns) <= have, table
    indexed: set[str] = set()
    for index in _rows(s50, "PRAGMA index_list(attachments)"):
        indexed |= {r[2] for r in _rows(s50, f"PRAGMA index_info('{index[1]}')")}
    assert "message_id" not in indexed
    assert _rows(s50, "PRAGMA journal_mode") == [("delete",)]
    for table in ("sync_state", "provider_state", "user_preferences"):
        assert _rows(s50, f"SELECT count(*) FROM {table}")[0][0] >= 1


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
    assert len(list(attachment_dir(db).iterdir())) == stats.attachment_files
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
    assert any(m["parent_id"] is not None and m["parent_id"] not in ids for m in s50_messages)
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


def test_branches(
    s50_conversations: dict[str, dict[str, Any]], s50_messages: list[dict[str, Any]]
) -> None:
    by_id = {m["id"]: m for m in s50_messages}
    styles = {m["sibling_ids"] is None for m in s50_messages if not m["sibling_index"]}
    assert styles == {True, False}  # NULL and '[own id]' both occur

    for m in s50_messages:
        assert m["sibling_index"] is not None
        if m["sibling_ids"] is None:
            assert m["sibling_index"] == 0
            continue
        sibs = orjson.loads(m["sibling_ids"])
        assert sibs[m["sibling_index"]] == m["id"]
        for s in sibs:
            assert by_id[s]["parent_id"] == m["parent_id"]
            assert by_id[s]["conversation_id"] == m["conversation_id"]

    # order_index grows along creation: a child comes after its parent.
    for m in s50_messages:
        parent = by_id.get(m["parent_id"] or "")
        if parent is not None:
            assert parent["order_index"] < m["order_index"]

    branched = {m["conversation_id"] for m in s50_messages
                if m["sibling_ids"] and len(orjson.loads(m["sibling_ids"])) > 1}
    assert len(branched) >= 2
    not_last = 0
    for cid in branched:
        node = by_id.get(s50_conversations[cid]["current_node_id"] or "")
        while node is not None:  # walk up to the branch point
            if node["sibling_ids"] and len(orjson.loads(node["sibling_ids"])) > 1:
                sibs = [by_id[s] for s in orjson.loads(node["sibling_ids"])]
                newest = max(sibs, key=lambda s: s["order_index"])
                not_last += newest["id"] != node["id"]
                break
            node = by_id.get(node["parent_id"] or "")
    assert not_last >= 1  # the active branch is not always the newest


def test_attachments(s50: Path, s50_messages: list[dict[str, Any]]) -> None:
    cols = REQUIRED_TABLES["attachments"]
    atts = [dict(zip(cols, r, strict=True))
            for r in _rows(s50, f"SELECT {', '.join(cols)} FROM attachments")]
    msg_ids = {m["id"] for m in s50_messages}
    assert all(a["message_id"] in msg_ids for a in atts)
    assert {a["type"] for a in atts} == {"image", "file"}
    folder = attachment_dir(s50)

    cached = [a for a in atts if a["local_path"] and os.path.exists(a["local_path"])]
    gone = [a for a in atts if a["local_path"] and not os.path.exists(a["local_path"])]
    null = [a for a in atts if a["local_path"] is None]
    assert cached and gone and null
    for a in cached:
        assert os.path.isabs(a["local_path"])
        assert Path(a["local_path"]).parent == folder
        assert a["size"] in (None, os.path.getsize(a["local_path"]))  # NULL size is dirt
    for a in gone + null:
        assert a["file_id"] and a["file_id"].startswith("file-")
        assert a["original_url"].startswith("https://files.example.invalid/")
    for a in atts:
        if a["type"] == "image":
            assert a["mime_type"] in ("image/png", "image/jpeg")
            assert a["width"] and a["height"]

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
