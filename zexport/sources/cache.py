"""Converted archives, cached by the input's identity so a re-run converts nothing.

The key hashes the source (name and version), the input's absolute path and
its size and modification time (for a folder, every file's); a newer export
is a new key. An entry is built in a temporary folder and renamed into place
when complete, so an interrupted conversion is never used. Entries other
than the newest few per source are removed.
"""

from __future__ import annotations

import hashlib
import os
import shutil

import orjson

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


def converted(source: Source, bundle: Bundle, root: str) -> tuple[str, list[str], bool]:
    """(archive path, report notes, whether it was converted now) for ``bundle``."""
    entry = os.path.join(root, identity(source, bundle))
    db = os.path.join(entry, "archive.db")
    notes_file = os.path.join(entry, "notes.json")
    if os.path.isfile(db) and os.path.isfile(notes_file):
        with open(notes_file, "rb") as cached:
            return db, list(orjson.loads(cached.read())), False
    os.makedirs(root, exist_ok=True)
    shutil.rmtree(entry, ignore_errors=True)  # an incomplete entry (killed mid-way)
    tmp = f"{entry}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    os.makedirs(tmp)
    try:
        writer = ArchiveWriter(os.path.join(tmp, "archive.db"))
        into = Conversion(writer, os.path.join(entry, "files"))
        try:
            source.convert(bundle, into)
        except BaseException:
            writer.abort()
            raise
        writer.close()
        notes = into.notes + [f"not converted: {f}" for f in into.failures]
        with open(os.path.join(tmp, "notes.json"), "wb") as f:
            f.write(orjson.dumps(notes))
        if os.path.isdir(os.path.join(entry, "files")):  # extracted beside, already in place
            os.rename(os.path.join(entry, "files"), os.path.join(tmp, "files"))
        shutil.rmtree(entry, ignore_errors=True)
        os.rename(tmp, entry)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        shutil.rmtree(os.path.join(entry, "files"), ignore_errors=True)
        raise
    _prune(root, source.name, keep=entry)
    return db, notes, True


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
