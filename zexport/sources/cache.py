"""Converted archives, cached by the input's identity so a re-run converts nothing.

The key hashes the source (name and version), the input's absolute path and
its size and modification time (for a folder, every file's); a newer export
is a new key. An entry is built in a temporary folder and renamed into place
when complete, so an interrupted conversion is never used; what the
conversion noted and could not convert is kept beside it (``notes.json``),
so a cached run reports the same. Entries other than the newest few per
source are removed.
"""

from __future__ import annotations

import hashlib
import os
import shutil
from dataclasses import dataclass

import orjson

from zexport.core.collector import fewer_collections
from zexport.sources.base import Conversion, Source
from zexport.sources.bundle import Bundle, FolderBundle
from zexport.sources.writer import ArchiveWriter

KEEP = 4  # entries kept per source


def identity(source: Source, bundle: Bundle) -> str:
    h = hashlib.blake2b(digest_size=10)
    h.update(f"{source.name}\0{source.version}\0{os.path.abspath(bundle.path)}".encode())
    if isinstance(bundle, FolderBundle):
        for name in bundle.names():
            st = os.lstat(os.path.join(bundle.path, *name.split("/")))
            h.update(f"\0{name}\0{st.st_size}\0{st.st_mtime_ns}".encode())
    else:
        st = os.stat(bundle.path)
        h.update(f"\0{st.st_size}\0{st.st_mtime_ns}".encode())
    return f"{source.name}-{h.hexdigest()}"


@dataclass
class Converted:
    """A converted archive, what the report should note, and what could not be converted."""

    db: str
    notes: list[str]
    errors: list[str]
    fresh: bool  # converted by this call (not found in the cache)


class NothingConverted(Exception):
    """The input broke before its first conversation: there is nothing to export."""


def converted(source: Source, bundle: Bundle, root: str, processes: int = 1) -> Converted:
    """The archive of ``bundle``: from the cache, else converted now (and cached).

    Raises :class:`NothingConverted` (caching nothing) when the conversion
    failed without a single conversation to show for it.
    """
    entry = os.path.join(root, identity(source, bundle))
    db = os.path.join(entry, "archive.db")
    notes_file = os.path.join(entry, "notes.json")
    if os.path.isfile(db) and os.path.isfile(notes_file):
        with open(notes_file, "rb") as cached:
            kept = orjson.loads(cached.read())
        if isinstance(kept, dict):
            return Converted(db, list(kept.get("notes", [])), list(kept.get("errors", [])),
                             False)
    os.makedirs(root, exist_ok=True)
    shutil.rmtree(entry, ignore_errors=True)  # an incomplete entry (killed mid-way)
    tmp = f"{entry}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    os.makedirs(tmp)
    try:
        writer = ArchiveWriter(os.path.join(tmp, "archive.db"))
        into = Conversion(writer, os.path.join(entry, "files"), processes=processes)
        try:
            with fewer_collections():
                source.convert(bundle, into)
        except BaseException:
            writer.abort()
            raise
        if writer.count == 0 and into.failures:
            writer.abort()
            raise NothingConverted(into.failures[0])
        writer.close()
        with open(os.path.join(tmp, "notes.json"), "wb") as f:
            f.write(orjson.dumps({"notes": into.notes, "errors": into.failures}))
        if os.path.isdir(os.path.join(entry, "files")):  # extracted beside, already in place
            os.rename(os.path.join(entry, "files"), os.path.join(tmp, "files"))
        shutil.rmtree(entry, ignore_errors=True)
        os.rename(tmp, entry)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        shutil.rmtree(os.path.join(entry, "files"), ignore_errors=True)
        raise
    _prune(root, source.name, keep=entry)
    return Converted(db, into.notes, into.failures, True)


def _prune(root: str, name: str, keep: str) -> None:
    entries = []
    for e in os.listdir(root):
        path = os.path.join(root, e)
        if e.startswith(f"{name}-") and ".tmp-" not in e and path != keep:
            try:
                entries.append((os.stat(path).st_mtime, path))
            except OSError:
                continue
    entries.sort(reverse=True)
    for _mtime, path in entries[KEEP - 1:]:
        shutil.rmtree(path, ignore_errors=True)
