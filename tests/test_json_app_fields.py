"""The json format is a superset of the app's own JSON export (``src/main/export/json.ts``).

``app_json`` below is json.ts transcribed: what the app writes for a
conversation, from the same rows. Every field it has must be in zexport's
file with the same name, JSON type and value; zexport's additions sit beside
them under their own names. Run by real ``zexport run`` processes.
"""

from __future__ import annotations

import json
import re
import sqlite3
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest
from conftest import run_cli
from corpora import APP_FIXTURES

from zexport.schema import DDL

pytestmark = pytest.mark.timeout(120)

REALISTIC = APP_FIXTURES / "realistic.db"
TO_ISO_STRING = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")  # Date.toISOString()


def app_json(con: sqlite3.Connection, cid: str) -> dict[str, Any]:
    """What json.ts writes for conversation ``cid`` (attachments and exported_at aside)."""
    title, provider, created, updated = con.execute(
        "SELECT title, provider, created_at, updated_at FROM conversations WHERE id = ?",
        (cid,)).fetchone()
    messages = []
    for mid, role, parts_text, m_created, parent in con.execute(
            "SELECT id, role, parts, created_at, parent_id FROM messages "
            "WHERE conversation_id = ? ORDER BY order_index", (cid,)):
        parts = json.loads(parts_text)
        item: dict[str, Any] = {
            "id": mid, "role": role,
            # flattenPartsToContent: text parts joined by '\n' (null -> '' in JS join).
            "content": "\n".join(p.get("text") or "" for p in parts if p["type"] == "text"),
            "created_at": m_created, "parent_id": parent,
        }
        sources = [{**({"title": p["title"]} if p.get("title") else {}), "url": p["url"]}
                   for p in parts if p["type"] == "source-url"]
        if sources:
            item["sources"] = sources
        messages.append(item)
    return {"id": cid, "title": title, "provider": provider, "created_at": created,
            "updated_at": updated, "message_count": len(messages), "messages": messages}


def assert_superset(got: Any, app: Any, where: str = "") -> None:
    """Every key of ``app`` is in ``got`` with the same JSON type and value."""
    assert type(got) is type(app), (where, got, app)
    if isinstance(app, dict):
        for key, value in app.items():
            assert key in got, f"{where}.{key} missing"
            assert_superset(got[key], value, f"{where}.{key}")
    elif isinstance(app, list):
        assert len(got) == len(app), where
        for i, (g, a) in enumerate(zip(got, app, strict=True)):
            assert_superset(g, a, f"{where}[{i}]")
    else:
        assert got == app, where


def export(tmp: Path, env: dict[str, str], db: Path, *extra: str) -> dict[str, dict[str, Any]]:
    out = tmp / "out"
    res = run_cli(["run", "--db", str(db), "--out", str(out), "--format", "json", "--tz", "UTC",
                   "--progress", "none", *extra], env, cwd=tmp)
    assert res.returncode == 0, res.stderr
    docs = (json.loads(p.read_text()) for p in out.glob("*/conversation.json"))
    return {d["id"]: d for d in docs}


def test_every_field_of_the_apps_json_with_its_name_type_and_value(
        isolated_env: dict[str, str], tmp_path: Path) -> None:
    docs = export(tmp_path, isolated_env, REALISTIC, "--no-attachments", "-o", "content=app")
    con = sqlite3.connect(f"file:{REALISTIC}?mode=ro", uri=True)
    ids = [cid for (cid,) in con.execute("SELECT id FROM conversations")]
    assert sorted(docs) == sorted(ids)
    for cid in ids:
        doc = docs[cid]
        assert_superset(doc, app_json(con, cid), cid)
        assert TO_ISO_STRING.match(doc["exported_at"]), doc["exported_at"]
        # zexport's additions: the rest of the row, ISO twins of the times.
        synced, error, retries, stored_count, current = con.execute(
            "SELECT synced_at, sync_error, sync_retry_count, message_count, current_node_id "
            "FROM conversations WHERE id = ?", (cid,)).fetchone()
        assert (doc["synced_at"], doc["sync_error"], doc["sync_retry_count"]) == (
            synced, error, retries)
        assert (doc["stored_message_count"], doc["current_node_id"]) == (stored_count, current)
        assert doc["created_at_iso"] == datetime.fromtimestamp(
            doc["created_at"], timezone.utc).isoformat()
        for m in doc["messages"]:
            assert {"created_at_iso", "updated_at", "updated_at_iso", "order_index",
                    "sibling_ids", "sibling_index", "parts"} <= set(m)
    # Claude's roots keep the all-zero parent the app stores (and writes).
    claude = docs["adc92776-9458-48d3-946e-1ab69e3516b4"]["messages"][0]
    assert claude["parent_id"] == "00000000-0000-4000-8000-000000000000"
    con.close()


def test_default_content_differs_from_the_app_only_by_its_join(
        isolated_env: dict[str, str], tmp_path: Path) -> None:
    """Without ``content=app`` every app field but ``content`` is the app's; content is
    the text parts joined with nothing plus the citation links (test_citations_e2e)."""
    docs = export(tmp_path, isolated_env, REALISTIC, "--no-attachments")
    con = sqlite3.connect(f"file:{REALISTIC}?mode=ro", uri=True)
    for cid, doc in docs.items():
        app = app_json(con, cid)
        for m in app["messages"]:
            m.pop("content")
        assert_superset(doc, app, cid)
        assert all(type(m["content"]) is str for m in doc["messages"])
    con.close()


def small_archive(tmp: Path, conversations_ddl: str | None = None) -> Path:
    """One conversation: a message with NULL times and a null text part, and a cited
    answer with an image on disk beside the archive."""
    db = tmp / "archive.db"
    con = sqlite3.connect(db)
    ddl = DDL
    if conversations_ddl:
        ddl = re.sub(r"CREATE TABLE `?conversations`? \(.*?\);", conversations_ddl, DDL,
                     flags=re.S)
    con.executescript(ddl)
    cols = [r[1] for r in con.execute("PRAGMA table_info(conversations)")]
    row = {"id": "c1", "title": "Small", "provider": "chatgpt", "created_at": 1700000000,
           "updated_at": 1700000100, "synced_at": 1700000200, "message_count": 2,
           "current_node_id": "m2", "sync_error": "HTTP 500", "sync_retry_count": 3}
    con.execute(f"INSERT INTO conversations ({','.join(cols)}) VALUES "
                f"({','.join('?' * len(cols))})", [row[c] for c in cols])
    con.execute("INSERT INTO messages VALUES ('m1', 'c1', 'user', ?, NULL, NULL, 0, NULL,"
                " '[\"m1\"]', 0)", (json.dumps([{"type": "text", "text": None}]),))
    con.execute("INSERT INTO messages VALUES ('m2', 'c1', 'assistant', ?, 1700000050, NULL,"
                " 1, 'm1', '[\"m2\"]', 0)", (json.dumps([
                    {"type": "text", "text": "A cat"},
                    {"type": "source-url", "url": "https://x.example", "title": ""},
                    {"type": "text", "text": "."}]),))
    (tmp / "files").mkdir()
    (tmp / "files" / "kitty.png").write_bytes(b"png")
    con.execute("INSERT INTO attachments (id, message_id, type, file_id, original_url,"
                " local_path, filename, mime_type) VALUES ('a1', 'm2', 'image', 'f1', '', ?,"
                " 'kitty.png', 'image/png')", (str(tmp / "files" / "kitty.png"),))
    con.commit()
    con.close()
    return db


def test_null_times_null_text_and_attachment_local_path_as_the_app_writes_them(
        isolated_env: dict[str, str], tmp_path: Path) -> None:
    doc = export(tmp_path, isolated_env, small_archive(tmp_path), "--workers", "1")["c1"]
    first, answer = doc["messages"]
    # A NULL time is null (json.ts: `if (!date) return null`), never left out.
    assert first["created_at"] is None and first["created_at_iso"] is None
    assert first["updated_at"] is None
    # A null text part is empty, never "None".
    assert first["content"] == ""
    # An empty title is left out of the app's sources; url as stored.
    assert answer["sources"] == [{"url": "https://x.example"}]
    assert answer["content"] == "A cat[\\[1\\]](<https://x.example>)."
    att = answer["attachments"][0]
    assert {k: att[k] for k in ("type", "filename", "local_path", "original_url")} == {
        "type": "image", "filename": "kitty.png", "local_path": "./attachments/kitty.png",
        "original_url": ""}
    folder = next((tmp_path / "out").glob("*/conversation.json")).parent
    assert (folder / att["local_path"]).read_bytes() == b"png"
    assert (doc["synced_at"], doc["sync_error"], doc["sync_retry_count"]) == (
        1700000200, "HTTP 500", 3)


def test_an_archive_without_the_sync_columns_still_exports(
        isolated_env: dict[str, str], tmp_path: Path) -> None:
    """zexport requires only the columns it exports; the sync bookkeeping is null then."""
    ddl = ("CREATE TABLE conversations (id TEXT PRIMARY KEY, title TEXT NOT NULL, provider"
           " TEXT NOT NULL, created_at INTEGER, updated_at INTEGER, message_count INTEGER,"
           " current_node_id TEXT);")
    doc = export(tmp_path, isolated_env, small_archive(tmp_path, ddl), "--no-attachments")["c1"]
    assert (doc["synced_at"], doc["sync_error"], doc["sync_retry_count"]) == (None, None, None)
    assert doc["created_at"] == 1700000000 and len(doc["messages"]) == 2
