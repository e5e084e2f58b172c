"""A private side file beside a run, with the archive attached read-only.

Why: the app's archives lack the indexes a batched read needs, and zexport
never writes to the archive; the message runs and the attachment copy are
written to side files in the run's private folder instead, each in one SQL
statement over the attached archive.
"""

from __future__ import annotations

import os
from pathlib import Path

import apsw

from zexport.sources.archive.opening import BUSY_TIMEOUT_MS, text_encoding

# Page cache per schema (KiB) of a side file's connection, for itself and the attached
# archive. Each side file is written in one pass over the archive, so a cache saves no
# reads; SQLite's default (2 MiB each) filled with the archive and made the controller's
# peak memory grow with it (measured at 100,000 conversations: 10.3 MiB of SQLite heap for
# the two side files with the default, 2.3 MiB with 256 KiB, for the same CPU time).
SIDE_CACHE_KIB = 256


def open_side_file(archive_path: str, target: str) -> tuple[apsw.Connection, bool]:
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
        for schema in ("main", "src"):
            side.execute(f"PRAGMA {schema}.cache_size = -{SIDE_CACHE_KIB}").fetchall()
    except BaseException:
        side.close()
        raise
    return side, utf8
