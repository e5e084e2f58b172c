"""The OwnYourChat archive schema (BRIEF §3), as the app really creates it.

Kept in one place so the sample generator, the reader and the validity check
agree on table and column names. ``DDL`` is the app's own SQL (the statements
its migrations leave in ``sqlite_master``, kept in ``app_schema.sql``): no
index on ``messages.conversation_id`` nor ``attachments.message_id``, as in
real archives. zexport never creates these tables in a user's archive; ``DDL``
is used only to build synthetic samples and test data.
"""

from __future__ import annotations

import functools
import os

REQUIRED_TABLES: dict[str, tuple[str, ...]] = {
    "conversations": ("id", "title", "provider", "created_at", "updated_at",
                      "message_count", "current_node_id"),
    "messages": ("id", "conversation_id", "role", "parts", "created_at", "updated_at",
                 "order_index", "parent_id", "sibling_ids", "sibling_index"),
    "attachments": ("id", "message_id", "type", "file_id", "original_url", "local_path",
                    "filename", "mime_type", "size", "width", "height", "created_at",
                    "updated_at"),
}

#: The parent_id Claude's roots carry (the all-zero UUID): a root, not a missing parent.
CLAUDE_ROOT_PARENT = "00000000-0000-4000-8000-000000000000"


@functools.cache
def _app_ddl() -> str:
    """Read the schema file once, on first use: most processes (workers) never need it."""
    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "app_schema.sql")
    with open(path, encoding="utf-8") as fh:
        return fh.read()


def __getattr__(name: str) -> str:
    """``DDL``: the app's schema script (every statement, one ``execute`` runs it)."""
    if name == "DDL":
        return _app_ddl()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
