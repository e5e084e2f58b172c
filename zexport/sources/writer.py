"""Writing converted conversations into a private archive in the app's schema.

The writer owns what makes a stored tree valid for the reader: a depth-first
``order_index`` with siblings in creation order, ``sibling_ids`` and
``sibling_index`` as the app stores them, a parent always among the kept
messages, an active leaf that exists (else the latest leaf), and message ids
unique across the archive (exports reuse node names such as ``root`` in every
conversation; a clash is stored as ``<conversation id>:<node id>``).
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from typing import Any

import apsw
import orjson

from zexport.sources.appschema import APP_DDL, EXTRA_INDEXES
from zexport.sources.records import ConversationRecord, MessageRecord

COMMIT_EVERY = 2000  # conversations per transaction


class ArchiveWriter:
    """An archive being filled; :meth:`close` makes it complete (indexes, commit)."""

    def __init__(self, path: str, indexes: bool = True) -> None:
        self.path = path
        self.indexes = indexes  # False: a part to merge (zexport.sources.parallel)
        self.conn = apsw.Connection(path)
        self.conn.execute("PRAGMA journal_mode=OFF; PRAGMA synchronous=OFF;")
        self.conn.execute(APP_DDL)
        self.conn.execute("BEGIN")
        self.pending = 0
        self.count = 0
        self.seen: set[str] = set()  # conversation ids already written (ids only: small)

    def add(self, conv: ConversationRecord) -> bool:
        """Store ``conv``; False (nothing stored) if its id was already written."""
        if conv.id in self.seen:
            return False
        self.seen.add(conv.id)
        messages = ordered(conv.messages)
        kept = {m.id for m in messages}
        current = conv.current if conv.current in kept else latest_leaf(messages)
        children: dict[str | None, list[str]] = {}
        for m in messages:
            children.setdefault(m.parent, []).append(m.id)
        # Message ids are nearly always new (UUIDs): insert them as they are and rename
        # only when the primary key says one is taken (cheaper than a lookup each time).
        ids = {m.id: m.id for m in messages}
        rows, atts = _rows(conv.id, messages, children, ids)
        try:
            self.conn.executemany("INSERT INTO messages VALUES (?,?,?,?,?,?,?,?,?,?)", rows)
        except apsw.ConstraintError:
            self.conn.executemany("DELETE FROM messages WHERE id = ? AND conversation_id = ?",
                                  [(row[0], conv.id) for row in rows])
            ids = self._unique_ids(conv.id, [m.id for m in messages])
            rows, atts = _rows(conv.id, messages, children, ids)
            self.conn.executemany("INSERT INTO messages VALUES (?,?,?,?,?,?,?,?,?,?)", rows)
        self.conn.execute(
            "INSERT INTO conversations (id, title, provider, created_at, updated_at, synced_at,"
            " message_count, current_node_id, sync_error, sync_retry_count)"
            " VALUES (?, ?, ?, ?, ?, NULL, ?, ?, NULL, 0)",
            (conv.id, conv.title, conv.provider, conv.created_at, conv.updated_at, len(rows),
             ids[current] if current else None))
        if atts:
            self.conn.executemany("INSERT INTO attachments VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)",
                                  atts)
        self.count += 1
        self.pending += 1
        if self.pending >= COMMIT_EVERY:
            self.conn.execute("COMMIT; BEGIN")
            self.pending = 0
        return True

    def _unique_ids(self, conv_id: str, wanted: list[str]) -> dict[str, str]:
        taken: set[str] = set()
        for start in range(0, len(wanted), 500):
            chunk = wanted[start:start + 500]
            taken.update(row[0] for row in self.conn.execute(
                f"SELECT id FROM messages WHERE id IN ({','.join('?' * len(chunk))})", chunk))
        return {w: f"{conv_id}:{w}" if w in taken else w for w in wanted}

    def close(self) -> None:
        self.conn.execute("COMMIT")
        if self.indexes:
            self.conn.execute(EXTRA_INDEXES)
        self.conn.close()

    def merge(self, part: str) -> list[str]:
        """Append the archive ``part`` (later input, written by another writer).

        As if its conversations had been added here one by one, in order: a
        conversation id already stored is not merged (its id is returned), and
        a message id already stored is renamed in the part's conversation, with
        every reference to it (parent, siblings, active leaf, attachments).
        Runs of conversations with neither are copied by SQLite itself.
        """
        self.conn.execute("COMMIT")
        self.conn.execute("ATTACH ? AS part", (part,))
        try:
            self.conn.execute("BEGIN")
            clashing = {cid for (cid,) in self.conn.execute(
                "SELECT DISTINCT conversation_id FROM part.messages"
                " WHERE id IN (SELECT id FROM main.messages)")}
            repeated: list[str] = []
            run: list[int] = []  # rowids of the current run of plain conversations
            for rowid, cid in list(self.conn.execute(
                    "SELECT rowid, id FROM part.conversations ORDER BY rowid")):
                if cid in self.seen or cid in clashing:
                    self._copy_run(run)
                    run = []
                    if cid in self.seen:
                        repeated.append(cid)
                        continue
                    self._merge_renamed(cid)
                else:
                    run.append(rowid)
                self.seen.add(cid)
                self.count += 1
            self._copy_run(run)
            self.conn.execute("COMMIT")
        finally:
            self.conn.execute("DETACH part")
        self.conn.execute("BEGIN")
        self.pending = 0
        return repeated

    def _copy_run(self, rowids: list[int]) -> None:
        """Copy the part's conversations with these (consecutive) rowids, rows and all."""
        if not rowids:
            return
        convs = "SELECT id FROM part.conversations WHERE rowid BETWEEN ? AND ?"
        span = (rowids[0], rowids[-1])
        for statement in (  # one statement per call (APSW)
                "INSERT INTO main.conversations SELECT * FROM part.conversations"
                " WHERE rowid BETWEEN ? AND ? ORDER BY rowid",
                f"INSERT INTO main.messages SELECT * FROM part.messages"
                f" WHERE conversation_id IN ({convs}) ORDER BY rowid",
                f"INSERT INTO main.attachments SELECT * FROM part.attachments"
                f" WHERE message_id IN (SELECT id FROM part.messages"
                f" WHERE conversation_id IN ({convs})) ORDER BY rowid"):
            self.conn.execute(statement, span)

    def _merge_renamed(self, cid: str) -> None:
        """Copy one of the part's conversations whose message ids clash, renaming them."""
        msgs = list(self.conn.execute(
            "SELECT * FROM part.messages WHERE conversation_id = ? ORDER BY rowid", (cid,)))
        ids = self._unique_ids(cid, [m[0] for m in msgs])

        def new(old: str | None) -> str | None:
            return ids.get(old, old) if old is not None else None

        rows = [(ids[m[0]], *m[1:7], new(m[7]),
                 orjson.dumps([new(s) for s in orjson.loads(m[8])]).decode()
                 if m[8] else m[8], m[9]) for m in msgs]
        atts = [(ids[a[1]] + a[0][len(a[1]):] if a[0].startswith(a[1]) else a[0], ids[a[1]],
                 *a[2:]) for a in self.conn.execute(
            "SELECT a.* FROM part.attachments a JOIN part.messages m ON a.message_id = m.id"
            " WHERE m.conversation_id = ? ORDER BY a.rowid", (cid,))]
        for conv in self.conn.execute("SELECT * FROM part.conversations WHERE id = ?", (cid,)):
            self.conn.execute("INSERT INTO main.conversations VALUES (?,?,?,?,?,?,?,?,?,?)",
                              (*conv[:7], new(conv[7]), *conv[8:]))
        self.conn.executemany("INSERT INTO main.messages VALUES (?,?,?,?,?,?,?,?,?,?)", rows)
        if atts:
            self.conn.executemany(
                "INSERT INTO main.attachments VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)", atts)

    def abort(self) -> None:
        self.conn.close()
        if os.path.exists(self.path):
            os.remove(self.path)


Row = tuple[Any, ...]


def _rows(conv_id: str, messages: list[MessageRecord], children: dict[str | None, list[str]],
          ids: dict[str, str]) -> tuple[list[Row], list[Row]]:
    """The message and attachment rows of one conversation, its message ids as ``ids``."""
    rows: list[Row] = []
    atts: list[Row] = []
    dumps = orjson.dumps
    for index, m in enumerate(messages):
        sibs = children[m.parent]
        mid = ids[m.id]
        rows.append((mid, conv_id, m.role, dumps(m.parts).decode(), m.created_at,
                     m.updated_at, index, ids[m.parent] if m.parent else None,
                     dumps([ids[s] for s in sibs]).decode(), sibs.index(m.id)))
        used: set[str] = set()
        for a in m.attachments:
            key = a.key
            while key in used:
                key += "_"
            used.add(key)
            atts.append((f"{mid}-att-{key}", mid, a.type, a.file_id, a.original_url,
                         a.local_path, a.filename, a.mime_type, a.size, a.width, a.height,
                         m.created_at, m.created_at))
    return rows, atts


def _sort_key(m: MessageRecord, position: int) -> tuple[bool, int, int]:
    return (m.created_at is None, m.created_at or 0, position)


def ordered(messages: Iterable[MessageRecord]) -> list[MessageRecord]:
    """Depth first from the roots, siblings in creation order (then export order).

    A parent that is not a kept message, or a cycle, makes a message a root:
    every message is stored exactly once.
    """
    items = list(messages)
    by_id: dict[str, MessageRecord] = {}
    for m in items:
        by_id.setdefault(m.id, m)
    items = [m for m in items if by_id[m.id] is m]  # a repeated id: the first wins
    position = {m.id: i for i, m in enumerate(items)}
    for m in items:
        if m.parent is not None and (m.parent not in by_id or m.parent == m.id):
            m.parent = None
    kids: dict[str | None, list[MessageRecord]] = {}
    for m in items:
        kids.setdefault(m.parent, []).append(m)
    for group in kids.values():
        group.sort(key=lambda m: _sort_key(m, position[m.id]))
    out: list[MessageRecord] = []
    seen: set[str] = set()

    def walk(roots: list[MessageRecord]) -> None:
        stack = list(reversed(roots))
        while stack:
            m = stack.pop()
            if m.id in seen:
                continue
            seen.add(m.id)
            out.append(m)
            stack.extend(reversed(kids.get(m.id, [])))

    walk(kids.get(None, []))
    while len(out) < len(items):  # a cycle: cut it at its earliest message
        rest = [m for m in items if m.id not in seen]
        rest[0].parent = None
        kids.setdefault(None, []).append(rest[0])
        walk([rest[0]])
    return out


def latest_leaf(messages: list[MessageRecord]) -> str | None:
    """The newest message that has no child (the last one on a tie)."""
    parents = {m.parent for m in messages}
    leaves = [(m.created_at or 0, i, m.id) for i, m in enumerate(messages)
              if m.id not in parents]
    return max(leaves)[2] if leaves else None
