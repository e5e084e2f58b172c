"""A copy of the archive's attachment rows, keyed by conversation, in a side file.

Why: ``attachments.message_id`` has no index in the app's schema, so reading a
batch's attachments from the archive would scan the table per batch; workers
read this indexed copy instead, and the copy repairs dirty rows once. Each run
writes it in parts (:mod:`.index_parts`), one rowid range of the table each.
"""

from __future__ import annotations

import apsw

from zexport.sources.archive.opening import for_encoding
from zexport.sources.archive.repair import as_int, as_text

ATTACHMENT_TEXT_COLUMNS = ("id", "message_id", "type", "file_id", "original_url", "local_path",
                           "filename", "mime_type")
# What a worker reads from the copy: the text columns as bytes (see BatchReader.read),
# completed with the table (or the union of every part's table).
ATTACHMENT_COLUMNS = ("SELECT " + ", ".join(f"CAST({c} AS BLOB)"
                                            for c in ATTACHMENT_TEXT_COLUMNS)
                      + ", size, width, height, created_at FROM ")
ATTACHMENT_SELECT = ATTACHMENT_COLUMNS + "att"


def copy_attachments(side: apsw.Connection, utf8: bool, first: int, stop: int) -> None:
    """Copy the attachment rows whose rowids are in ``[first, stop)``, keyed by
    conversation, into an indexed table ``att`` of ``side`` (the archive attached
    as ``src``).

    The clean case is one ``INSERT ... SELECT`` that SQLite runs without the
    GIL; each attachment finds its message by the messages' primary key.
    """
    side.execute(
        "CREATE TABLE att (conversation_id TEXT, id TEXT, message_id TEXT, type TEXT,"
        " file_id TEXT, original_url TEXT, local_path TEXT, filename TEXT,"
        " mime_type TEXT, size INT, width INT, height INT, created_at INT)"
    )
    rowids = {"first": first, "stop": stop}
    if not _copy_clean_attachments(side, rowids):
        _copy_dirty_attachments(side, utf8, rowids)
    side.execute("CREATE INDEX att_conv ON att(conversation_id, id)")


_IN_RANGE = "a.rowid >= :first AND a.rowid < :stop"
_ATTACHMENT_SOURCE = (" FROM src.attachments a JOIN src.messages m ON m.id = a.message_id"
                      " WHERE " + _IN_RANGE)


def _copy_clean_attachments(side: apsw.Connection, rowids: dict[str, int]) -> bool:
    """The fast path: when every column has its declared type, copy rows in SQL
    (no per-row Python). Returns False, leaving ``att`` empty, when the slow,
    repairing path is needed."""
    texts = " OR ".join(f"typeof(a.{c}) NOT IN ('text', 'null')"
                        for c in ATTACHMENT_TEXT_COLUMNS)
    numbers = " OR ".join(f"typeof(a.{c}) NOT IN ('integer', 'null')"
                          for c in ("size", "width", "height", "created_at"))
    row = side.execute(
        f"SELECT EXISTS (SELECT 1 FROM src.attachments a WHERE {_IN_RANGE}"
        f" AND ({texts} OR {numbers}))", rowids).fetchone()
    if row is None or row[0]:
        return False
    with side:
        side.execute(
            "INSERT INTO att SELECT m.conversation_id, "
            + ", ".join(f"a.{c}" for c in ATTACHMENT_TEXT_COLUMNS)
            + ", a.size, a.width, a.height, a.created_at" + _ATTACHMENT_SOURCE, rowids)
    # Text that is not valid UTF-8 is copied as it is: the workers' reader decodes
    # it with replacement (no pass over every row here).
    return True


def _copy_dirty_attachments(side: apsw.Connection, utf8: bool,
                            rowids: dict[str, int]) -> None:
    """Dirty rows: text columns are read as bytes and numbers checked: a BLOB, invalid
    UTF-8 or text in a number column must neither stop the listing nor kill a worker."""
    rows = side.execute(for_encoding(
        "SELECT m.conversation_id, " + ", ".join(
            f"CAST(a.{c} AS BLOB)" for c in ATTACHMENT_TEXT_COLUMNS)
        + ", a.size, a.width, a.height, a.created_at" + _ATTACHMENT_SOURCE, utf8), rowids)
    clean = ((cid, *(None if v is None else as_text(v) for v in row[:8]),
              *(as_int(v) for v in row[8:])) for cid, *row in rows)
    with side:
        side.executemany("INSERT INTO att VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)", clean)
