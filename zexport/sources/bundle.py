"""An input's files by relative name, whatever holds them: a ZIP, a folder or one file.

Sources look inputs up by member name and read members as streams, so a
multi-gigabyte export is never unpacked: a ZIP member is decompressed while
it is parsed, and only the members a conversation references are copied out
(:meth:`Bundle.extract`). A folder is walked without following symlinks.
"""

from __future__ import annotations

import os
import shutil
import stat
import zipfile
from typing import IO

from zexport.errors import ArchiveError

SQLITE_MAGIC = b"SQLite format 3\x00"


class Bundle:
    """A read-only view of an input's files, named by POSIX relative paths."""

    def __init__(self, path: str) -> None:
        self.path = path

    def names(self) -> list[str]:
        """Every member's name (no folders)."""
        raise NotImplementedError

    def open(self, name: str) -> IO[bytes]:
        """The member as a binary stream (``KeyError`` if there is none)."""
        raise NotImplementedError

    def local_file(self, name: str) -> str | None:
        """The member's own path on disk, when it has one (folders and plain files)."""
        return None

    def size(self, name: str) -> int | None:
        """The member's (uncompressed) size in bytes, when it is known without reading it."""
        own = self.local_file(name)
        try:
            return os.stat(own).st_size if own is not None else None
        except OSError:
            return None

    def has(self, name: str) -> bool:
        return name in self._name_set()

    def head(self, name: str, size: int = 64) -> bytes:
        with self.open(name) as f:
            return f.read(size)

    def extract(self, name: str, target: str) -> str:
        """The member as a file: its own path if it has one, else a copy at ``target``."""
        own = self.local_file(name)
        if own is not None:
            return own
        os.makedirs(os.path.dirname(target), exist_ok=True)
        with self.open(name) as src, open(target, "wb") as dst:
            shutil.copyfileobj(src, dst, 1 << 20)
        return target

    def nested(self, name: str) -> Bundle:
        """A ZIP member as a bundle of its own (Claude's ``conversations-000.zip``)."""
        own = self.local_file(name)
        return open_zip(own) if own is not None else ZipBundle(
            f"{self.path}!{name}", _zip(self.open(name), f"{self.path}!{name}"))

    def _name_set(self) -> set[str]:
        cached: set[str] | None = getattr(self, "_names_cache", None)
        if cached is None:
            cached = set(self.names())
            self._names_cache = cached
        return cached

    def close(self) -> None:
        """Release what the bundle holds open."""


def _zip(source: str | IO[bytes], label: str) -> zipfile.ZipFile:
    try:
        return zipfile.ZipFile(source)
    except (zipfile.BadZipFile, OSError, EOFError, ValueError) as exc:
        raise ArchiveError(f"not a readable ZIP file (truncated or damaged: {exc}): {label}"
                           ) from None


class ZipBundle(Bundle):
    """A ZIP read in place: members are decompressed as they are read."""

    def __init__(self, path: str, zf: zipfile.ZipFile) -> None:
        super().__init__(path)
        self.zf = zf
        self._infos = {i.filename: i for i in zf.infolist() if not i.is_dir()}

    def names(self) -> list[str]:
        return list(self._infos)

    def open(self, name: str) -> IO[bytes]:
        return self.zf.open(self._infos[name])

    def size(self, name: str) -> int | None:
        info = self._infos.get(name)
        return info.file_size if info is not None else None

    def close(self) -> None:
        self.zf.close()


class FolderBundle(Bundle):
    """An unpacked export; symlinks are neither followed nor listed."""

    def names(self) -> list[str]:
        found: list[str] = []
        for top, dirs, files in os.walk(self.path, followlinks=False):
            rel = os.path.relpath(top, self.path)
            dirs.sort()
            for f in sorted(files):
                full = os.path.join(top, f)
                if stat.S_ISREG(os.lstat(full).st_mode):
                    found.append(f if rel == "." else f"{rel}/{f}".replace(os.sep, "/"))
        return found

    def open(self, name: str) -> IO[bytes]:
        if not self.has(name):
            raise KeyError(name)
        return open(os.path.join(self.path, *name.split("/")), "rb")

    def local_file(self, name: str) -> str | None:
        return os.path.join(self.path, *name.split("/")) if self.has(name) else None


class FileBundle(Bundle):
    """A single JSON (or SQLite) file given as the input: one member, its basename."""

    def names(self) -> list[str]:
        return [os.path.basename(self.path)]

    def open(self, name: str) -> IO[bytes]:
        if name != os.path.basename(self.path):
            raise KeyError(name)
        return open(self.path, "rb")

    def local_file(self, name: str) -> str | None:
        return self.path if name == os.path.basename(self.path) else None


def open_zip(path: str) -> ZipBundle:
    return ZipBundle(path, _zip(path, path))


def open_bundle(path: str) -> Bundle:
    """The bundle for an input path: a folder, a ZIP (by its bytes) or a single file.

    Raises :class:`ArchiveError` with one sentence (creating nothing) when the
    path does not exist, is a symlink's target we would not follow, or is a
    damaged ZIP.
    """
    if not os.path.lexists(path):
        raise ArchiveError(f"input not found: {path}")
    if os.path.islink(path):
        raise ArchiveError(f"input is a symlink; give the real path: {path}")
    if os.path.isdir(path):
        return FolderBundle(path)
    if not os.path.isfile(path):
        raise ArchiveError(f"input is not a file or folder: {path}")
    with open(path, "rb") as f:
        magic = f.read(4)
    if magic in (b"PK\x03\x04", b"PK\x05\x06") or path.lower().endswith(".zip"):
        return open_zip(path)
    return FileBundle(path)
