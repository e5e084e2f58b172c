"""A worker's reader: whole conversations of a batch, in one read transaction.

Why batched: one query for a batch's conversations, one (or two) for their
messages, one for their attachments, instead of three per conversation.
Messages come through the message runs (rowid ranges) when the archive has
no index of its own, attachments from the attachment copy: side files built
in parts (:mod:`.index_parts`), all attached to the archive connection.
"""

from __future__ import annotations

import logging
import operator
import os
from collections.abc import Iterable, Sequence
from typing import Any

import apsw

from zexport.model import Attachment, Conversation, Message
from zexport.sources.archive.attachment_copy import ATTACHMENT_COLUMNS
from zexport.sources.archive.index_parts import MIN_ROWID
from zexport.sources.archive.opening import for_encoding, is_utf8, open_archive
from zexport.sources.archive.repair import as_int, as_text, message_from_row, note_tree_faults

log = logging.getLogger(__name__)
_MESSAGE_ORDER = operator.attrgetter("order_index", "id")  # C-level sort key


class BatchReader:
    """A worker's reader: fetches whole conversations for a batch of ids."""

    def __init__(self, archive_path: str, indexes: Sequence[str] = ()) -> None:
        self.conn = open_archive(archive_path)
        self.archive_dir = os.path.dirname(os.path.abspath(archive_path))
        self.indexes: list[str] | None = list(dict.fromkeys(indexes))  # None: attached
        self.scanned_rowid: int | None = None  # set when the message runs are usable
        self.utf8 = is_utf8(self.conn)  # the side files are UTF-16 too when the archive is
        self._conversation_select = for_encoding(_conversation_select(self.conn), self.utf8)
        self._message_select = for_encoding(_MESSAGE_SELECT, self.utf8)
        self._tolerant_select = for_encoding(_TOLERANT_MESSAGE_SELECT, self.utf8)
        self._indexed_select = self._tolerant_indexed_select = ""
        self._attachment_select = ""  # empty: no attachment copy to read

    def _attach_indexes(self) -> bool:
        """Attach the side files to the archive connection (once); whether the message
        runs are usable.

        Attached, not opened apart: the join to ``messages`` by rowid then runs
        inside SQLite, in the batch's one read transaction. Each kind (runs,
        attachment copy) is used only when its parts cover every rowid without
        a gap (:mod:`.index_parts`); else messages are read by column and
        attachments not at all, as when their index could not be built.
        """
        if self.indexes is None:
            return self.scanned_rowid is not None
        paths, self.indexes = self.indexes, None  # tried once
        built: dict[str, list[tuple[int, int, str]]] = {"runs": [], "att": []}
        for number, path in enumerate(paths):
            if not os.path.isfile(path):  # absent: the archive has its own index, or none
                continue
            schema = f"ix{number}"
            try:
                self.conn.execute(f"ATTACH DATABASE ? AS {schema}", (path,))
                self.conn.execute(f"PRAGMA {schema}.cache_size ="
                                  f" -{max(256, 4096 // len(paths))}").fetchall()
                rows = self.conn.execute(f"SELECT what, first, stop FROM {schema}.built")
                for what, first, stop in rows:
                    if what in built and type(first) is int and type(stop) is int:
                        built[what].append((first, stop, schema))
            except apsw.Error as exc:  # reading by column is slow, never wrong
                log.warning("side index %s unusable (%s)", path, exc)
        runs, last = _covering(built["runs"])
        if runs:
            source = _union(runs, "conversation_id, first, stop", "runs")
            self._indexed_select = for_encoding(_BY_ROWID.format(
                _MESSAGE_COLUMNS, source), self.utf8)
            self._tolerant_indexed_select = for_encoding(_BY_ROWID.format(
                _TOLERANT_MESSAGE_COLUMNS, source), self.utf8)
            self.scanned_rowid = last - 1
        att, _ = _covering(built["att"])
        if att:
            self._attachment_select = for_encoding(
                ATTACHMENT_COLUMNS + _union(att, "*", "att"), self.utf8)
        elif paths:
            log.warning("no complete attachment copy in %s: attachments are not read", paths)
        return self.scanned_rowid is not None

    def _message_rows(self, ids: list[str], marks: str, tolerant: bool, indexed_reads: bool,
                      ) -> list[Iterable[Sequence[Any]]]:
        """A batch's message rows: through the message runs when there are some (then
        the rows inserted after they were made: a rowid range, cheap), else by
        ``conversation_id`` (the archive's own index, or a scan)."""
        select = self._tolerant_select if tolerant else self._message_select
        by_column = select + f" WHERE conversation_id IN ({marks})"
        if not indexed_reads:
            return [self.conn.execute(by_column, ids)]
        return [self.conn.execute(
                    (self._tolerant_indexed_select if tolerant else self._indexed_select)
                    + f" WHERE s.conversation_id IN ({marks})"
                    " AND m.conversation_id = s.conversation_id", ids),
                self.conn.execute(by_column + " AND rowid > ?", [*ids, self.scanned_rowid])]

    def close(self) -> None:
        """Close the archive connection (and with it the side files)."""
        self.conn.close()

    def read(self, items: Sequence[tuple[str, str]],
             tolerant: bool = False) -> list[Conversation]:
        """Load ``[(conversation_id, folder)]`` in one read transaction.

        Conversations missing from the archive (deleted since listing) are
        left out; the caller reports them. ``tolerant`` (the slow path, after
        a read failed) reads the messages' text columns as bytes and decodes
        them with replacement, so bytes that are not UTF-8 stored as TEXT
        (apsw raises on them) cost a few characters, not the conversation.

        With the message index, messages are read by rowid range, keeping
        only the rows that still belong to their conversation, plus those
        inserted after the index was made: a message the app deleted is
        gone, one it re-synced (deleted and inserted again) is read where it
        is now. (One the app adds under a rowid the index saw is not read:
        SQLite hands out such rowids only after the table's last rows are
        deleted. It is as if the app had written it just after the batch.)
        """
        ids = [cid for cid, _ in items]
        marks = ",".join("?" * len(ids))
        conversations: dict[str, Conversation] = {}
        folders = dict(items)
        indexed_reads = self._attach_indexes()  # (not inside a transaction)
        with self.conn:  # one snapshot for the batch
            for row in self.conn.execute(self._conversation_select + f" ({marks})", ids):
                cid, title, provider, created, updated, count, current, *sync = row
                conv = Conversation(
                    id=cid, title=as_text(title),
                    provider=as_text(provider), created_at=as_int(created),
                    updated_at=as_int(updated), message_count=as_int(count),
                    current_node_id=None if current is None else as_text(current),
                    messages=[], folder=folders[cid], synced_at=as_int(sync[0]),
                    sync_error=None if sync[1] is None else as_text(sync[1]),
                    sync_retry_count=as_int(sync[2]),
                )
                if not conv.title:
                    conv.warnings.append("conversation has no title")
                if conv.created_at is None or conv.updated_at is None:
                    conv.warnings.append("conversation has NULL timestamps")
                conversations[cid] = conv
            messages: dict[str, Message] = {}
            for rows in self._message_rows(ids, marks, tolerant, indexed_reads):
                self._add_messages(rows, conversations, messages, tolerant)
        if self._attachment_select:
            # Text read as bytes and decoded here: the index is a plain SQL copy, and
            # bytes that are not UTF-8 cost a replacement character, never the batch.
            for row in self.conn.execute(self._attachment_select + f" WHERE conversation_id IN"
                                         f" ({marks}) ORDER BY conversation_id, id", ids):
                aid, mid, kind, file_id, url, local, name, mime = (
                    None if v is None else as_text(v) if type(v) is bytes else str(v)
                    for v in row[:8])
                owner = messages.get(mid or "")
                if owner is not None:
                    owner.attachments.append(Attachment(
                        aid or "", mid or "", kind or "", file_id, url, local, name, mime,
                        *row[8:]))
        for conv in conversations.values():
            # Sorting here is cheaper than asking SQLite to sort the whole batch.
            conv.messages.sort(key=_MESSAGE_ORDER)
            note_tree_faults(conv)
        return [conversations[cid] for cid in ids if cid in conversations]

    @staticmethod
    def _add_messages(rows: Iterable[Sequence[Any]], conversations: dict[str, Conversation],
                      messages: dict[str, Message], tolerant: bool) -> None:
        """Give each row's message to its conversation (if that is in the batch)."""
        if tolerant:
            rows = (tuple(as_text(v) if type(v) is bytes else v for v in row) for row in rows)
        owner_of = conversations.get
        for row in rows:  # once per message of the archive: names bound locally
            owner_conv = owner_of(row[0])
            if owner_conv is not None:
                msg = message_from_row(row, owner_conv)
                owner_conv.messages.append(msg)
                messages[msg.id] = msg


# Text as bytes: a provider or current_node_id that is not UTF-8 must not fail the
# conversation (apsw would raise on it). Completed with the ids' placeholders.
_CONVERSATION_SELECT = (
    "SELECT id, CAST(title AS BLOB), CAST(provider AS BLOB), created_at, updated_at,"
    " message_count, CAST(current_node_id AS BLOB), {synced_at}, {sync_error},"
    " {sync_retry_count} FROM conversations WHERE id IN"
)
_SYNC_COLUMNS = {"synced_at": "synced_at", "sync_error": "CAST(sync_error AS BLOB)",
                 "sync_retry_count": "sync_retry_count"}


def _conversation_select(conn: apsw.Connection) -> str:
    """The conversations query, reading NULL for sync columns an archive lacks.

    The app's migrations create them, but zexport requires only the columns it
    needs to export (``REQUIRED_TABLES``): an archive without them still exports.
    """
    have = {c[1] for c in conn.execute("PRAGMA table_info(conversations)")}
    return _CONVERSATION_SELECT.format(
        **{name: expr if name in have else "NULL" for name, expr in _SYNC_COLUMNS.items()})


# A message row: its conversation, then the columns message_from_row() reads. Completed with
# " WHERE conversation_id IN (...)" (a scan without the archive's own index).
_MESSAGE_COLUMNS = ("id, role, CAST(parts AS BLOB), created_at, updated_at, order_index,"
                    " parent_id, sibling_ids, sibling_index")
# Text as bytes, for the tolerant re-read of a batch with text that is not UTF-8.
_TOLERANT_MESSAGE_COLUMNS = (
    "CAST(id AS BLOB), CAST(role AS BLOB), CAST(parts AS BLOB), created_at, updated_at,"
    " order_index, CAST(parent_id AS BLOB), CAST(sibling_ids AS BLOB), sibling_index")
_MESSAGE_SELECT = f"SELECT conversation_id, {_MESSAGE_COLUMNS} FROM messages"
_TOLERANT_MESSAGE_SELECT = f"SELECT conversation_id, {_TOLERANT_MESSAGE_COLUMNS} FROM messages"
# Through the message runs (index_parts), by rowid range; completed with
# " WHERE s.conversation_id IN (...) AND m.conversation_id = s.conversation_id" (a
# rowid may since hold another conversation's message). CROSS JOIN: runs first.
_BY_ROWID = ("SELECT m.conversation_id, {} FROM {} s CROSS JOIN messages m"
             " ON m.rowid >= s.first AND m.rowid < s.stop")


def _covering(parts: list[tuple[int, int, str]]) -> tuple[list[str], int]:
    """The schemas of parts that together cover every rowid from the first one
    (:data:`MIN_ROWID`) without a gap, and where they stop; none if they do not."""
    parts = sorted(parts)
    if not parts or parts[0][0] != MIN_ROWID or any(
            later[0] != earlier[1] for earlier, later in zip(parts, parts[1:], strict=False)):
        return [], 0
    return [schema for _, _, schema in parts], parts[-1][1]


def _union(schemas: list[str], columns: str, table: str) -> str:
    """One table, or every part's as one (SQLite pushes the WHERE into each arm)."""
    if len(schemas) == 1:
        return f"{schemas[0]}.{table}"
    return "(" + " UNION ALL ".join(f"SELECT {columns} FROM {schema}.{table}"
                                    for schema in schemas) + ")"
