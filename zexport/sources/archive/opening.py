"""Opening an OwnYourChat archive read-only, and reading its text in its own encoding.

Why: ``SQLITE_OPEN_READONLY`` (never ``CREATE``) means a typo in ``--db``
cannot create an empty database and zexport cannot alter the app's file (no
WAL switch, no ANALYZE); a busy timeout lets us read while the app writes.
Every other part of the reader opens the archive through here.
"""

from __future__ import annotations

import os
import re

import apsw

from zexport.errors import ArchiveError
from zexport.schema import REQUIRED_TABLES

BUSY_TIMEOUT_MS = 10_000


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
