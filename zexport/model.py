"""The typed conversation model handed to format plugins.

Plugins never see database rows: the reader turns rows into these objects,
repairing what it can (bad parts JSON, NULL times, missing parents) and
recording each repair in ``Conversation.warnings`` so the run report can list
it. Objects are plain slotted dataclasses: cheap to build on the hot path.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from zexport.textparts import Cite, MessageText, join_parts, markdown_citation
from zexport.textparts import Part as Part  # re-exported: formats type their parts with it

# Claude's conversations hang their first message under this parent, which no message
# has: it marks a root (BRIEF §3), not a lost parent.
CLAUDE_ROOT_PARENT = "00000000-0000-4000-8000-000000000000"


def parent_of(message: Message) -> str | None:
    """The id of the message's parent, or None for a root (no parent, or Claude's
    all-zero root parent)."""
    parent = message.parent_id
    return None if not parent or parent == CLAUDE_ROOT_PARENT else parent


@dataclass(slots=True)
class Attachment:
    """One attachment row, plus where the worker put it in the export.

    ``exported_path`` is the path relative to the folder of the conversation's
    file (``attachments/<name>`` in the default layout, ``attachments/<note
    name>/<name>`` with ``--layout note``: URL-encode it to link) once the file
    was copied; ``unavailable_reason``
    says why there is no file when there is none. ``download_name`` is the
    name the provider gave a downloaded file, used when the row has no
    ``filename`` (the row itself is never changed).
    """

    id: str
    message_id: str
    type: str
    file_id: str | None
    original_url: str | None
    local_path: str | None
    filename: str | None
    mime_type: str | None
    size: int | None
    width: int | None
    height: int | None
    created_at: int | None
    exported_path: str | None = None
    unavailable_reason: str | None = None
    download_name: str | None = None

    @property
    def is_image(self) -> bool:
        """True for images, which formats embed rather than link."""
        return self.type == "image" or (self.mime_type or "").startswith("image/")


@dataclass(slots=True, init=False)
class Message:
    """One message. ``parts`` is the parsed parts array; ``parts_raw`` the stored text.

    When the stored parts are not a valid JSON array, ``parts`` holds a single
    ``{"type": "text", "text": <raw>}`` part so nothing is lost, and
    ``parts_error`` says what was wrong.

    The reader hands over the stored parts as the bytes SQLite holds and
    ``parts_raw`` decodes them on first use: only the JSON format (and only
    for broken parts) reads it, and decoding every message's text for
    nothing was a sixth of the read cost.
    """

    id: str
    role: str
    parts: list[Part]
    _parts_raw: str | bytes
    parts_error: str | None
    created_at: int | None
    updated_at: int | None
    order_index: int
    parent_id: str | None
    sibling_ids: list[str] | None
    sibling_index: int | None
    attachments: list[Attachment]

    def __init__(self, id: str, role: str, parts: list[Part], parts_raw: str | bytes,
                 parts_error: str | None, created_at: int | None, updated_at: int | None,
                 order_index: int, parent_id: str | None, sibling_ids: list[str] | None,
                 sibling_index: int | None, attachments: list[Attachment] | None = None,
                 ) -> None:
        self.id, self.role, self.parts = id, role, parts
        self._parts_raw, self.parts_error = parts_raw, parts_error
        self.created_at, self.updated_at, self.order_index = created_at, updated_at, order_index
        self.parent_id, self.sibling_ids, self.sibling_index = parent_id, sibling_ids, sibling_index
        self.attachments = [] if attachments is None else attachments

    @property
    def parts_raw(self) -> str:
        """The stored parts column as text (bytes that are not UTF-8 replaced)."""
        raw = self._parts_raw
        if isinstance(raw, bytes):
            raw = self._parts_raw = raw.decode("utf-8", "replace")
        return raw

    def text(self, provider: str = "") -> str:
        """The message's text as one text, without its sources or other parts.

        The text parts are joined as :func:`zexport.textparts.join_parts` joins
        them (pass the conversation's ``provider``: Claude's text parts are
        separate paragraphs); use :meth:`Conversation.message_text` for the text
        with each source at its cut.
        """
        return join_parts(self.parts, provider, cite=None).text


@dataclass(slots=True)
class Conversation:
    """A conversation with every message of every branch, in ``order_index`` order.

    ``folder`` is the place the controller chose (unique, safe on every OS),
    relative to the output folder: the conversation's folder in the default
    layout, its note's path without the extension with ``--layout note``
    (:mod:`zexport.core.layouts`); formats write through ``RenderContext``.
    ``synced_at``, ``sync_error`` and ``sync_retry_count`` are the row's sync
    bookkeeping, kept for formats that write the whole row (the JSON format).
    """

    id: str
    title: str
    provider: str
    created_at: int | None
    updated_at: int | None
    message_count: int | None
    current_node_id: str | None
    messages: list[Message]
    folder: str
    warnings: list[str] = field(default_factory=list)
    synced_at: int | None = None
    sync_error: str | None = None
    sync_retry_count: int | None = None

    def message_text(self, message: Message,
                     cite: Cite | None = markdown_citation) -> MessageText:
        """``message``'s parts as one text with each source where the app cut the text.

        The one place every format gets a message's text from (see
        :mod:`zexport.textparts`): text parts joined as the pieces of one text,
        a numbered inline link at each citation (or what ``cite`` returns),
        other parts in their place, and the distinct sources, numbered.
        """
        return join_parts(message.parts, self.provider, cite)

    def by_id(self) -> dict[str, Message]:
        """Messages keyed by id."""
        return {m.id: m for m in self.messages}

    def active_branch(self) -> list[Message]:
        """Messages from the root to ``current_node_id`` (the branch the user last saw).

        Falls back, in order: when ``current_node_id`` is NULL or unknown, the
        leaf is the last message by ``order_index``; when no message has a
        parent at all (a flat conversation), every message is on the branch.
        A walk that meets a missing parent stops there: that message is the
        branch's first.
        """
        if not self.messages:
            return []
        index = self.by_id()
        if all(parent_of(m) is None for m in self.messages):
            return list(self.messages)
        leaf = index.get(self.current_node_id or "") or self.messages[-1]
        path: list[Message] = []
        seen: set[str] = set()
        node: Message | None = leaf
        while node is not None and node.id not in seen:
            seen.add(node.id)
            path.append(node)
            parent = parent_of(node)
            node = index.get(parent) if parent else None
        path.reverse()
        return path

    def tree_order(self) -> list[tuple[Message, int, int]]:
        """Every message depth-first, as ``(message, branch_no, branch_count)``.

        Children are ordered by ``sibling_index`` then ``order_index``, so each
        alternative is followed by its own continuation instead of being
        interleaved by time. ``branch_no``/``branch_count`` are 1-based;
        ``branch_count`` is 1 where a message has no alternative. Messages whose
        parent is missing start their own run, in ``order_index`` order.
        """
        index = self.by_id()
        children: dict[str, list[Message]] = {}
        roots: list[Message] = []
        for m in self.messages:
            parent = parent_of(m)
            if parent and parent in index:
                children.setdefault(parent, []).append(m)
            else:
                roots.append(m)
        for group in children.values():
            group.sort(key=lambda m: (m.sibling_index or 0, m.order_index))
        out: list[tuple[Message, int, int]] = []
        seen: set[str] = set()
        stack: list[tuple[Message, int, int]] = [(r, 1, 1) for r in reversed(roots)]
        while stack:
            item = stack.pop()
            msg = item[0]
            if msg.id in seen:
                continue
            seen.add(msg.id)
            out.append(item)
            kids = children.get(msg.id, [])
            for i in range(len(kids) - 1, -1, -1):
                stack.append((kids[i], i + 1, len(kids)))
        # A parent cycle leaves messages unreachable from any root: keep them.
        out.extend((m, 1, 1) for m in self.messages if m.id not in seen)
        return out
