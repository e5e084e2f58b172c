"""Resume and incremental export: the controller's record of what is done.

``<out>/.zexport/manifest.db`` is an SQLite file that only the controller
writes (workers never touch it, so there is exactly one writer). One row per
exported conversation::

    id -> folder, source fingerprint, options fingerprint, renderer version

Why SQLite: a rewrite-the-whole-file JSON manifest costs O(n) per commit and
a 100k-conversation archive would pay it hundreds of times per run; SQLite
in WAL mode with ``synchronous=NORMAL`` commits a batch of rows without an
fsync, reads the whole table in ~100 ms at 100k rows, and survives a kill
at any point (a torn commit is rolled back, and a row is only written after
the worker reported the file renamed into place, so the manifest can lag the
tree but never run ahead of it).

In the same row, every file zexport wrote for it (the conversation file,
attachment copies, files a format wrote), as a JSON object::

    {path (relative to the output folder): SHA-256 of its bytes}

so that a file the user edited, or one zexport never wrote, is never replaced
(:mod:`zexport.core.edits`): workers get the hashes of a conversation's files with
its batch and send back what they wrote. One row per conversation, files
included, because files are only ever asked for by conversation: a table of
files keyed by path (schema 2) cost three B-tree inserts per file, twice the
manifest's time per conversation, for a lookup by path that nothing made.

Before dispatch the controller asks :meth:`Resume.select` which
conversations need work. A conversation is *skipped* (never sent to a
worker) when its source fingerprint, options fingerprint and renderer are
unchanged and its output is still there. When its title changed, its old
folder is renamed to the new name (never left behind as a duplicate) and it
is rendered again in place, unless a file in the old folder is not what
zexport wrote there: then the old folder stays as it is (a conflict), and the
conversation is rendered afresh under its new name. ``--force`` renders
everything (and still moves renamed folders).

A conversation exported with an attachment missing records the *attachment
context* of the run (``retry``): a digest of what decides whether missing files
can be had (downloads on or off, each provider's credentials, the cache folder
and what is in it). A re-run with the same context skips it like any other
unchanged conversation: attachments that cannot be had offline do not make a
conversation changed. When the context differs (new credentials, files added
to the cache), or with ``--retry-attachments``, it is rendered again and its
downloads retried. A conversation with a conflict is recorded with
:data:`RENDER_AGAIN` as its source, so every run reports the conflict until the
user resolves it (removes the file, or passes ``--overwrite-edited``).

The layout (``--layout``, :mod:`zexport.core.layouts`) is recorded in the ``meta``
table: moves and skips are decided from where the last run put each file, so a
run with another layout into the same folder is refused before anything is
touched (:func:`check_layout`). A manifest without it was written by the
``folder`` layout, the only one before layouts were recorded.

The source fingerprint is cheap on purpose: it hashes what the
``conversations`` row says (title, provider, created_at, updated_at,
message_count, current_node_id), without reading messages. An edit inside a
message that changes none of these is not seen; ``--force`` covers it.
"""

from __future__ import annotations

import hashlib
import logging
import os
import stat
import time
import urllib.parse
from array import array
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import timezone, tzinfo
from typing import TYPE_CHECKING, Any

import apsw
import orjson

from zexport.core.edits import EDITED, FOREIGN, NotOurs, file_digest, folder_is_ours
from zexport.core.layouts import Layout
from zexport.core.moves import move_places, units
from zexport.core.statedir import MANIFEST_NAME
from zexport.errors import UsageError

if TYPE_CHECKING:
    from zexport.run.plan import Plan

log = logging.getLogger("zexport.run.manifest")

SCHEMA_VERSION = "3"
# Manifests of an older schema that are carried over (their records kept), not dropped.
MIGRATABLE = frozenset({"2"})
# The source fingerprint recorded for a conversation with a conflict: it equals no
# real fingerprint, so the next run renders it again (and reports the conflict again).
RENDER_AGAIN = "render-again"
# Manifest commits during a run: at most one a second, or when this many rows wait.
FLUSH_INTERVAL = 1.0
FLUSH_ROWS = 20_000


def _first(row: tuple[Any, ...]) -> Any:
    """A row's key (its first column): what the manifest's B-trees are ordered by."""
    return row[0]


def _digest(value: Any) -> str:
    data = orjson.dumps(value, option=orjson.OPT_SORT_KEYS, default=str)
    return hashlib.blake2b(data, digest_size=12).hexdigest()


DONE_DDL = ("CREATE TABLE IF NOT EXISTS {name} (id TEXT PRIMARY KEY, folder TEXT NOT NULL,"
            " source TEXT NOT NULL, options TEXT NOT NULL, renderer TEXT NOT NULL,"
            " retry TEXT, files BLOB)")


def files_json(files: Iterable[tuple[str, str]]) -> bytes | None:
    """A conversation's ``(path, hash)`` pairs as the ``files`` column holds them."""
    as_map = dict(files)
    return orjson.dumps(as_map) if as_map else None


def _files(value: object) -> dict[str, str]:
    """The ``files`` column read back; a value that is not such an object (hand-edited,
    damaged) counts as no file recorded, so that nothing of it is taken for zexport's."""
    try:
        loaded = orjson.loads(value) if isinstance(value, (bytes, str)) else None
    except orjson.JSONDecodeError:
        return {}
    if not isinstance(loaded, dict):
        return {}
    return {k: v for k, v in loaded.items() if isinstance(v, str)}


def _migrate_from_2(conn: apsw.Connection) -> None:
    """Carry a schema-2 manifest (files in their own table) over to schema 3, in one
    transaction: every record and file hash is kept, so an upgrade neither renders
    everything again nor forgets which files are zexport's."""
    with conn:
        conn.execute(DONE_DDL.format(name="done_v3"))
        has_files = conn.execute(
            "SELECT 1 FROM sqlite_master WHERE type='table' AND name='files'").fetchone()
        if conn.execute("SELECT 1 FROM sqlite_master WHERE type='table' AND name='done'"
                        ).fetchone():
            joined = ("(SELECT json_group_object(f.path, f.hash) FROM files f WHERE f.cid = d.id)"
                      if has_files else "NULL")
            conn.execute("INSERT INTO done_v3 SELECT d.id, d.folder, d.source, d.options,"
                         f" d.renderer, d.retry, CAST({joined} AS BLOB) FROM done d")
            conn.execute("DROP TABLE done")
        conn.execute("DROP TABLE IF EXISTS files")
        conn.execute("ALTER TABLE done_v3 RENAME TO done")
        conn.execute("INSERT OR REPLACE INTO meta VALUES ('schema', ?)", (SCHEMA_VERSION,))


def source_fingerprint(title: str | None, provider: str | None, created_at: int | None,
                       updated_at: int | None, message_count: int | None,
                       current_node_id: str | None) -> str:
    """A digest of a conversation's row: changes when the app re-syncs or edits it."""
    return _digest([title, provider, created_at, updated_at, message_count, current_node_id])


def tz_identity(tz: tzinfo) -> str:
    """A stable name for a time zone: its IANA key, or what defines "local" here.

    ``str()`` of a local-zone object is its memory address, different every
    run; that would make every re-run render everything again.
    """
    key = getattr(tz, "key", None)
    if isinstance(key, str):
        return key
    if tz is timezone.utc:
        return "UTC"
    return repr((os.environ.get("TZ"), time.tzname, time.timezone, time.altzone,
                 os.path.realpath("/etc/localtime")))


def options_fingerprint(options: Any) -> str:
    """A digest of every option that changes a conversation's output bytes."""
    return _digest(options)


@dataclass(frozen=True, slots=True)
class Entry:
    """What the manifest knows of one exported conversation."""

    folder: str
    source: str
    options: str
    renderer: str
    retry: str | None = None


# (id, folder, source, options, renderer, retry, files): files is the JSON object of
# {path: hash} (None: none)
Row = tuple[str, str, str, str, str, "str | None", "bytes | None"]


class Manifest:
    """The SQLite manifest file; opened and written by the controller only."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.notes: list[str] = []
        try:
            self.conn = self._open()
        except apsw.Error as exc:  # corrupt or foreign file: start afresh, say so
            self.notes.append(f"manifest unreadable ({exc}); starting a new one")
            for suffix in ("", "-wal", "-shm"):
                try:
                    os.unlink(path + suffix)
                except FileNotFoundError:
                    pass
            self.conn = self._open()

    def _open(self) -> apsw.Connection:
        conn = apsw.Connection(self.path, flags=apsw.SQLITE_OPEN_READWRITE
                               | apsw.SQLITE_OPEN_CREATE | apsw.SQLITE_OPEN_NOFOLLOW)
        conn.setbusytimeout(2000)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")
        conn.execute("CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT)")
        row = conn.execute("SELECT value FROM meta WHERE key='schema'").fetchone()
        if row is not None and row[0] in MIGRATABLE:
            _migrate_from_2(conn)
        elif row is None or row[0] != SCHEMA_VERSION:
            with conn:
                conn.execute("DROP TABLE IF EXISTS done")
                conn.execute("DROP TABLE IF EXISTS files")
                conn.execute("INSERT OR REPLACE INTO meta VALUES ('schema', ?)",
                             (SCHEMA_VERSION,))
        conn.execute(DONE_DDL.format(name="done"))
        return conn

    def is_empty(self) -> bool:
        """Whether no conversation has been recorded (a first export into this folder)."""
        return self.conn.execute("SELECT 1 FROM done LIMIT 1").fetchone() is None

    def load(self) -> dict[str, Entry]:
        """Every row, keyed by conversation id."""
        return {row[0]: Entry(*row[1:]) for row in self.conn.execute(
            "SELECT id, folder, source, options, renderer, retry FROM done")}

    def record(self, rows: Sequence[Row]) -> None:
        """Add or replace rows ``(id, folder, source, options, renderer, retry, files)``
        in one commit."""
        if rows:
            with self.conn:
                self.conn.executemany("INSERT OR REPLACE INTO done VALUES (?,?,?,?,?,?,?)",
                                      rows)

    def known_files(self, cids: Sequence[str]) -> dict[str, dict[str, str]]:
        """``{id: {path: hash}}``: what zexport last wrote for these conversations."""
        known: dict[str, dict[str, str]] = {}
        for start in range(0, len(cids), 500):  # SQLite's parameter limit
            chunk = cids[start:start + 500]
            marks = ",".join("?" * len(chunk))
            for cid, files in self.conn.execute(
                    f"SELECT id, files FROM done WHERE id IN ({marks}) AND files IS NOT NULL",
                    chunk):
                known[cid] = _files(files)
        return known

    def set_folders(self, moved: Iterable[tuple[str, str, str]],
                    relocate: Callable[[str, str, str], str] | None = None) -> None:
        """Record ``(id, old folder, new folder)`` after folders were renamed: the
        conversation's row and the paths of its files (``relocate(path, old, new)``
        says where a file went: :meth:`zexport.core.layouts.Layout.relocate`; by default,
        what was under the old folder is under the new one)."""
        moved = list(moved)
        known = self.known_files([cid for cid, _old, _new in moved])
        rows = []
        for cid, old, new in moved:
            files = {}
            for path, digest in known.get(cid, {}).items():
                if relocate is not None:
                    path = relocate(path, old, new)
                elif path.startswith(old + "/"):
                    path = new + path[len(old):]
                files[path] = digest
            rows.append((new, files_json(files.items()), cid))
        with self.conn:
            self.conn.executemany("UPDATE done SET folder=?, files=? WHERE id=?", rows)

    def retarget_retries(self, old: str, new: str) -> None:
        """Rows waiting for attachment context ``old`` wait for ``new`` from now on."""
        with self.conn:
            self.conn.execute("UPDATE done SET retry=? WHERE retry=?", (new, old))

    def layout(self) -> str | None:
        """The layout the recorded conversations were exported in (None: none recorded)."""
        return _recorded_layout(self.conn)

    def set_layout(self, spec: str) -> None:
        """Record the layout this run exports in."""
        with self.conn:
            self.conn.execute("INSERT OR REPLACE INTO meta VALUES ('layout', ?)", (spec,))

    def close(self) -> None:
        """Checkpoint and close (the WAL side files go away)."""
        self.conn.close()


def _recorded_layout(conn: apsw.Connection) -> str | None:
    """The layout of a manifest that records conversations; None for an empty one."""
    if conn.execute("SELECT 1 FROM sqlite_master WHERE name='done'").fetchone() is None:
        return None
    if conn.execute("SELECT 1 FROM done LIMIT 1").fetchone() is None:
        return None
    row = conn.execute("SELECT value FROM meta WHERE key='layout'").fetchone()
    return str(row[0]) if row else "folder"


def check_layout(path: str, layout: Layout, shown_out: str) -> None:
    """Refuse (UsageError, exit 2) a layout other than the one the output folder holds.

    Reads the manifest without writing a byte next to it: immutable when no
    write-ahead log is beside it (a read-only connection to a WAL database
    would leave ``-wal`` and ``-shm`` files behind), read-only otherwise.
    A manifest that cannot be read is not this check's business.
    """
    if not os.path.isfile(path) or os.path.islink(path):
        return
    flags = apsw.SQLITE_OPEN_READONLY | apsw.SQLITE_OPEN_NOFOLLOW | apsw.SQLITE_OPEN_URI
    uri = "file:" + urllib.parse.quote(os.path.abspath(path))
    if not os.path.lexists(path + "-wal"):
        uri += "?immutable=1"
    try:
        conn = apsw.Connection(uri, flags=flags)
        try:
            recorded = _recorded_layout(conn)
        finally:
            conn.close()
    except apsw.Error:
        return
    if recorded is not None and recorded != layout.spec:
        raise UsageError(
            f"{shown_out} holds an export in --layout {recorded!r}; one output folder holds"
            f" one layout: run with --layout {recorded!r}, or export --layout"
            f" {layout.spec!r} to another --out")


def _is_real_dir(path: str) -> bool:
    try:
        return stat.S_ISDIR(os.lstat(path).st_mode)
    except OSError:
        return False


def move_folders(out: str, moves: dict[str, tuple[str, str]]) -> dict[str, str]:
    """Rename ``{id: (old, new)}`` folders under ``out`` (the ``folder`` layout's moves,
    see :func:`zexport.core.moves.move_places`); return ``{id: new}`` that moved."""
    return move_places(out, moves, Layout.parse("folder"), "")


class Resume:
    """Decides, before dispatch, what a run must render, and records what it rendered.

    ``attachment_context``: the digest of what decides whether missing attachments
    can be had this run (see the module's docstring); ``retry_attachments`` renders
    every conversation that had one missing, whatever the context.
    """

    def __init__(self, state_dir: str, out: str, extension: str, options_fp: str,
                 renderer: str, force: bool, attachment_context: str = "",
                 retry_attachments: bool = False, overwrite_edited: bool = False,
                 layout: Layout | None = None) -> None:
        self.manifest = Manifest(os.path.join(state_dir, MANIFEST_NAME))
        self.layout = layout or Layout.parse("folder")
        self.out = out
        self.extension = extension
        self.options_fp = options_fp
        self.renderer = renderer
        self.force = force
        self.attachment_context = attachment_context
        self.retry_attachments = retry_attachments
        self.overwrite_edited = overwrite_edited
        self.moved = 0
        # Folders left where they are because a file in them is not what zexport wrote:
        # (id, path of that file, reason).
        self.kept_folders: list[tuple[str, str, str]] = []
        self.pending: list[Row] = []
        self._has_files: bool | None = None
        self.flushed_at = time.monotonic()

    def _output_present(self, folder: str) -> bool:
        target = os.path.join(self.out, folder)
        if self.extension:
            target = os.path.join(self.out, self.layout.files(folder, self.extension).main)
            try:
                return stat.S_ISREG(os.lstat(target).st_mode)
            except OSError:
                return False
        return _is_real_dir(target)

    def _movable(self, moves: dict[str, tuple[str, str]]) -> dict[str, tuple[str, str]]:
        """The moves whose old folder holds only what zexport wrote (all, when told to
        overwrite); the others are noted in :attr:`kept_folders`."""
        if self.overwrite_edited or not moves:
            return moves
        known = self.manifest.known_files(list(moves))
        movable: dict[str, tuple[str, str]] = {}
        present = units(self.out, moves, self.layout, self.extension)
        for cid, (old, new) in moves.items():
            if cid not in present:
                continue
            ours = known.get(cid, {})
            odd = self._unit_is_ours(present[cid], ours)
            if odd is None:
                movable[cid] = (old, new)
            else:
                why = EDITED if odd in ours else FOREIGN
                self.kept_folders.append(
                    (cid, odd, f"{why}; its folder was not renamed to {new!r}"))
        return movable

    def _unit_is_ours(self, unit: list[tuple[str, str]], ours: dict[str, str]) -> str | None:
        """None if every file a move would carry (a folder's, or a note and its
        attachments folder) is what zexport last wrote there; else the first that is not."""
        for old, _new in unit:
            path = os.path.join(self.out, old)
            if _is_real_dir(path):
                odd = folder_is_ours(self.out, old, ours)
            else:
                try:
                    odd = None if file_digest(path) == ours.get(old) else old
                except (NotOurs, OSError):
                    odd = old
            if odd is not None:
                return odd
        return None

    def select(self, plan: Plan, dry_run: bool = False) -> None:
        """Mark in ``plan`` what needs no rendering, after moving renamed folders.

        Streams the plan beside the manifest (an SQL join), so memory does
        not grow with the archive: only the moves (titles that changed) and
        the positions to skip are held, the latter as a compact array.

        ``dry_run``: move nothing, and decide as if every move had been made
        (``self.moved`` counts the folders a real run would move).
        """
        if not dry_run and self.manifest.layout() != self.layout.spec:
            self.manifest.set_layout(self.layout.spec)  # (another layout: refused before)
        if self.manifest.is_empty():  # nothing to move or skip: spare two passes over the plan
            plan.freeze_todo()
            return
        # One pass: rows whose folder stays are decided at once (no move can touch
        # their folder: names are unique in the plan and in the manifest); rows whose
        # folder moves are decided after the moves. Also under --force, folders move:
        # rendering everything again must not leave old folders behind.
        moves: dict[str, tuple[str, str]] = {}
        skip = array("q")
        after_move: dict[str, int] = {}  # id -> seq, unchanged but for its folder
        for (seq, cid, folder, source, old_folder, old_source, old_options, old_renderer,
             old_retry) in plan.with_manifest(self.manifest.path):
            if old_folder is None:
                continue
            if old_folder != folder:
                moves[cid] = (old_folder, folder)
            if self.force or not (
                    old_source == source and old_options == self.options_fp
                    and old_renderer == self.renderer and self._attachments_settled(old_retry)):
                continue
            if old_folder != folder:
                if self.layout.folders:  # a note's links name its attachments folder:
                    after_move[cid] = seq  # a moved note is rendered again
            elif self._output_present(folder):
                skip.append(seq)
        moves = self._movable(moves)
        moved: dict[str, str] = {}
        if moves and dry_run:  # decide as if every possible move had been made
            found = units(self.out, moves, self.layout, self.extension)
            moved = {cid: new for cid, (_old, new) in moves.items() if cid in found}
            self.moved = len(moved)
        elif moves:
            moved = move_places(self.out, moves, self.layout, self.extension)
            self.moved = len(moved)
            self.manifest.set_folders(
                ((cid, moves[cid][0], new) for cid, new in moved.items()),
                lambda path, old, new: self.layout.relocate(path, old, new, self.extension))
        for cid, seq in after_move.items():
            if cid in moved and self._output_present(moves[cid][0] if dry_run else moved[cid]):
                skip.append(seq)
        plan.skip(skip)
        plan.freeze_todo()

    def _attachments_settled(self, retry: str | None) -> bool:
        """Whether a conversation's missing attachments (if any) are not worth retrying."""
        return retry is None or (retry == self.attachment_context
                                 and not self.retry_attachments)

    @property
    def has_files(self) -> bool:
        """Whether any file is recorded (a first run asks nothing per batch)."""
        if self._has_files is None:
            self._has_files = self.manifest.conn.execute(
                "SELECT 1 FROM done WHERE files IS NOT NULL LIMIT 1").fetchone() is not None
        return self._has_files

    def known_files(self, cids: Sequence[str]) -> dict[str, dict[str, str]]:
        """What zexport last wrote for these conversations (see :meth:`Manifest.known_files`)."""
        return self.manifest.known_files(cids)

    def done(self, cid: str, folder: str, source: str | None, retry: str | None = None,
             files: Iterable[tuple[str, str]] = ()) -> None:
        """Note a conversation whose files are in place; kept until :meth:`flush`.

        ``retry``: the attachment context, when an attachment was missing;
        ``files``: ``(path, hash)`` of every file zexport wrote or found as it would
        write it.
        """
        if source is not None:
            self.pending.append((cid, folder, source, self.options_fp, self.renderer, retry,
                                 files_json(files)))

    def flush_due(self) -> None:
        """Commit what :meth:`done` noted if a second has passed since the last commit.

        Called after every finished batch. One commit per batch rewrote the
        same B-tree pages over and over (1.4 s of the controller's time at
        100k conversations); what a killed controller did not commit is
        merely rendered again by the next run.
        """
        now = time.monotonic()
        if now - self.flushed_at >= FLUSH_INTERVAL or len(self.pending) >= FLUSH_ROWS:
            self.flush()

    def flush(self) -> None:
        """Commit what :meth:`done` noted."""
        self.flushed_at = time.monotonic()
        rows, self.pending = self.pending, []
        # In key order: each B-tree page is then visited once per commit, in order,
        # instead of at random (measured: a third less CPU for the same rows at 100,000
        # conversations, where one commit a second rewrites pages all over the file).
        rows.sort(key=_first)
        try:
            self.manifest.record(rows)
        except apsw.Error as exc:  # the export is fine; the next run just redoes these
            log.warning("could not update the manifest: %s", exc)

    def close(self, final_context: str | None = None) -> None:
        """Flush and close the manifest.

        ``final_context``: the attachment context as the run leaves it (its own
        downloads changed the cache): conversations recorded this run wait for that
        one, or the next run would retry them for the cache this run filled.
        """
        self.flush()
        if final_context is not None and final_context != self.attachment_context:
            try:
                self.manifest.retarget_retries(self.attachment_context, final_context)
            except apsw.Error as exc:
                log.warning("could not update the manifest: %s", exc)
        self.manifest.close()
