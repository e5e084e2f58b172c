"""Safe file output: atomic writes, paths that cannot leave the output folder.

Every file zexport or a plugin writes goes through :func:`atomic_write`: the
bytes go to a temporary file in the same folder, which is then renamed over
the target, so a crash or a cancel never leaves a half-written file. Names
of temporaries start with :data:`TEMP_PREFIX` so a later run can sweep them.

Paths are built only from single, sanitized components and checked with
:func:`inside`; symlinks inside the output folder are never followed. The
files zexport keeps for itself (report spools, worker logs, the lock) are
opened through :func:`create_new` and :func:`open_append`: relative to their
folder opened without following a link, never through a link or a second
hard link, so a link planted in ``<out>/.zexport`` cannot redirect a write
(or a read back) to another file.
"""

from __future__ import annotations

import contextlib
import errno
import itertools
import os
import stat
from collections.abc import Iterator
from typing import BinaryIO

TEMP_PREFIX = ".zexport-tmp-"
_counter = itertools.count()
_pid = os.getpid()  # in every temporary name: a system call saved per file
_CLOEXEC = getattr(os, "O_CLOEXEC", 0)
_CREATE = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | _CLOEXEC
_CREATE_RW = os.O_RDWR | os.O_APPEND | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | _CLOEXEC
_APPEND = os.O_WRONLY | os.O_APPEND | os.O_NOFOLLOW | os.O_NOCTTY | _CLOEXEC
_DIR = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | _CLOEXEC
# O_NONBLOCK: opening a FIFO planted in place of a file must not hang the run.
_READ = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | _CLOEXEC


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


def ensure_dirs(root: str, relative: str) -> str:
    """Make ``root/relative`` and every folder between, one level at a time, refusing a
    symlink at any level (``os.makedirs`` would follow one); return the path."""
    path = root
    for part in relative.split("/"):
        if part in ("", "."):
            continue
        path = os.path.join(path, part)
        ensure_dir(path)
    return path


def _open_parent(path: str) -> tuple[int, str]:
    """The folder of ``path`` opened without following a link, and the last name."""
    folder, name = os.path.split(path)
    try:
        return os.open(folder or ".", _DIR), name
    except OSError as exc:
        if exc.errno in (errno.ELOOP, errno.ENOTDIR):
            raise UnsafePathError(f"not a folder (or a symlink): {folder}") from None
        raise


def _unlink_entry(name: str, folder_fd: int) -> None:
    """Remove the entry ``name`` (a file, a link: never what a link points at)."""
    try:
        os.unlink(name, dir_fd=folder_fd)
    except FileNotFoundError:
        pass
    except IsADirectoryError:
        raise UnsafePathError(f"a folder is where a file should be: {name}") from None
    except PermissionError as exc:  # Linux says EPERM for a folder
        if stat.S_ISDIR(os.stat(name, dir_fd=folder_fd, follow_symlinks=False).st_mode):
            raise UnsafePathError(f"a folder is where a file should be: {name}") from None
        raise exc


def _is_own_file(st: os.stat_result) -> bool:
    """A regular file with no second name: writing it changes nothing else."""
    return stat.S_ISREG(st.st_mode) and st.st_nlink == 1


def create_new(path: str, mode: int = 0o600) -> int:
    """Create ``path`` afresh; return a descriptor open for reading and appending.

    For files a run starts from nothing (the report's spools): whatever is at
    the name (an earlier run's leftover, a planted symlink or hard link) is
    removed first, the entry only, and the file is made with O_EXCL in its
    folder, itself opened without following a link.
    """
    folder_fd, name = _open_parent(path)
    try:
        _unlink_entry(name, folder_fd)
        return os.open(name, _CREATE_RW, mode, dir_fd=folder_fd)
    finally:
        os.close(folder_fd)


def open_append(path: str, mode: int = 0o644) -> int:
    """Open ``path`` for appending, creating it; return a write-only descriptor.

    For logs kept across runs. An existing regular file with a single link is
    appended to; anything else at the name (a symlink, a FIFO, a hard link
    shared with another file) is replaced by a new file, never written into.
    """
    folder_fd, name = _open_parent(path)
    try:
        try:
            st = os.stat(name, dir_fd=folder_fd, follow_symlinks=False)
        except FileNotFoundError:
            st = None
        if st is not None and _is_own_file(st):
            fd = os.open(name, _APPEND, dir_fd=folder_fd)
            now = os.fstat(fd)
            if (now.st_dev, now.st_ino) == (st.st_dev, st.st_ino) and _is_own_file(now):
                return fd
            os.close(fd)  # swapped between the look and the open: start a new one
        _unlink_entry(name, folder_fd)
        return os.open(name, _CREATE | os.O_APPEND, mode, dir_fd=folder_fd)
    finally:
        os.close(folder_fd)


def open_read(path: str) -> BinaryIO | None:
    """Open a file zexport wrote under the output folder for reading back, or None
    when there is none; refuses a symlink or anything but a regular file there."""
    folder_fd, name = _open_parent(path)
    try:
        fd = os.open(name, _READ, dir_fd=folder_fd)
    except FileNotFoundError:
        return None
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise UnsafePathError(f"refusing to follow symlink: {path}") from None
        raise
    finally:
        os.close(folder_fd)
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise UnsafePathError(f"not a regular file: {path}")
    os.set_blocking(fd, True)
    return os.fdopen(fd, "rb")


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


def atomic_copy(src_fd: int, target: str, mode: int = 0o644) -> None:
    """Copy the open file ``src_fd`` to ``target`` atomically (as atomic_write does).

    The copy is created with ``mode`` (the umask narrows it further): the
    caller passes the source's own bits, capped, so a copy is never more
    readable, writable or executable than what it was copied from.
    """
    tmp = _temp_name(target)
    try:
        dst = os.open(tmp, _CREATE, mode & 0o666)
        try:
            _copy_fd(src_fd, dst)
        finally:
            os.close(dst)
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
        import shutil  # here: launch.py imports this module before anything heavy

        os.lseek(src, 0, os.SEEK_SET)
        os.lseek(dst, 0, os.SEEK_SET)
        os.ftruncate(dst, 0)
        with os.fdopen(os.dup(src), "rb") as fsrc, os.fdopen(os.dup(dst), "wb") as fdst:
            shutil.copyfileobj(fsrc, fdst, 64 * 1024)


def atomic_link(source: str, target: str, expect: tuple[int, int]) -> bool:
    """Hard-link ``source`` at ``target`` (replacing it) if it is the file ``expect``
    names (``(st_dev, st_ino)``, as checked by the caller).

    False when it did not link: another file system, a file system without
    hard links, or another file at ``source`` by now; the caller copies instead.
    """
    tmp = _temp_name(target)
    try:
        os.link(source, tmp, follow_symlinks=False)
    except OSError:
        return False
    try:
        st = os.lstat(tmp)
        if (st.st_dev, st.st_ino) != expect:
            _unlink_quietly(tmp)
            return False
        os.replace(tmp, target)
    except BaseException:
        _unlink_quietly(tmp)
        raise
    return True


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
