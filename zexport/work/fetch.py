"""The worker's side of downloads: ask for a batch's files up front, never idle.

A worker used to render conversation after conversation, blocking on each
missing attachment. Instead, for each batch it:

1. asks, in one ``fetch_many`` frame, for every missing attachment of
   *every* conversation in the batch, before rendering anything (the
   controller downloads them concurrently and answers in ``fetched_many``
   frames, grouping the answers that are ready together);
2. renders the conversations that wait on nothing first, in batch order;
3. renders each remaining conversation as soon as its last answer arrives,
   reading answers between conversations and blocking only when every
   remaining conversation is waiting.

Output does not depend on this order: each conversation's files depend only
on its own rows and on the answers for its own attachments, and outcomes are
reported in batch order.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from zexport.core.attachment_files import AttachmentSources
from zexport.model import Attachment, Conversation

# send("fetch_many", **fields): sends one frame on the worker's control channel.
Send = Callable[..., None]
# Requests per fetch_many frame: a batch's, unless it holds thousands of attachments.
REQUESTS_PER_FRAME = 1000


class FetchPipeline:
    """Tracks a worker's outstanding ``fetch`` requests and their answers."""

    def __init__(self, send: Send, sources: AttachmentSources,
                 refused: dict[str, str] | None = None) -> None:
        self.send = send
        # The exporter's own: what is decided here (on disk, refused, missing) holds there.
        self.sources = sources
        # provider -> reason: requests the controller would refuse anyway (no credentials,
        # nothing cached; config ``refused_providers``) are answered here, no round trip.
        self.refused = dict(refused or {})
        self.next_req = 0
        self.pending: dict[int, tuple[str, Attachment]] = {}
        self.waiting: dict[str, int] = {}
        self.answers: dict[tuple[str, str], tuple[str | None, str | None]] = {}
        # conversation id -> its requests (req, attachment id): forget() drops exactly
        # those, instead of scanning every pending request and answer of the batch.
        self.requests_of: dict[str, list[tuple[int, str]]] = {}

    def request(self, conv: Conversation, outbox: list[dict[str, Any]]) -> int:
        """Add a request for each missing attachment of ``conv`` to ``outbox``; return
        how many."""
        if conv.provider in self.refused:
            return 0  # nothing to ask: result() answers with the reason
        count = 0
        for msg in conv.messages:
            for att in msg.attachments:
                if not self.sources.locate(conv.id, att).missing:
                    continue  # on disk, or refused: nothing a download would change
                self.next_req += 1
                self.pending[self.next_req] = (conv.id, att)
                self.requests_of.setdefault(conv.id, []).append((self.next_req, att.id))
                outbox.append({"req": self.next_req, "conversation_id": conv.id,
                               "attachment": _wire(att, conv.provider)})
                count += 1
        if count:
            self.waiting[conv.id] = self.waiting.get(conv.id, 0) + count
        return count

    def send_requests(self, outbox: list[dict[str, Any]]) -> None:
        """Send the requests in ``fetch_many`` frames (one per batch, as a rule: a
        frame per attachment cost the controller ~1 s on the 10k sample)."""
        for start in range(0, len(outbox), REQUESTS_PER_FRAME):
            self.send("fetch_many", items=outbox[start:start + REQUESTS_PER_FRAME])

    def deliver_many(self, msg: dict[str, Any]) -> None:
        """Take a ``fetched_many`` frame: each item is a ``fetched`` answer."""
        for item in msg["items"]:
            if isinstance(item, dict) and type(item.get("req")) is int:
                self.deliver(item)

    def deliver(self, msg: dict[str, Any]) -> None:
        """Take a ``fetched`` answer (unknown or repeated ``req`` numbers are ignored)."""
        entry = self.pending.pop(msg["req"], None)
        if entry is None:
            return
        conv_id, att = entry
        path = msg.get("path")
        if isinstance(path, str) and path:
            name = msg.get("name")
            if isinstance(name, str) and name and not att.filename:
                att.download_name = name  # provider metadata names an unnamed row
            self.answers[(conv_id, att.id)] = (path, None)
        else:
            error = msg.get("error")
            self.answers[(conv_id, att.id)] = (
                None, error if isinstance(error, str) and error else "download failed")
        left = self.waiting.get(conv_id, 0) - 1
        if left > 0:
            self.waiting[conv_id] = left
        else:
            self.waiting.pop(conv_id, None)

    def ready(self, conv: Conversation) -> bool:
        """True when no answer for ``conv`` is outstanding."""
        return conv.id not in self.waiting

    def result(self, conv: Conversation, att: Attachment) -> tuple[str | None, str | None]:
        """The exporter's fetcher: the answer already received for ``att`` (or, for a
        refused provider, its reason)."""
        answer = self.answers.pop((conv.id, att.id), None)
        if answer is not None:
            return answer
        reason = self.refused.get(conv.provider)
        return None, reason or "file vanished before export"

    def forget(self, conv: Conversation) -> None:
        """Drop what is left for ``conv`` (answers it did not use, cancelled waits)."""
        self.waiting.pop(conv.id, None)
        self.sources.forget(conv.id)
        for req, att_id in self.requests_of.pop(conv.id, ()):
            self.pending.pop(req, None)
            self.answers.pop((conv.id, att_id), None)

    def schedule(self, conversations: list[Conversation],
                 wait: Callable[[], bool]) -> Iterator[Conversation]:
        """Request everything, then yield conversations as they become ready.

        ``wait()`` blocks briefly reading the control channel (which calls
        :meth:`deliver`) and returns False to give up (cancel): the
        conversations still waiting are then not yielded.
        """
        outbox: list[dict[str, Any]] = []
        for conv in conversations:
            self.request(conv, outbox)
        self.send_requests(outbox)
        left = list(conversations)
        while left:
            # One pass in batch order yields every ready conversation (answers read
            # while they render count in the same pass); block only when none was.
            still: list[Conversation] = []
            for conv in left:
                if self.ready(conv):
                    yield conv
                else:
                    still.append(conv)
            if len(still) == len(left) and not wait():
                for conv in still:
                    self.forget(conv)
                return
            left = still


def _wire(att: Attachment, provider: str) -> dict[str, Any]:
    """The ``attachment`` map of a ``fetch`` frame: archive fields only, no secrets."""
    return {
        "id": att.id, "provider": provider, "file_id": att.file_id,
        "original_url": att.original_url, "filename": att.filename,
        "mime_type": att.mime_type, "message_id": att.message_id,
        "local_path": att.local_path,
    }
