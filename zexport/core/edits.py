"""Replacing a file only while it still holds what zexport wrote there.

Exports end up in Obsidian vaults and git repositories where people edit
them, so every file zexport writes (a conversation file, an attachment copy,
a file a format writes with ``ctx.write``) goes through a :class:`FileKeeper`.
It knows, from the manifest, the hash of what zexport last wrote at each path
of the conversation, and before touching a path it looks at what is there:

- nothing: the file is written;
- the very bytes it would write: nothing is written (same inode, same mtime:
  sync tools and backups see no change);
- what zexport last wrote: it is replaced;
- anything else (the user edited it, or zexport never wrote it: an export by
  the app, another tool's file, a symlink): it is left as it is, and the new
  version goes to ``.zexport/conflicts/<same path>``, where ``diff`` finds it
  beside the original. An edited file for which zexport has nothing new (its
  new bytes equal what it wrote last time) is simply left alone: there is no
  conflict, nothing to choose between.

``overwrite`` (``--overwrite-edited``) replaces whatever is there.

Why ``.zexport/conflicts/`` and not a ``conversation.zexport-new.md`` beside
the note: Obsidian skips dot-folders, so the new versions do not show up as
thousands of duplicate notes in search, the graph and backlinks, a git
user ignores one folder, and an attachment's new version cannot be taken for
one of the conversation's files.

Hashes are SHA-256 (``sha256sum`` checks them by hand), hex.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import shutil
import stat
import tempfile
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import IO, BinaryIO, cast

from zexport.core import output
from zexport.core.output import atomic_write, ensure_dir
from zexport.core.statedir import STATE_DIR

CONFLICTS_DIR = "conflicts"  # inside STATE_DIR: the new versions of files left alone
EDITED = "edited since zexport wrote it"
FOREIGN = "not written by zexport"
_READ = os.O_RDONLY | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0)
_CHUNK = 1 << 20


def digest_bytes(data: bytes) -> str:
    """The hash zexport records for a file holding ``data``."""
    return hashlib.sha256(data).hexdigest()


def fd_digest(fd: int) -> str:
    """The hash of what an open file holds, read from where its offset is."""
    h = hashlib.sha256()
    while chunk := os.read(fd, _CHUNK):
        h.update(chunk)
    return h.hexdigest()


def file_digest(path: str) -> str | None:
    """The hash of the regular file at ``path``; None when nothing is there.

    Raises :class:`NotOurs` for a symlink or anything but a regular file:
    zexport never writes one, so it is never replaced without being asked.
    """
    try:
        fd = os.open(path, _READ)
    except FileNotFoundError:
        return None
    except OSError as exc:
        if exc.errno == errno.ELOOP:  # O_NOFOLLOW met a symlink
            raise NotOurs(path) from None
        raise
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise NotOurs(path)
        return fd_digest(fd)
    finally:
        os.close(fd)


class NotOurs(Exception):
    """A path holds something zexport never writes (a symlink, a folder, a device)."""


def conflict_path(out_dir: str, relative: str) -> str:
    """Where the new version of ``relative`` goes when the file there is left alone."""
    return os.path.join(out_dir, STATE_DIR, CONFLICTS_DIR, *relative.split("/"))


@dataclass
class FileKeeper:
    """Writes one conversation's files, never over what zexport did not write.

    ``known`` maps paths relative to ``out_dir`` to the hash recorded when
    zexport last wrote them. After the writes, ``files`` holds what to record
    (path, hash) and ``conflicts`` the paths left alone, with the reason.
    """

    out_dir: str
    known: Mapping[str, str] = field(default_factory=dict)
    overwrite: bool = False
    clear_stale: bool = False  # the conflicts folder exists: remove what is resolved
    files: list[tuple[str, str]] = field(default_factory=list)
    conflicts: list[tuple[str, str]] = field(default_factory=list)

    def _relative(self, target: str) -> str:
        return os.path.relpath(target, self.out_dir).replace(os.sep, "/")

    def write(self, target: str, data: bytes) -> bool:
        """Write ``data`` at ``target`` if it is ours to write; return whether it is there."""
        new = digest_bytes(data)
        action = self._decide(target, new)
        if action == "write":
            atomic_write(target, data)
        elif action == "conflict":
            spare = self._conflict_target(target)
            if _digest_or_none(spare) != new:
                atomic_write(spare, data)
        return action != "conflict"

    def place(self, target: str, new: str, put: Callable[[str], None],
              same_as: tuple[int, int] | None = None) -> bool:
        """Put a file whose hash is ``new`` at ``target`` under the same rule as
        :meth:`write`; ``put(path)`` copies (or links) it to ``path``, ``target`` or the
        conflict path. ``same_as``: ``(st_dev, st_ino)`` of the source, when a hard link
        to it at ``target`` already is the file (``--attachments link``)."""
        if same_as is not None and _identity(target) == same_as:
            self._record(target, new)
            return True
        action = self._decide(target, new)
        if action == "write":
            put(target)
        elif action == "conflict":
            spare = self._conflict_target(target)
            if _digest_or_none(spare) != new:
                put(spare)
        return action != "conflict"

    def _decide(self, target: str, new: str) -> str:
        """``write``, ``keep`` (nothing to write) or ``conflict``; records the outcome."""
        rel = self._relative(target)
        known = self.known.get(rel)
        try:
            current = file_digest(target)
        except NotOurs:
            current = "not a regular file"
        if current is None or (current != new and (self.overwrite or current == known)):
            self._record(target, new)
            return "write"
        if current == new:
            self._record(target, new)
            return "keep"
        if known == new:  # edited, and zexport has nothing new for it: leave it be
            self._record(target, known)
            return "keep"
        if known is not None:
            self.files.append((rel, known))  # still what zexport last wrote there
        self.conflicts.append((rel, EDITED if known is not None else FOREIGN))
        return "conflict"

    def _record(self, target: str, digest: str) -> None:
        rel = self._relative(target)
        self.files.append((rel, digest))
        if self.clear_stale:
            try:
                os.unlink(conflict_path(self.out_dir, rel))
            except OSError:
                pass

    def _conflict_target(self, target: str) -> str:
        """Make the folders of ``target``'s conflict path (no symlink followed)."""
        rel = self._relative(target)
        path = self.out_dir
        for part in [STATE_DIR, CONFLICTS_DIR, *rel.split("/")[:-1]]:
            path = os.path.join(path, part)
            ensure_dir(path)
        return os.path.join(path, rel.split("/")[-1])


def _digest_or_none(path: str) -> str | None:
    try:
        return file_digest(path)
    except NotOurs:
        return None


def _identity(path: str) -> tuple[int, int] | None:
    """``(st_dev, st_ino)`` of the regular file at ``path`` (not followed), or None."""
    try:
        st = os.lstat(path)
    except OSError:
        return None
    return (st.st_dev, st.st_ino) if stat.S_ISREG(st.st_mode) else None


def folder_is_ours(out_dir: str, folder: str, known: Mapping[str, str]) -> str | None:
    """None if every file under ``folder`` is what zexport last wrote there;
    else the first path (relative to ``out_dir``) that is not.

    A folder is renamed on a title change only then: renaming moves the user's
    edits and the files they added with it, out from under their links.
    """
    root = os.path.join(out_dir, folder)
    stack = [root]
    while stack:
        current = stack.pop()
        try:
            entries = list(os.scandir(current))
        except OSError:
            return os.path.relpath(current, out_dir)
        for entry in entries:
            rel = os.path.relpath(entry.path, out_dir).replace(os.sep, "/")
            if entry.is_dir(follow_symlinks=False):
                stack.append(entry.path)
                continue
            try:
                digest = file_digest(entry.path)
            except (NotOurs, OSError):
                return rel
            if digest is None:
                continue  # gone meanwhile
            if known.get(rel) != digest:
                return rel
    return None


# Whole-export files up to this size are compared in memory: no temporary file is made
# beside an unchanged one, so even its folder's mtime stays as it was.
IN_MEMORY_BYTES = 32 * 1024 * 1024


@contextlib.contextmanager
def file_unless_same(target: str) -> Iterator[BinaryIO]:
    """Like :func:`zexport.core.output.atomic_file`, but when the finished file holds the
    bytes already at ``target``, that file is left as it is (same inode, same mtime).

    For whole-export files a format's ``finish`` writes every run (an index, a JSONL):
    an unchanged re-run must not make sync tools and backups see a change. The text
    is held in memory up to :data:`IN_MEMORY_BYTES`, past that in a temporary file
    beside the target with output's temporary name (a crash leaves nothing a later
    run does not sweep).
    """
    buffer = tempfile.SpooledTemporaryFile(max_size=IN_MEMORY_BYTES, dir=os.path.dirname(target)
                                           or ".")
    with buffer:
        yield cast(BinaryIO, buffer)
        size = buffer.tell()
        try:
            info = os.lstat(target)
            same = stat.S_ISREG(info.st_mode) and info.st_size == size and _same_bytes(
                buffer, target)
        except OSError:
            same = False
        if same:
            return
        buffer.seek(0)
        with output.atomic_file(target) as fh:
            shutil.copyfileobj(buffer, fh, 1024 * 1024)


def _same_bytes(buffer: IO[bytes], target: str) -> bool:
    buffer.seek(0)
    with open(target, "rb") as existing:
        while True:
            mine, theirs = buffer.read(1024 * 1024), existing.read(1024 * 1024)
            if mine != theirs:
                return False
            if not mine:
                return True
