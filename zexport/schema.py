"""The OwnYourChat archive schema (BRIEF §3), as zexport reads it.

Kept in one place so the sample generator, the reader and the validity check
agree on table and column names. zexport never creates these tables in a
user's archive; ``DDL`` is used only to build synthetic samples and test data.
"""

from __future__ import annotations

REQUIRED_TABLES: dict[str, tuple[str, ...]] = {
    "conversations": ("id", "title", "provider", "created_at", "updated_at",
                      "message_count", "current_node_id"),
    "messages": ("id", "conversation_id", "role", "parts", "created_at", "updated_at",
                 "order_index", "parent_id", "sibling_ids", "sibling_index"),
    "attachments": ("id", "message_id", "type", "file_id", "original_url", "local_path",
                    "filename", "mime_type", "size", "width", "height", "created_at",
                    "updated_at"),
}

DDL = """
CREATE TABLE conversations (
    id TEXT PRIMARY KEY,
    title TEXT NOT NULL,
    provider TEXT NOT NULL,
    created_at INTEGER,
    updated_at INTEGER,
    synced_at INTEGER,
    message_count INTEGER,
    current_node_id TEXT,
    sync_error TEXT,
    sync_retry_count INTEGER
);
CREATE INDEX provider_idx ON conversations(provider);
CREATE TABLE messages (
    id TEXT PRIMARY KEY,
    conversation_id TEXT REFERENCES conversations(id),
    role TEXT NOT NULL,
    parts TEXT NOT NULL,
    created_at INTEGER,
    updated_at INTEGER,
    order_index INTEGER NOT NULL,
    parent_id TEXT,
    sibling_ids TEXT,
    sibling_index INTEGER
);
CREATE INDEX conversation_id_idx ON messages(conversation_id);
CREATE TABLE attachments (
    id TEXT PRIMARY KEY,
    message_id TEXT REFERENCES messages(id),
    type TEXT NOT NULL,
    file_id TEXT,
    original_url TEXT,
    local_path TEXT,
    filename TEXT,
    mime_type TEXT,
    size INTEGER,
    width INTEGER,
    height INTEGER,
    created_at INTEGER,
    updated_at INTEGER
);
CREATE TABLE sync_state (key TEXT PRIMARY KEY, value TEXT);
CREATE TABLE provider_state (provider TEXT PRIMARY KEY, state TEXT);
CREATE TABLE user_preferences (key TEXT PRIMARY KEY, value TEXT);
"""
