"""Helpers for testing a format plugin without building zexport's internals by hand.

``render(fmt, conversation)`` calls the format as a worker would, with its
options validated by the format itself, in a real folder; ``conversation``
and ``message`` build the typed model with sensible defaults. They are part
of the public API (docs/plugins.md, "Testing a plugin").
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Mapping, Sequence
from datetime import timezone, tzinfo
from typing import Any

from zexport.formats.base import Format, RenderContext
from zexport.model import Attachment, Conversation, Message, Part

__all__ = ["conversation", "message", "render", "render_context"]


def message(id: str, role: str, text: str | None = None, *, parts: Sequence[Part] | None = None,
            parent_id: str | None = None, created_at: int | None = None,
            order_index: int = 0, attachments: Sequence[Attachment] = ()) -> Message:
    """A message of one text part (``text``), or of the given ``parts``."""
    stored = list(parts) if parts is not None else [{"type": "text", "text": text or ""}]
    return Message(id=id, role=role, parts=stored, parts_raw="", parts_error=None,
                   created_at=created_at, updated_at=None, order_index=order_index,
                   parent_id=parent_id, sibling_ids=None, sibling_index=None,
                   attachments=list(attachments))


def conversation(messages: Sequence[Message], *, id: str = "c1", title: str = "Title",
                 provider: str = "chatgpt", created_at: int | None = 1_700_000_000,
                 updated_at: int | None = 1_700_000_000,
                 current_node_id: str | None = None) -> Conversation:
    """A conversation; the active branch ends at the last message unless told otherwise."""
    leaf = current_node_id or (messages[-1].id if messages else None)
    return Conversation(id=id, title=title, provider=provider, created_at=created_at,
                        updated_at=updated_at, message_count=len(messages),
                        current_node_id=leaf, messages=list(messages), folder=title)


def render_context(fmt: Format, options: Mapping[str, str] | None = None, *,
                   out_dir: str | None = None, folder: str = "conversation",
                   tz: tzinfo = timezone.utc, branches: str = "active",
                   exported_at: str = "2024-01-01T00:00:00Z") -> RenderContext:
    """A context as a worker makes it: options parsed by ``fmt``, a real folder to write in
    (a new temporary one unless ``out_dir`` is given)."""
    root = out_dir or tempfile.mkdtemp(prefix="zexport-test-")
    path = os.path.join(root, folder)
    os.makedirs(path, exist_ok=True)
    return RenderContext(out_dir=root, folder=path, options=fmt.parse_options(options or {}),
                         file=os.path.join(path, f"conversation.{fmt.extension}"),
                         tz=tz, branches=branches, exported_at=exported_at,
                         format_name=fmt.name)


def render(fmt: Format, conv: Conversation, options: Mapping[str, str] | None = None,
           **context: Any) -> bytes | str | None:
    """What ``fmt`` renders for ``conv`` (``context``: see :func:`render_context`)."""
    return fmt.render(conv, render_context(fmt, options, **context))
