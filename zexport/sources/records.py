"""What a converter hands the archive writer: one conversation's kept messages.

Converters decide *what* a conversation is (which nodes are turns, their
parts, their parents); :mod:`zexport.sources.writer` decides *how* it is
stored (order, siblings, unique ids), so every source stores trees alike.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(slots=True)
class AttachmentRecord:
    """An attachment row; ``local_path`` is None when the export lacks the file."""

    key: str  # unique within its message
    type: str  # "image" | "file"
    file_id: str | None = None
    original_url: str | None = None
    local_path: str | None = None
    filename: str | None = None
    mime_type: str | None = None
    size: int | None = None
    width: int | None = None
    height: int | None = None


@dataclass(slots=True)
class MessageRecord:
    """A kept message; ``parent`` names another kept message of the same conversation."""

    id: str
    role: str
    parts: list[dict[str, Any]]
    created_at: int | None
    parent: str | None
    updated_at: int | None = None
    attachments: list[AttachmentRecord] = field(default_factory=list)


@dataclass(slots=True)
class ConversationRecord:
    """A conversation as it will be stored; ``current`` is the active leaf (or None)."""

    id: str
    title: str
    provider: str
    created_at: int | None
    updated_at: int | None
    current: str | None
    messages: list[MessageRecord]
