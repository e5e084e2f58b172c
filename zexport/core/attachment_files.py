"""Where a worker may read an attachment's bytes from, decided once per file.

An archive row's ``local_path`` is data, not an instruction: a row (or a
symlink beside the archive) naming ``/etc/shadow`` must not put that file
into an export. So a file is copied only from an allowed folder: the
archive's own, the app's attachments folders, zexport's download cache and
the folders named with ``--attachment-root``, checked on its real path
(symlinks resolved). Anything else gets a placeholder saying why.

When ``local_path`` is empty or names nothing (every re-sync of the app
writes ``''`` while the file stays put), the app's own layout is looked in,
``<userData>/attachments/<conversationId>/<fileId>_<name>``, both beside the
archive and at the app's per-OS folder, before a download is asked for.

The decision (a real path, a reason, or "missing: ask for a download") is
made once per attachment and remembered until the conversation is exported,
so the fetch pipeline and the exporter never disagree, and the exporter
opens exactly the file that was checked (same device and inode).
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from zexport.core.locations import app_data_dir
from zexport.core.output import TEMP_PREFIX
from zexport.model import Attachment

APP_ATTACHMENTS = "attachments"  # <userData>/attachments, as the app names it
# The bits a copy may keep of its source's: never executable, never writable by others.
COPY_MODE_CAP = 0o644
_READ = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0)


@dataclass(frozen=True, slots=True)
class Located:
    """Where an attachment's bytes are: a checked ``path``, else the ``reason`` there
    are none; neither means missing (a download may get it)."""

    path: str | None = None
    reason: str | None = None
    ident: tuple[int, int] = (0, 0)  # (st_dev, st_ino) of the file that was checked
    mode: int = COPY_MODE_CAP  # what a copy is created with
    source_mode: int = 0  # the file's own permission bits

    @property
    def linkable(self) -> bool:
        """A hard link shares the source's bits: only for one a copy would not narrow."""
        return self.source_mode & ~COPY_MODE_CAP == 0

    @property
    def missing(self) -> bool:
        """Nothing on disk, and nothing refused: worth a download."""
        return self.path is None and self.reason is None


def app_attachment_dirs(archive_dir: str) -> list[str]:
    """The app's attachments folders: beside the archive, and in the app's per-OS folder."""
    return _unique([os.path.join(archive_dir, APP_ATTACHMENTS),
                    os.path.join(app_data_dir(), APP_ATTACHMENTS)])


def allowed_roots(archive_dir: str, cache: str, extra: Iterable[str] = ()) -> list[str]:
    """Every folder attachments may be copied from, as real paths."""
    return _unique([archive_dir, *app_attachment_dirs(archive_dir), cache, *extra])


def _unique(paths: Iterable[str]) -> list[str]:
    seen: list[str] = []
    for path in paths:
        real = os.path.realpath(path)
        if path and real not in seen:
            seen.append(real)
    return seen


def _safe_component(name: str | None) -> bool:
    """One file name, as the app would have joined it: no separator, no ``..``."""
    if not name or name in (".", ".."):
        return False
    return "/" not in name and "\x00" not in name and os.sep not in name


class AttachmentSources:
    """Decides, once per attachment, where its bytes may be read from."""

    def __init__(self, archive_dir: str, roots: Sequence[str],
                 app_dirs: Sequence[str] = (), cache: str | None = None) -> None:
        self.archive_dir = archive_dir
        self.roots = tuple(_unique(roots))
        # Only those that exist (looked at once per worker): a folder per conversation is
        # listed in each, and most machines have one of them at most.
        self.app_dirs = tuple(d for d in _unique(app_dirs) if os.path.isdir(d))
        # Downloads are zexport's own files (private to the cache): copies get the
        # export's usual mode, not the cache's 0600.
        self.cache = os.path.realpath(cache) if cache else None
        self._decided: dict[str, dict[str, Located]] = {}
        # conversation id -> {folder: names}: the app folders listed for it
        self._listings: dict[str, dict[str, list[str]]] = {}

    @classmethod
    def for_archive(cls, archive_dir: str, cache: str,
                    extra: Iterable[str] = ()) -> AttachmentSources:
        """The sources of a run on the archive in ``archive_dir``."""
        return cls(archive_dir, allowed_roots(archive_dir, cache, extra),
                   app_attachment_dirs(archive_dir), cache)

    # -- decisions ----------------------------------------------------------
    def locate(self, conversation_id: str, att: Attachment) -> Located:
        """Where ``att`` is on this machine, or why it is not copied (remembered)."""
        decided = self._decided.setdefault(conversation_id, {})
        found = decided.get(att.id)
        if found is None:
            found = decided[att.id] = self._decide(conversation_id, att)
        return found

    def accept(self, path: str) -> Located:
        """Check a file the controller downloaded (a path in the cache)."""
        return self._check(path, path) or Located(reason="file vanished before export")

    def forget(self, conversation_id: str) -> None:
        """Drop what was decided for a conversation once it is exported."""
        self._decided.pop(conversation_id, None)
        self._listings.pop(conversation_id, None)

    def _decide(self, conversation_id: str, att: Attachment) -> Located:
        refused: Located | None = None
        if att.local_path:
            path = os.path.join(self.archive_dir, att.local_path)  # an absolute one stays
            found = self._check(path, att.local_path)
            if found is not None and found.path is not None:
                return found
            refused = found  # refused or unreadable: the app's folder may still have it
        found = self._in_app_folders(conversation_id, att)
        if found is not None and (found.path is not None or refused is None):
            return found
        return refused or Located()

    def _in_app_folders(self, conversation_id: str, att: Attachment) -> Located | None:
        """The app's copy, ``<attachments>/<conversationId>/<fileId>_<name>``, if any."""
        if not (_safe_component(conversation_id) and _safe_component(att.file_id)):
            return None
        prefix = f"{att.file_id}_"
        exact = f"{prefix}{att.filename}" if _safe_component(att.filename) else None
        for base in self.app_dirs:
            folder = os.path.join(base, conversation_id)
            names = self._listing(conversation_id, folder)
            # The app looks a file up by its id prefix (findCachedFile); its own name first.
            candidates = ([exact] if exact in names else []) + [
                n for n in names if n.startswith(prefix) and n != exact]
            for name in candidates:
                found = self._check(os.path.join(folder, name), os.path.join(folder, name),
                                    skip_empty=True)
                if found is not None:
                    return found
        return None

    def _listing(self, conversation_id: str, folder: str) -> list[str]:
        listed = self._listings.setdefault(conversation_id, {})
        names = listed.get(folder)
        if names is None:
            try:
                names = sorted(n for n in os.listdir(folder) if not n.startswith(TEMP_PREFIX))
            except OSError:
                names = []
            listed[folder] = names
        return names

    def _check(self, path: str, shown: str, skip_empty: bool = False) -> Located | None:
        """A file at ``path`` we may copy, a reason we may not, or None: nothing there.

        The folder check is made on where the opened file really is: the kernel's
        name for the descriptor (Linux), else realpath(). Only a regular file is
        opened (a device is never opened because a row names it).
        """
        try:
            st = os.stat(path)
        except (FileNotFoundError, NotADirectoryError, ValueError):  # ValueError: a NUL
            return None
        except OSError as exc:
            return self._refused(path, shown) or Located(
                reason=f"unreadable: {exc.strerror or exc} ({shown})")
        if not stat.S_ISREG(st.st_mode):
            return self._refused(path, shown) or Located(
                reason=f"not copied: {shown} is not a regular file")
        try:
            fd = os.open(path, _READ)
        except FileNotFoundError:
            return None
        except OSError as exc:
            return self._refused(path, shown) or Located(
                reason=f"unreadable: {exc.strerror or exc} ({shown})")
        try:
            st = os.fstat(fd)
            real = _opened_path(fd) or os.path.realpath(path)
        finally:
            os.close(fd)
        if not self._allowed(real):
            return self._outside(shown, real)
        if not stat.S_ISREG(st.st_mode):  # swapped since the stat
            return Located(reason=f"not copied: {shown} is not a regular file")
        if skip_empty and st.st_size == 0:
            return None  # the app, too, ignores an empty file (an interrupted download)
        own = stat.S_IMODE(st.st_mode)
        mode = COPY_MODE_CAP if self.cache and _under(real, self.cache) else own & COPY_MODE_CAP
        return Located(path=real, ident=(st.st_dev, st.st_ino), mode=mode, source_mode=own)

    def _refused(self, path: str, shown: str) -> Located | None:
        """The refusal for a file outside the allowed folders (None when inside): said
        first, before anything about the file itself."""
        real = os.path.realpath(path)
        return None if self._allowed(real) else self._outside(shown, real)

    @staticmethod
    def _outside(shown: str, real: str) -> Located:
        where = shown if real == shown else f"{shown} (which is {real})"
        return Located(reason=f"not copied: {where} is outside the archive's folder, the"
                       " app's attachments and zexport's cache (see --attachment-root)")

    def _allowed(self, real: str) -> bool:
        return any(_under(real, root) for root in self.roots)


def _opened_path(fd: int) -> str | None:
    """Where the kernel says an open file is (Linux), or None where it cannot say."""
    try:
        return os.readlink(f"/proc/self/fd/{fd}")
    except OSError:
        return None


def _under(real: str, root: str) -> bool:
    prefix = root if root.endswith(os.sep) else root + os.sep
    return real == root or real.startswith(prefix)


def open_checked(found: Located) -> int:
    """Open the file ``found`` names, refusing one that is not the file checked.

    Between the check and the copy the name may have been given to another
    file (a swap for a symlink, or for another file); the copy reads the
    descriptor returned here, so it is the checked file or nothing.
    """
    assert found.path is not None
    fd = os.open(found.path, _READ)
    st = os.fstat(fd)
    if (st.st_dev, st.st_ino) != found.ident or not stat.S_ISREG(st.st_mode):
        os.close(fd)
        raise FileChangedError(f"{found.path} changed after it was checked")
    os.set_blocking(fd, True)
    return fd


class FileChangedError(OSError):
    """The file at a checked path is no longer the one that was checked."""
