"""The export plan, on disk: every selected conversation, its folder, and whether to render it.

Why on disk: the controller must see every conversation to name them (two
"New chat" conversations must not get the same folder) and to decide what a
re-run may skip, but it must not hold 100k conversations in memory to do so
(BRIEF §8: controller memory flat in archive size). The plan is an SQLite
file in the run's private folder; SQLite does the grouping and the joins
with a bounded page cache, and Python streams rows through it.

Naming (BRIEF §4): every conversation gets its base name (date + sanitized
title, see :mod:`zexport.core.naming`); within a group of equal names (case- and
normalisation-insensitive) the earliest conversation, by created_at then id,
keeps the plain name and the others get `` (id8)``. The result depends only
on the selected conversations, never on worker count or scheduling.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from datetime import tzinfo

import apsw

from zexport.core.layouts import Layout
from zexport.core.naming import MAX_NAME_BYTES, NameSet, base_name, name_key, suffixed_name
from zexport.model import Attachment
from zexport.sources.archive import ConversationHead

_CHUNK = 2000


class _TakenNames:
    """The set of folder keys in use, kept in the plan file (see naming.suffixed_name)."""

    def __init__(self, conn: apsw.Connection) -> None:
        self.conn = conn

    def claim(self, key: str) -> bool:
        """Take ``key`` if it is free (one statement per suffixed name: a third of the
        sample's conversations share a "New chat"-like name with an earlier one)."""
        self.conn.execute("INSERT OR IGNORE INTO taken VALUES (?)", (key,))
        return self.conn.changes() == 1


class _InFolder:
    """The names in use inside one folder of a layout's tree: keys are whole paths, so
    only a place's last part is suffixed, and twins in other folders do not count."""

    def __init__(self, taken: NameSet, folder_key: str) -> None:
        self.taken = taken
        self.prefix = folder_key + "/" if folder_key else ""

    def claim(self, key: str) -> bool:
        return self.taken.claim(self.prefix + key)


class Plan:
    """One run's plan. ``path`` may be ``":memory:"`` (small plans, tests)."""

    def __init__(self, path: str) -> None:
        self.conn = apsw.Connection(path)
        # Small page caches (2 MB, and 1 MB for the temporary tables of grouping and
        # renaming): the plan is on disk so that controller memory stays flat in archive
        # size (BRIEF §8); 4 MB, full only on large archives, made the controller's peak
        # grow 21% from 10,000 to 100,000 conversations (now 14%).
        for pragma in ("journal_mode=OFF", "synchronous=OFF", "cache_size=-2000",
                       "temp.cache_size=-1000", "temp_store=FILE"):
            self.conn.execute(f"PRAGMA {pragma}").fetchall()
        self.conn.execute(
            "CREATE TABLE plan (seq INTEGER PRIMARY KEY, id TEXT NOT NULL, title TEXT,"
            " provider TEXT, created INT, updated INT, count INT, source TEXT,"
            " base TEXT NOT NULL, key TEXT NOT NULL, folder TEXT, todo INT NOT NULL DEFAULT 1);"
            "CREATE TABLE taken (key TEXT PRIMARY KEY) WITHOUT ROWID;"
        )
        self.total = 0
        self.todo = 0

    def close(self) -> None:
        """Close the file (the run folder, and the plan with it, is removed later)."""
        self.conn.close()

    def add(self, heads: Iterable[ConversationHead], tz: tzinfo,
            fingerprint: object = None, dated: bool = True, layout: Layout | None = None,
            extension: str = "", reserved: Iterable[str] = ()) -> int:
        """Record ``heads`` in export order with their base names; return how many.

        ``fingerprint``, when given, is called with each head and its result
        stored as the conversation's source fingerprint (for resume).
        ``dated``: names start with the creation day (see naming.base_name).
        ``layout`` (default: ``folder``, built with ``dated``) names places;
        ``extension`` is the format's and ``reserved`` the top-level names it writes.
        """
        reserved_keys = frozenset(name_key(name) for name in reserved)

        def rows() -> Iterator[tuple[object, ...]]:
            for h in heads:
                if layout is None:
                    base = base_name(h.title or "", h.created_at, tz, dated)
                else:
                    base = layout.base_place(h.title, h.provider, h.created_at, h.id, tz,
                                             extension, reserved_keys)
                source = fingerprint(h) if callable(fingerprint) else None
                yield (h.id, h.title, h.provider, h.created_at, h.updated_at,
                       h.message_count, source, base, name_key(base), base)

        with self.conn:  # folder = base until assign_folders() renames the few that collide
            self.conn.executemany(
                "INSERT INTO plan (id, title, provider, created, updated, count, source, base,"
                " key, folder) VALUES (?,?,?,?,?,?,?,?,?,?)", rows())
        self.total = _count(self.conn, "SELECT count(*) FROM plan")
        self.todo = self.total
        return int(self.total)

    def assign_folders(self, reserved: Iterable[str] = (), layout: Layout | None = None,
                       extension: str = "") -> None:
        """Give every conversation its folder (unique; see the module docstring).

        ``reserved`` are top-level names the format writes itself (the HTML
        format's ``index.html``): a conversation whose name is one of them gets a
        suffix, as if an earlier conversation held the name. Why: a title like
        "index.html" with no date (NULL created_at) took the folder ``index.html``
        and the format's finish step could not write its index there.

        With a ``layout``, a place is a path: only its last part is suffixed
        (within its byte cap: a note's name keeps room for its extension).
        """
        conn = self.conn
        cap = MAX_NAME_BYTES
        if layout is not None:
            reserved = layout.reserved_places(tuple(reserved), extension)
            cap = layout.last_part_cap(extension)
        reserved_keys = {name_key(name) for name in reserved}
        with conn:
            conn.execute("CREATE INDEX plan_key ON plan(key)")
            conn.execute("CREATE TEMP TABLE reserved (key TEXT PRIMARY KEY) WITHOUT ROWID")
            conn.executemany("INSERT OR IGNORE INTO reserved VALUES (?)",
                             ((key,) for key in reserved_keys))
            conn.execute("INSERT INTO taken SELECT DISTINCT key FROM plan")
            conn.execute("INSERT OR IGNORE INTO taken SELECT key FROM reserved")
            conn.execute("CREATE TEMP TABLE renames (seq INTEGER PRIMARY KEY, folder TEXT)")
            taken = _TakenNames(conn)
            previous_key: str | None = None
            renames: list[tuple[int, str]] = []
            # Only groups that share a name; the earliest member keeps it. Rows are
            # streamed, and new names go to another table (in chunks) while plan is read.
            for seq, cid, base, key in conn.execute(
                    "SELECT seq, id, base, key FROM plan WHERE key IN"
                    " (SELECT key FROM plan GROUP BY key HAVING count(*) > 1)"
                    " OR key IN (SELECT key FROM reserved)"
                    " ORDER BY key, created IS NULL, created, id"):
                if key != previous_key:
                    previous_key = key
                    if key not in reserved_keys:
                        continue  # the earliest keeps the name
                head, _, last = base.rpartition("/")
                used = _InFolder(taken, name_key(head)) if head else taken
                name = suffixed_name(last, cid, used, cap)
                renames.append((seq, f"{head}/{name}" if head else name))
                if len(renames) >= _CHUNK:
                    conn.executemany("INSERT INTO renames VALUES (?, ?)", renames)
                    renames = []
            conn.executemany("INSERT INTO renames VALUES (?, ?)", renames)
            conn.execute("UPDATE plan SET folder = r.folder FROM renames r WHERE r.seq = plan.seq")
            conn.execute("DROP TABLE renames")
            conn.execute("DROP TABLE reserved")

    def suffixed(self) -> int:
        """How many conversations got `` (id8)`` because another took their name."""
        return _count(self.conn, "SELECT count(*) FROM plan WHERE folder != base")

    def todo_attachments(self, index_path: str) -> Iterator[tuple[
            str, Attachment, int | None, bool, str]]:
        """``(conversation_id, attachment, size, has_source, provider)`` of each
        attachment of a conversation to render, conversation by conversation.

        ``index_path`` is an attachment side index (``build_attachment_index``);
        ``attachment`` carries what locating its file needs (id, file id, name,
        local path); ``has_source``: it names a URL or a provider file id to
        download from; ``provider``: the conversation's (whose credentials a
        download needs).
        """
        self.conn.execute("ATTACH DATABASE ? AS ai", (index_path,))
        try:
            for cid, aid, local, size, url, file_id, filename, provider in self.conn.execute(
                    "SELECT p.id, a.id, CAST(a.local_path AS BLOB), a.size, a.original_url,"
                    " a.file_id, a.filename, p.provider FROM todo t JOIN plan p ON p.seq = t.seq"
                    " JOIN ai.att a ON a.conversation_id = p.id ORDER BY p.seq"):
                att = Attachment(
                    id=_text(aid), message_id="", type="file", file_id=_text(file_id) or None,
                    original_url=None,
                    local_path=local.decode("utf-8", "replace") if local else None,
                    filename=_text(filename) or None, mime_type=None, size=None, width=None,
                    height=None, created_at=None)
                yield (_text(cid), att, size if isinstance(size, int) else None,
                       bool(url or file_id), provider if isinstance(provider, str) else "")
        finally:
            self.conn.execute("DETACH DATABASE ai")

    def folders(self) -> dict[str, str]:
        """``{id: folder}`` for everything (small plans and tests only)."""
        return {cid: folder for cid, folder in self.conn.execute(
            "SELECT id, folder FROM plan ORDER BY seq")}

    def rows(self) -> Iterator[tuple[str, str | None, str | None, int | None, int | None,
                                     int | None, str, str | None]]:
        """``(id, title, provider, created, updated, count, folder, source)`` in export order."""
        yield from self.conn.execute(
            "SELECT id, title, provider, created, updated, count, folder, source FROM plan"
            " ORDER BY seq")

    def skip(self, seqs: Iterable[int]) -> None:
        """Mark conversations (by position) as not needing rendering."""
        with self.conn:
            self.conn.executemany("UPDATE plan SET todo = 0 WHERE seq = ?",
                                  ((s,) for s in seqs))

    def freeze_todo(self) -> int:
        """Number the conversations to render 1..n (their position among the rendered)."""
        with self.conn:
            self.conn.execute("CREATE TABLE todo (pos INTEGER PRIMARY KEY, seq INT NOT NULL)")
            self.conn.execute(
                "INSERT INTO todo (seq) SELECT seq FROM plan WHERE todo = 1 ORDER BY seq")
        self.todo = _count(self.conn, "SELECT count(*) FROM todo")
        return self.todo

    def items(self, start: int, stop: int) -> list[tuple[str, str, str | None]]:
        """``(id, folder, source)`` of the rendered conversations at positions [start, stop)."""
        return [(cid, folder, source) for cid, folder, source in self.conn.execute(
            "SELECT p.id, p.folder, p.source FROM todo t JOIN plan p ON p.seq = t.seq"
            " WHERE t.pos > ? AND t.pos <= ? ORDER BY t.pos", (start, stop))]

    def todo_sizes(self) -> list[int]:
        """Message counts of the rendered conversations, in position order (batches are
        cut by them: a very long conversation is exported alone)."""
        return [int(n or 0) for n, in self.conn.execute(
            "SELECT p.count FROM todo t JOIN plan p ON p.seq = t.seq ORDER BY t.pos")]

    def with_manifest(self, manifest_path: str) -> Iterator[
            tuple[int, str, str, str | None, str | None, str | None, str | None, str | None,
                  str | None]]:
        """Each conversation beside what the manifest knows of it: ``(seq, id, folder,
        source, old_folder, old_source, old_options, old_renderer, old_retry)``."""
        self.conn.execute("ATTACH DATABASE ? AS man", (manifest_path,))
        try:
            yield from self.conn.execute(
                "SELECT p.seq, p.id, p.folder, p.source, d.folder, d.source, d.options,"
                " d.renderer, d.retry FROM plan p LEFT JOIN man.done d ON d.id = p.id"
                " ORDER BY p.seq")
        finally:
            self.conn.execute("DETACH DATABASE man")


def _count(conn: apsw.Connection, sql: str) -> int:
    row = conn.execute(sql).fetchone()
    return int(row[0]) if row else 0


def _text(value: object) -> str:
    """A side-index value as text (it holds what the archive holds, BLOBs included)."""
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return "" if value is None else str(value)


class FolderNamer:
    """Assigns folder names to a small set of conversations, in memory.

    A convenience over :class:`Plan` (which the controller uses
    on disk): feed conversations with :meth:`add`, then read :meth:`assign`.
    Within a group of equal names the earliest conversation (by created_at,
    then id) keeps the plain name; the others get `` (id8)``.
    """

    def __init__(self, tz: tzinfo, dated: bool = True) -> None:
        self._tz = tz
        self._dated = dated
        self._entries: list[tuple[str, str, int | None]] = []

    def add(self, conversation_id: str, title: str | None, created_at: int | None) -> None:
        """Record one conversation to be named."""
        self._entries.append((conversation_id, title or "", created_at))

    def base_name(self, title: str, created_at: int | None) -> str:
        """The name a conversation gets when no other one shares it."""
        return base_name(title, created_at, self._tz, self._dated)

    def assign(self) -> dict[str, str]:
        """Return ``{conversation_id: folder_name}`` for everything added."""
        plan = Plan(":memory:")
        try:
            plan.add((ConversationHead(cid, title, created, None, None)
                      for cid, title, created in self._entries), self._tz, dated=self._dated)
            plan.assign_folders()
            return plan.folders()
        finally:
            plan.close()
