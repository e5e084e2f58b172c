"""zexport-jsonl: the whole export as one JSONL file (OpenAI chat fine-tuning shape).

A zexport format plugin (entry point ``jsonl`` in the ``zexport`` group)
written against zexport's public API only. It shows the "one file for the
whole export" pattern: ``files_per_conversation = False`` and ``render``
returns the conversation's line, which zexport keeps as a record (workers
never touch the shared file); ``finish`` streams the records, in export
order, into ``conversations.jsonl``, atomically.
"""

from __future__ import annotations

import json
from typing import Any

from zexport import Conversation, Format, Option, RenderContext, RunContext, hookimpl

__version__ = "0.1.0"

OUTPUT = "conversations.jsonl"
ROLES = ("system", "user", "assistant")


def _count(text: str) -> int:
    value = int(text)
    if value < 0:
        raise ValueError(f"expected a count of 0 or more, got {value}")
    return value


class JsonlFormat(Format):
    """One line per conversation in ``conversations.jsonl``."""

    name = "jsonl"
    extension = "jsonl"
    version = "2"  # 2: content is the one text, each source a numbered link at its cut
    description = "One conversations.jsonl, OpenAI chat fine-tuning shape (active branch)"
    files_per_conversation = False
    options = {
        "metadata": Option.flag("add id, title and provider to each line"),
        "min_messages": Option("skip conversations with fewer messages", default=2,
                               parse=_count),
    }

    def render(self, conversation: Conversation, ctx: RenderContext) -> bytes | None:
        """The conversation's line (with its newline), or None to leave it out."""
        messages: list[dict[str, Any]] = []
        for msg in conversation.active_branch():
            # The message's text parts are pieces of one text: joined by zexport's
            # shared join, each source a Markdown link where the app cut the text.
            content = conversation.message_text(msg).text.strip()
            if not content:
                continue
            role = msg.role if msg.role in ROLES else "user"
            messages.append({"role": role, "content": content})
        if len(messages) < int(ctx.options.get("min_messages", 2)):
            return None
        line: dict[str, Any] = {"messages": messages}
        if ctx.options.get("metadata"):
            line = {"id": conversation.id, "title": conversation.title,
                    "provider": conversation.provider, **line}
        return json.dumps(line, ensure_ascii=False, separators=(",", ":")).encode() + b"\n"

    def finish(self, run: RunContext) -> None:
        """Concatenate every record, in export order, into conversations.jsonl atomically."""
        with run.open(OUTPUT) as fh:
            for record in run.records():
                fh.write(record.data)


@hookimpl
def zexport_formats() -> list[Format]:
    """Register the jsonl format."""
    return [JsonlFormat()]
