"""Reading an OwnYourChat archive through APSW, read-only and in batches.

Why this shape:
- The archive is opened with ``SQLITE_OPEN_READONLY`` (never ``CREATE``), so a
  typo in ``--db`` cannot create an empty database, and zexport cannot alter
  the app's file (no WAL switch, no ANALYZE).
- A busy timeout lets us read while the app writes.
- Reads are batched: one query for a batch's conversations, one for their
  messages, one for their attachments. The app's archives have no index on
  ``messages.conversation_id`` nor on ``attachments.message_id``, so a query by
  conversation would scan a whole table per batch (quadratic in the archive).
  The controller therefore writes two private side files once per run, never
  touching the archive: the message rowids of each conversation
  (:func:`build_message_index`, one scan of the messages table), which workers
  join to the archive to read messages by rowid, and a copy of the attachment
  rows keyed by conversation (:func:`build_attachment_index`).
"""

from __future__ import annotations

import contextlib
import functools
import logging
import operator
import os
import re
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import apsw
import orjson

from zexport.errors import ArchiveError
from zexport.model import Attachment, Conversation, Message, parent_of
from zexport.schema import REQUIRED_TABLES

BUSY_TIMEOUT_MS = 10_000
log = logging.getLogger("zexport.sources.archive")


def open_archive(path: str) -> apsw.Connection:
    """Open ``path`` read-only and check that it is an OwnYourChat archive.

    Raises :class:`ArchiveError` with one clear sentence otherwise; creates nothing.
    """
    if not os.path.exists(path):
        raise ArchiveError(f"archive not found: {path}")
    if not os.path.isfile(path):
        raise ArchiveError(f"archive is not a file: {path}")
    try:
        conn = apsw.Connection(path, flags=apsw.SQLITE_OPEN_READONLY)
        conn.setbusytimeout(BUSY_TIMEOUT_MS)
        tables = {
            row[0]: {c[1] for c in conn.execute(f"PRAGMA table_info({row[0]})")}
            for row in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")
        }
    except apsw.NotADBError:
        raise ArchiveError(f"not an SQLite database: {path}") from None
    except apsw.CantOpenError as exc:
        raise ArchiveError(_cannot_open(path, exc)) from None
    except apsw.Error as exc:
        raise ArchiveError(f"cannot read archive {path}: {exc}") from None
    for table, columns in REQUIRED_TABLES.items():
        if table not in tables:
            conn.close()
            raise ArchiveError(
                f"not an OwnYourChat archive (no '{table}' table): {path}"
            )
        missing = [c for c in columns if c not in tables[table]]
        if missing:
            conn.close()
            raise ArchiveError(
                f"not an OwnYourChat archive ('{table}' lacks {', '.join(missing)}): {path}"
            )
    return conn


def _cannot_open(path: str, exc: apsw.Error) -> str:
    """Why SQLite could not open an archive, and what to do, in one sentence.

    The app keeps its archive in WAL mode; reading one needs its ``-shm``
    file, which SQLite creates beside it, so in a folder zexport may not
    write (a read-only mount, another user's folder) SQLite only says
    "unable to open database file".
    """
    try:
        with open(path, "rb") as fh:
            header = fh.read(20)
    except OSError:
        header = b""
    folder = os.path.dirname(os.path.abspath(path))
    if len(header) == 20 and header[18] == 2 and header[19] == 2:  # WAL mode
        return (f"cannot read archive {path}: it is in WAL mode and SQLite cannot create"
                f" its -shm file in {folder} (read-only?); copy the archive (with its -wal"
                " file, if there is one) to a folder you can write and export the copy, or"
                " run zexport as a user who can write to that folder")
    return f"cannot read archive {path}: {exc}"


@dataclass(frozen=True, slots=True)
class Selection:
    """Which conversations to export (the ``run`` filters)."""

    providers: tuple[str, ...] = ()
    since: int | None = None
    until: int | None = None
    ids: tuple[str, ...] = ()
    title: str | None = None  # a regular expression searched in titles, ignoring case

    def title_matches(self, title: str) -> bool:
        """Whether ``title`` is selected by ``title`` (always, without a pattern).

        In Python, not SQL: titles may be bytes that are not UTF-8, which are
        matched as they are shown (with replacement characters).
        """
        return self.title is None or _title_pattern(self.title).search(title) is not None

    def where(self, addressable: bool = True) -> tuple[str, list[Any]]:
        """SQL ``WHERE`` clause and bindings for this selection.

        Only rows whose id is text, by default (``addressable=False``: only the others).
        Why: ``id TEXT PRIMARY KEY`` admits NULL and BLOB ids, and everything
        downstream (the plan, the wire, the manifest, the workers' ``id IN (...)``)
        addresses a conversation by its text id: a NULL id stopped the whole run, a
        BLOB one was silently never exported. See :func:`unaddressable_conversations`.
        """
        clauses = ["typeof(id) = 'text'" if addressable else "typeof(id) != 'text'"]
        args: list[Any] = []
        if self.providers:
            clauses.append(f"provider IN ({','.join('?' * len(self.providers))})")
            args.extend(self.providers)
        if self.ids:
            clauses.append(f"id IN ({','.join('?' * len(self.ids))})")
            args.extend(self.ids)
        if self.since is not None:
            clauses.append("COALESCE(updated_at, created_at) >= ?")
            args.append(self.since)
        if self.until is not None:
            clauses.append("COALESCE(created_at, updated_at) < ?")
            args.append(self.until)
        return " WHERE " + " AND ".join(clauses), args


class ConversationHead(NamedTuple):
    """What the controller needs of a conversation to name and schedule it.

    A named tuple, not a frozen dataclass: one is made per conversation while
    planning, on the path to the first file, and a frozen dataclass takes 1 us
    to build (``object.__setattr__`` per field) against 0.3 us.
    """

    id: str
    title: str | None
    created_at: int | None
    updated_at: int | None
    message_count: int | None
    provider: str | None = None
    current_node_id: str | None = None


def list_conversations(conn: apsw.Connection, selection: Selection,
                       rejected: list[tuple[str, str]] | None = None,
                       ) -> Iterator[ConversationHead]:
    """Every selected conversation, oldest first (then by id): the export order.

    A row whose id is text that is not valid UTF-8 cannot be addressed (nor even
    read as text): it is left out and, when ``rejected`` is given, appended to it
    as ``(quoted id, title)``, like :func:`unaddressable_conversations`.
    """
    where, args = selection.where()
    # Dirty rows must not stop the listing: text is read as bytes (a BLOB or bytes that
    # are not UTF-8 would otherwise raise, and stop the whole run), times may be text
    # or REAL.
    sql = (
        "SELECT CAST(id AS BLOB), CAST(title AS BLOB), created_at, updated_at, message_count,"
        f" CAST(provider AS BLOB), CAST(current_node_id AS BLOB) FROM conversations{where}"
        " ORDER BY created_at IS NULL, created_at, id"
    )
    for raw_id, title, created, updated, count, provider, current in conn.execute(
            for_encoding(sql, is_utf8(conn)), args):
        text = title.decode("utf-8", "replace") if type(title) is bytes else _text(title)
        if not selection.title_matches(text):
            continue
        try:
            cid = raw_id if type(raw_id) is str else raw_id.decode("utf-8")
        except UnicodeDecodeError:
            if rejected is not None:
                rejected.append((f"X'{raw_id.hex().upper()}'", text))
            continue
        yield ConversationHead(cid, text, created if type(created) is int else _int(created),
                               updated if type(updated) is int else _int(updated),
                               count if type(count) is int else _int(count),
                               None if provider is None else _text(provider),
                               None if current is None else _text(current))


def unaddressable_conversations(conn: apsw.Connection,
                                selection: Selection) -> list[tuple[str, str]]:
    """``(quoted id, title)`` of selected rows whose id is not text (NULL or a BLOB).

    They cannot be exported (nothing can address them, and no message can point at
    a NULL id); the controller reports each as a failed conversation. The id is
    given as SQL ``quote()`` spells it (``NULL``, ``X'62'``) so the report names it.
    """
    where, args = selection.where(addressable=False)
    rows = [(str(quoted), _text(title)) for quoted, title in conn.execute(for_encoding(
        f"SELECT quote(id), CAST(title AS BLOB) FROM conversations{where}"
        " ORDER BY created_at IS NULL, created_at", is_utf8(conn)), args)]
    return [(quoted, title) for quoted, title in rows if selection.title_matches(title)]


@functools.lru_cache(maxsize=8)
def _title_pattern(pattern: str) -> re.Pattern[str]:
    return re.compile(pattern, re.IGNORECASE)


_AS_BLOB = re.compile(r"CAST\(([\w.]+) AS BLOB\)")


def text_encoding(conn: apsw.Connection) -> str:
    """How a database stores its text: ``UTF-8``, ``UTF-16le`` or ``UTF-16be``."""
    row = conn.execute("PRAGMA encoding").fetchone()
    return "UTF-8" if row is None else str(row[0])


def is_utf8(conn: apsw.Connection) -> bool:
    """Whether a database stores its text as UTF-8 (else UTF-16)."""
    return text_encoding(conn).upper() == "UTF-8"


def for_encoding(sql: str, utf8: bool) -> str:
    """``sql`` as it must be run on a database whose text is UTF-8 (``utf8``) or not.

    Why: text columns are read as bytes (``CAST(col AS BLOB)``) so that bytes that
    are not UTF-8 stored as TEXT cost a replacement character instead of an apsw
    error; but those bytes are in the database's encoding, and in a UTF-16 archive
    decoding them as UTF-8 garbled every title and message. SQLite itself converts
    UTF-16 text to UTF-8 when it is read as text, so there the casts are dropped.
    """
    return sql if utf8 else _AS_BLOB.sub(r"\1", sql)


_ATTACHMENT_TEXT_COLUMNS = ("id", "message_id", "type", "file_id", "original_url", "local_path",
                            "filename", "mime_type")
# What a worker reads from the side index: the text columns as bytes (see BatchReader.read).
_ATTACHMENT_SELECT = ("SELECT " + ", ".join(f"CAST({c} AS BLOB)" for c in _ATTACHMENT_TEXT_COLUMNS)
                      + ", size, width, height, created_at FROM att")


def _open_side(archive_path: str, target: str) -> tuple[apsw.Connection, bool]:
    """A new side file at ``target``, with the archive attached read-only as ``src``.

    Returns the connection and whether the archive's text is UTF-8. The side
    file takes the archive's text encoding: SQLite attaches only databases of
    the main one's encoding (a worker attaches the message index to its
    archive connection; a UTF-16 archive's attachments were otherwise lost).
    """
    source = Path(os.path.abspath(archive_path)).as_uri() + "?mode=ro"
    probe = apsw.Connection(source, flags=apsw.SQLITE_OPEN_READONLY | apsw.SQLITE_OPEN_URI)
    try:
        probe.setbusytimeout(BUSY_TIMEOUT_MS)
        encoding = text_encoding(probe)
    finally:
        probe.close()
    side = apsw.Connection(target, flags=apsw.SQLITE_OPEN_READWRITE | apsw.SQLITE_OPEN_CREATE
                           | apsw.SQLITE_OPEN_URI)
    try:
        side.setbusytimeout(BUSY_TIMEOUT_MS)
        side.execute("PRAGMA journal_mode=OFF").fetchall()
        side.execute("PRAGMA synchronous=OFF").fetchall()
        utf8 = encoding.upper() == "UTF-8"
        if not utf8:  # the very one: a UTF-16be archive does not attach to a UTF-16le file
            side.execute(f"PRAGMA encoding = '{encoding}'").fetchall()
        side.execute("CREATE TABLE side_format (version INTEGER)")  # fixes the encoding now
        # The archive, read-only, by URI: the path is percent-encoded, so no character
        # in it can be taken for a URI parameter.
        side.execute("ATTACH DATABASE ? AS src", (source,))
    except BaseException:
        side.close()
        raise
    return side, utf8


def has_conversation_index(conn: apsw.Connection) -> bool:
    """Whether the archive has its own index led by ``messages.conversation_id``
    (our older samples did; the app's migrations never create one)."""
    for row in conn.execute("PRAGMA index_list(messages)"):
        name = str(row[1]).replace('"', '""')
        first = conn.execute(f'PRAGMA index_info("{name}")').fetchone()
        if first is not None and first[2] == "conversation_id":
            return True
    return False


MESSAGE_INDEX = "messages.db"  # the message index's name in the run folder


def build_message_index(archive_path: str, target: str) -> bool:
    """Write where each conversation's messages are, as runs of rowids, to ``target``.

    Why: without an index on ``messages.conversation_id`` (the app's schema),
    a worker's ``WHERE conversation_id IN (...)`` scans the whole table per
    batch. The app inserts a conversation's messages together, so in rowid
    order they form a few runs (one, until a re-sync appends more). One scan
    here finds where runs start (a row whose rowid-1 belongs to another
    conversation, or is gone); workers then read each run as a rowid range: a
    batch costs what it costs with an index. All in SQL, no per-row Python: the
    controller runs it in a thread, without the GIL, while it plans; the file
    holds a row per run (a few megabytes for 100,000 conversations).

    Runs cover rowids up to the highest one seen (kept, read in the same
    snapshot); workers also read the rows above it by ``conversation_id``, so
    the messages the app inserts during the run are seen too.

    The file is written beside ``target`` and renamed into place when
    complete: a worker finds the whole index or none (then it reads by
    ``conversation_id``). Returns False, and writes nothing, when the archive
    has its own index: then workers use it.
    """
    conn = open_archive(archive_path)
    try:
        if has_conversation_index(conn):
            return False
    finally:
        conn.close()
    partial = target + ".partial"
    side, _ = _open_side(archive_path, partial)
    try:
        side.execute(
            "CREATE TABLE runs (conversation_id TEXT NOT NULL, first INTEGER NOT NULL,"
            " stop INTEGER NOT NULL, PRIMARY KEY (conversation_id, first)) WITHOUT ROWID")
        side.execute("CREATE TABLE scanned (max_rid INTEGER)")
        side.execute("CREATE TABLE starts (first INTEGER PRIMARY KEY, conversation_id TEXT)")
        with side:  # one transaction: one snapshot of the archive for every statement
            side.execute("INSERT INTO scanned SELECT max(rowid) FROM src.messages")
            side.execute(_RUN_STARTS)
            side.execute(_RUNS)
            side.execute("DROP TABLE starts")
        side.execute("DETACH DATABASE src")
    except BaseException:
        side.close()
        with contextlib.suppress(OSError):
            os.unlink(partial)
        raise
    side.close()
    os.replace(partial, target)
    return True


# A run starts at each row whose predecessor (rowid - 1) is missing or another
# conversation's; rows without a conversation are boundaries, and no run.
_RUN_STARTS = """
INSERT INTO starts SELECT m.rowid, m.conversation_id FROM src.messages m
LEFT JOIN src.messages p ON p.rowid = m.rowid - 1
WHERE p.rowid IS NULL OR p.conversation_id IS NOT m.conversation_id
"""
# A run stops where the next one starts (a rowid seek: no sort, memory stays flat), the
# last one past the highest rowid seen.
_RUNS = """
INSERT INTO runs SELECT s.conversation_id, s.first, ifnull(
    (SELECT n.first FROM starts n WHERE n.first > s.first ORDER BY n.first LIMIT 1),
    (SELECT ifnull(max_rid, 0) + 1 FROM scanned))
FROM starts s WHERE s.conversation_id IS NOT NULL
"""


def build_attachment_index(archive_path: str, target: str) -> None:
    """Copy attachment rows, keyed by conversation, into an indexed side file.

    ``attachments.message_id`` has no index in the archive, so workers read
    attachments from this copy instead. Runs once per export in the
    controller, in a thread of its own while the main thread plans: it uses
    its own connections, and the clean case is one ``INSERT ... SELECT``
    that SQLite runs without the GIL. The side file lives in the run's
    private runtime folder and is removed with it.
    """
    side, utf8 = _open_side(archive_path, target)
    try:
        side.execute(
            "CREATE TABLE att (conversation_id TEXT, id TEXT, message_id TEXT, type TEXT,"
            " file_id TEXT, original_url TEXT, local_path TEXT, filename TEXT,"
            " mime_type TEXT, size INT, width INT, height INT, created_at INT)"
        )
        if not _copy_clean_attachments(side):
            _copy_dirty_attachments(side, utf8)
        side.execute("CREATE INDEX att_conv ON att(conversation_id, id)")
    finally:
        side.close()


_ATTACHMENT_SOURCE = " FROM src.attachments a JOIN src.messages m ON m.id = a.message_id"


def _copy_clean_attachments(side: apsw.Connection) -> bool:
    """The fast path: when every column has its declared type, copy rows in SQL
    (no per-row Python). Returns False, leaving ``att`` empty, when the slow,
    repairing path is needed."""
    texts = " OR ".join(f"typeof(a.{c}) NOT IN ('text', 'null')"
                        for c in _ATTACHMENT_TEXT_COLUMNS)
    numbers = " OR ".join(f"typeof(a.{c}) NOT IN ('integer', 'null')"
                          for c in ("size", "width", "height", "created_at"))
    row = side.execute(
        f"SELECT EXISTS (SELECT 1 FROM src.attachments a WHERE {texts} OR {numbers})"
    ).fetchone()
    if row is None or row[0]:
        return False
    with side:
        side.execute(
            "INSERT INTO att SELECT m.conversation_id, "
            + ", ".join(f"a.{c}" for c in _ATTACHMENT_TEXT_COLUMNS)
            + ", a.size, a.width, a.height, a.created_at" + _ATTACHMENT_SOURCE)
    # Text that is not valid UTF-8 is copied as it is: the workers' reader decodes
    # it with replacement (no pass over every row here, on the controller's serial path).
    return True


def _copy_dirty_attachments(side: apsw.Connection, utf8: bool) -> None:
    """Dirty rows: text columns are read as bytes and numbers checked: a BLOB, invalid
    UTF-8 or text in a number column must neither stop the listing nor kill a worker."""
    rows = side.execute(for_encoding(
        "SELECT m.conversation_id, " + ", ".join(
            f"CAST(a.{c} AS BLOB)" for c in _ATTACHMENT_TEXT_COLUMNS)
        + ", a.size, a.width, a.height, a.created_at" + _ATTACHMENT_SOURCE, utf8))
    clean = ((cid, *(None if v is None else _text(v) for v in row[:8]),
              *(_int(v) for v in row[8:])) for cid, *row in rows)
    with side:
        side.executemany("INSERT INTO att VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)", clean)


class BatchReader:
    """A worker's reader: fetches whole conversations for a batch of ids."""

    def __init__(self, archive_path: str, attachment_index: str | None,
                 message_index: str | None = None) -> None:
        self.conn = open_archive(archive_path)
        self.archive_dir = os.path.dirname(os.path.abspath(archive_path))
        self.att: apsw.Connection | None = None
        self.attachment_index = attachment_index
        self.message_index = message_index
        self.scanned_rowid: int | None = None  # set once the message index is attached
        utf8 = is_utf8(self.conn)  # the side index is UTF-16 too when the archive is
        self._conversation_select = for_encoding(_conversation_select(self.conn), utf8)
        self._message_select = for_encoding(_MESSAGE_SELECT, utf8)
        self._tolerant_select = for_encoding(_TOLERANT_MESSAGE_SELECT, utf8)
        self._indexed_select = for_encoding(_INDEXED_MESSAGE_SELECT, utf8)
        self._tolerant_indexed_select = for_encoding(_TOLERANT_INDEXED_MESSAGE_SELECT, utf8)
        self._attachment_select = for_encoding(_ATTACHMENT_SELECT, utf8)

    def _attach_message_index(self) -> bool:
        """Attach the message index to the archive connection (once); False without one.

        Attached, not opened apart: the join to ``messages`` by rowid then runs
        inside SQLite, in the batch's one read transaction.
        """
        if self.scanned_rowid is None and self.message_index:
            path, self.message_index = self.message_index, None  # tried once
            if os.path.isfile(path):  # absent: the archive has its own index, or none
                try:
                    self.conn.execute("ATTACH DATABASE ? AS mi", (path,))
                    row = self.conn.execute("SELECT max_rid FROM mi.scanned").fetchone()
                except apsw.Error as exc:  # reading by column is slow, never wrong
                    log.warning("message index %s unusable (%s); reading by conversation",
                                path, exc)
                else:
                    self.scanned_rowid = int(row[0]) if row and type(row[0]) is int else 0
        return self.scanned_rowid is not None

    def _message_rows(self, ids: list[str], marks: str, tolerant: bool, indexed_reads: bool,
                      ) -> list[Iterable[Sequence[Any]]]:
        """A batch's message rows: through the message index when there is one (its
        runs, then the rows inserted after it was made: a rowid range, cheap), else
        by ``conversation_id`` (the archive's own index, or a scan)."""
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
        """Close both connections."""
        self.conn.close()
        if self.att is not None:
            self.att.close()

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
        indexed_reads = self._attach_message_index()  # (not inside a transaction)
        with self.conn:  # one snapshot for the batch
            for row in self.conn.execute(self._conversation_select + f" ({marks})", ids):
                cid, title, provider, created, updated, count, current, *sync = row
                conv = Conversation(
                    id=cid, title=_text(title),
                    provider=_text(provider), created_at=_int(created),
                    updated_at=_int(updated), message_count=_int(count),
                    current_node_id=None if current is None else _text(current),
                    messages=[], folder=folders[cid], synced_at=_int(sync[0]),
                    sync_error=None if sync[1] is None else _text(sync[1]),
                    sync_retry_count=_int(sync[2]),
                )
                if not conv.title:
                    conv.warnings.append("conversation has no title")
                if conv.created_at is None or conv.updated_at is None:
                    conv.warnings.append("conversation has NULL timestamps")
                conversations[cid] = conv
            messages: dict[str, Message] = {}
            for rows in self._message_rows(ids, marks, tolerant, indexed_reads):
                self._add_messages(rows, conversations, messages, tolerant)
        if self.att is None and self.attachment_index:
            # Opened on first use: the controller builds it while workers start.
            self.att = apsw.Connection(self.attachment_index, flags=apsw.SQLITE_OPEN_READONLY)
        if self.att is not None:
            # Text read as bytes and decoded here: the index is a plain SQL copy, and
            # bytes that are not UTF-8 cost a replacement character, never the batch.
            for row in self.att.execute(self._attachment_select + f" WHERE conversation_id IN"
                                        f" ({marks}) ORDER BY conversation_id, id", ids):
                aid, mid, kind, file_id, url, local, name, mime = (
                    None if v is None else _text(v) if type(v) is bytes else str(v)
                    for v in row[:8])
                owner = messages.get(mid or "")
                if owner is not None:
                    owner.attachments.append(Attachment(
                        aid or "", mid or "", kind or "", file_id, url, local, name, mime,
                        *row[8:]))
        for conv in conversations.values():
            # Sorting here is cheaper than asking SQLite to sort the whole batch.
            conv.messages.sort(key=_MESSAGE_ORDER)
            _check_tree(conv)
        return [conversations[cid] for cid in ids if cid in conversations]

    @staticmethod
    def _add_messages(rows: Iterable[Sequence[Any]], conversations: dict[str, Conversation],
                      messages: dict[str, Message], tolerant: bool) -> None:
        """Give each row's message to its conversation (if that is in the batch)."""
        if tolerant:
            rows = (tuple(_text(v) if type(v) is bytes else v for v in row) for row in rows)
        owner_of = conversations.get
        for row in rows:  # once per message of the archive: names bound locally
            owner_conv = owner_of(row[0])
            if owner_conv is not None:
                msg = _message(row, owner_conv)
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


# A message row: its conversation, then the columns _message() reads. Completed with
# " WHERE conversation_id IN (...)" (a scan without the archive's own index).
_MESSAGE_COLUMNS = ("id, role, CAST(parts AS BLOB), created_at, updated_at, order_index,"
                    " parent_id, sibling_ids, sibling_index")
# Text as bytes, for the tolerant re-read of a batch with text that is not UTF-8.
_TOLERANT_MESSAGE_COLUMNS = (
    "CAST(id AS BLOB), CAST(role AS BLOB), CAST(parts AS BLOB), created_at, updated_at,"
    " order_index, CAST(parent_id AS BLOB), CAST(sibling_ids AS BLOB), sibling_index")
_MESSAGE_SELECT = f"SELECT conversation_id, {_MESSAGE_COLUMNS} FROM messages"
_TOLERANT_MESSAGE_SELECT = f"SELECT conversation_id, {_TOLERANT_MESSAGE_COLUMNS} FROM messages"
# Through the message index (build_message_index), by rowid range; completed with
# " WHERE s.conversation_id IN (...) AND m.conversation_id = s.conversation_id" (a
# rowid may since hold another conversation's message). CROSS JOIN: runs first.
_BY_ROWID = ("SELECT m.conversation_id, {} FROM mi.runs s CROSS JOIN messages m"
             " ON m.rowid >= s.first AND m.rowid < s.stop")
_INDEXED_MESSAGE_SELECT = _BY_ROWID.format(_MESSAGE_COLUMNS)
_TOLERANT_INDEXED_MESSAGE_SELECT = _BY_ROWID.format(_TOLERANT_MESSAGE_COLUMNS)


def _int(value: Any) -> int | None:
    """An integer column that dirty data may have left NULL, as text, or as a REAL."""
    if value is None or isinstance(value, int):
        return value
    try:
        return int(float(value))
    except (TypeError, ValueError, OverflowError):  # OverflowError: inf
        return None


def _text(value: bytes | str | None) -> str:
    """A text column read as bytes: invalid UTF-8 is replaced, never fatal. (Text from a
    UTF-16 archive arrives as str already: see :func:`for_encoding`.)"""
    if isinstance(value, str):
        return value
    return value.decode("utf-8", "replace") if value else ""


def _message(row: Sequence[Any], conv: Conversation) -> Message:
    """Build a Message from a row, repairing what is broken and noting it.

    This runs once per message of the archive: the common case (parts read as
    bytes that parse, integer columns) takes the fewest steps; repairs are the
    slow path. ``parts`` arrives as bytes (``CAST(parts AS BLOB)``): orjson
    parses UTF-8 directly, and nothing is decoded unless something needs it.
    """
    _, mid, role, raw, created, updated, order, parent, siblings_raw, sibling_index = row
    if type(raw) is not bytes and type(raw) is not str:
        raw = b"" if raw is None else str(raw)
    error: str | None = None
    parts_ok = False
    try:
        parts = _loads(raw)
    except orjson.JSONDecodeError as exc:
        parts = None
        error = f"unparseable parts JSON: {str(exc).splitlines()[0][:120]}"
        if type(raw) is bytes:
            try:
                raw.decode("utf-8")
            except UnicodeDecodeError as bad:  # bytes that are not UTF-8, stored as TEXT
                raw = raw.decode("utf-8", "replace")
                conv.warnings.append(f"message {mid}: parts text that is not valid UTF-8"
                                     f" ({bad.reason}) kept with replacement characters")
                try:
                    parts, error = _loads(raw), None
                except orjson.JSONDecodeError as again:
                    error = f"unparseable parts JSON: {str(again).splitlines()[0][:120]}"
    if type(parts) is list:
        for p in parts:  # a loop, not all(genexpr): one message is 1-3 parts
            if type(p) is not dict:
                break
        else:
            parts_ok = True
    if not parts_ok:  # not a list, or a list holding something other than objects
        if error is None and type(parts) is list:
            error = "parts array holds items that are not objects"
            parts = [p if type(p) is dict else {"type": "unknown", "value": p} for p in parts]
            conv.warnings.append(f"message {mid}: {error}; kept as 'unknown' parts")
        else:
            error = error or "parts is not a JSON array"
            text = raw.decode("utf-8", "replace") if type(raw) is bytes else raw
            parts = [{"type": "text", "text": text}]
            conv.warnings.append(f"message {mid}: {error}; kept as raw text")
    siblings: list[str] | None = None
    if siblings_raw == f'["{mid}"]':  # the common case: no alternatives; no parse needed
        siblings = [str(mid)]
    elif siblings_raw:
        try:
            value = _loads(siblings_raw)
            if type(value) is list:
                siblings = [v if type(v) is str else str(v) for v in value]
        except orjson.JSONDecodeError:
            conv.warnings.append(f"message {mid}: unparseable sibling_ids")
    if type(created) is not int:
        created = _int(created)
        if created is None:
            conv.warnings.append(f"message {mid}: NULL created_at")
    return Message(
        mid if type(mid) is str else str(mid), role if type(role) is str else "assistant",
        parts, raw, error, created,
        updated if type(updated) is int else _int(updated),
        order if type(order) is int else (_int(order) or 0), parent, siblings,
        sibling_index if type(sibling_index) is int else _int(sibling_index),
    )


_loads = orjson.loads


_MESSAGE_ORDER = operator.attrgetter("order_index", "id")  # C-level sort key


def _check_tree(conv: Conversation) -> None:
    """Note dangling parent links and an unknown current node."""
    ids = {m.id for m in conv.messages}
    for m in conv.messages:
        parent = parent_of(m)  # Claude's all-zero root parent is no missing parent
        if parent and parent not in ids:
            conv.warnings.append(f"message {m.id}: parent {parent} is missing")
    if conv.current_node_id and conv.current_node_id not in ids:
        conv.warnings.append(f"current_node_id {conv.current_node_id} names no message")
