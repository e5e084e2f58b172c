"""Safe file output: atomic writes, paths that cannot leave the output folder.

Every file zexport or a plugin writes goes through :func:`atomic_write`: the
bytes go to a temporary file in the same folder, which is then renamed over
the target, so a crash or a cancel never leaves a half-written file. Names
of temporaries start with :data:`TEMP_PREFIX` so a later run can sweep them.

Paths are built only from single, sanitized components and checked with
:func:`inside`; symlinks inside the output folder are never followed.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import shutil
import stat
from collections.abc import Iterator
from typing import BinaryIO

TEMP_PREFIX = ".zexport-tmp-"
_counter = itertools.count()
_pid = os.getpid()  # in every temporary name: a system call saved per file
_CREATE = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0)


def _after_fork() -> None:
    global _pid
    _pid = os.getpid()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork)


class UnsafePathError(ValueError):
    """A path would leave the output folder or pass through a symlink."""


def inside(root: str, relative: str) -> str:
    """Return ``root/relative`` if it stays inside ``root`` and crosses no symlink.

    ``relative`` uses ``/`` separators; absolute paths, ``..``, empty or
    dot components and backslashes are refused.
    """
    if not relative or relative.startswith("/") or "\\" in relative or "\x00" in relative:
        raise UnsafePathError(f"unsafe path: {relative!r}")
    parts = relative.split("/")
    if any(p in ("", ".", "..") for p in parts):
        raise UnsafePathError(f"unsafe path: {relative!r}")
    path = root
    for part in parts[:-1]:
        path = os.path.join(path, part)
        try:
            if stat.S_ISLNK(os.lstat(path).st_mode):
                raise UnsafePathError(f"refusing to follow symlink: {path}")
        except FileNotFoundError:
            pass
    return os.path.join(root, *parts)


def ensure_dir(path: str) -> None:
    """Create ``path`` (one level) unless it exists; refuse a symlink in its place."""
    try:
        os.mkdir(path)
    except FileExistsError:
        st = os.lstat(path)
        if not stat.S_ISDIR(st.st_mode):
            raise UnsafePathError(f"not a folder (or a symlink): {path}") from None


def _temp_name(target: str) -> str:
    return os.path.join(os.path.dirname(target), f"{TEMP_PREFIX}{_pid}-{next(_counter)}")


def atomic_write(target: str, data: bytes) -> None:
    """Write ``data`` to ``target`` atomically (temp file in the same folder, then rename).

    A symlink at ``target`` is replaced, not followed. No fsync: atomicity
    protects against crashes and cancels of zexport; an fsync per file would
    cost more than the whole render on a disk.
    """
    tmp = _temp_name(target)
    fd = os.open(tmp, _CREATE, 0o644)
    try:
        try:
            # os.write, not a file object: one call for the usual file, no buffer copy.
            view, written = memoryview(data), 0
            while written < len(view):
                written += os.write(fd, view[written:])
        finally:
            os.close(fd)
        os.replace(tmp, target)
    except BaseException:
        _unlink_quietly(tmp)
        raise


@contextlib.contextmanager
def atomic_file(target: str) -> Iterator[BinaryIO]:
    """A file object whose contents appear at ``target`` only if the block succeeds.

    For outputs too big to hold in memory (a whole-export JSONL): the same
    temp-then-rename guarantee as :func:`atomic_write`, written in pieces.
    """
    tmp = _temp_name(target)
    fd = os.open(tmp, _CREATE, 0o644)
    try:
        with os.fdopen(fd, "wb") as fh:
            yield fh
        os.replace(tmp, target)
    except BaseException:
        _unlink_quietly(tmp)
        raise


def atomic_copy(source: str, target: str) -> None:
    """Copy a file to ``target`` atomically, with the same guarantees as atomic_write."""
    tmp = _temp_name(target)
    try:
        src = os.open(source, os.O_RDONLY)
        try:
            dst = os.open(tmp, _CREATE, 0o644)
            try:
                _copy_fd(src, dst)
            finally:
                os.close(dst)
        finally:
            os.close(src)
        os.replace(tmp, target)
    except BaseException:
        _unlink_quietly(tmp)
        raise


def _copy_fd(src: int, dst: int) -> None:
    """Copy in the kernel where it can (sendfile), else through a small buffer."""
    try:
        while os.sendfile(dst, src, None, 1 << 30):
            pass
    except OSError:
        os.lseek(src, 0, os.SEEK_SET)
        os.lseek(dst, 0, os.SEEK_SET)
        os.ftruncate(dst, 0)
        with os.fdopen(os.dup(src), "rb") as fsrc, os.fdopen(os.dup(dst), "wb") as fdst:
            shutil.copyfileobj(fsrc, fdst, 64 * 1024)


def atomic_link(source: str, target: str) -> None:
    """Hard-link ``source`` at ``target`` (replacing it); copy across file systems."""
    tmp = _temp_name(target)
    try:
        os.link(source, tmp)
    except OSError:
        atomic_copy(source, target)
        return
    try:
        os.replace(tmp, target)
    except BaseException:
        _unlink_quietly(tmp)
        raise


def sweep_temporaries(root: str) -> int:
    """Remove leftover temporaries (from a crashed run) under ``root``; return the count."""
    removed = 0
    for folder, dirs, files in os.walk(root, followlinks=False):
        for name in files:
            if name.startswith(TEMP_PREFIX):
                _unlink_quietly(os.path.join(folder, name))
                removed += 1
        dirs[:] = [d for d in dirs if not os.path.islink(os.path.join(folder, d))]
    return removed


def _unlink_quietly(path: str) -> None:
    try:
        os.unlink(path)
    except OSError:
        pass
