"""The output-folder lock: one running export per output folder.

Two exports writing the same folder would race on every file, and the
second one's start-up sweep of temporary files would delete the first
one's files in flight. So a controller takes an exclusive ``flock`` on
``<out>/.zexport/lock`` before it touches anything in the folder and holds
it until it exits; the kernel releases it when the process dies, however it
dies, so a crashed run never leaves a stale lock behind. The file also
names the holder (pid and run id) so the refusal can say who holds it.
"""

from __future__ import annotations

import errno
import fcntl
import os
import stat

from zexport.core.output import UnsafePathError
from zexport.errors import OutputError

LOCK_NAME = "lock"


class OutputLock:
    """An exclusive, non-blocking lock on an output folder's state folder."""

    def __init__(self, state_dir: str) -> None:
        self.path = os.path.join(state_dir, LOCK_NAME)
        self.fd: int | None = None

    def acquire(self, out: str, run_id: str = "") -> None:
        """Take the lock or raise :class:`OutputError` naming the run that holds it."""
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_NOCTTY
                         | os.O_NONBLOCK | os.O_CLOEXEC, 0o600)
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                raise UnsafePathError(f"refusing to follow symlink: {self.path}") from None
            raise
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode) or st.st_nlink != 1:  # it is truncated and written
            os.close(fd)
            raise UnsafePathError(f"not a file of its own (a FIFO, a hard link): {self.path}")
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 200, 0).decode("utf-8", "replace").split()
            os.close(fd)
            who = ""
            if len(holder) >= 2:
                who = f" (pid {holder[0]}, run {holder[1]}; `zexport cancel --run {holder[1]}`"
                who += " stops it)"
            raise OutputError(
                f"another zexport run is exporting to {out}{who}; "
                "wait for it to finish or cancel it") from None
        except BaseException:
            os.close(fd)
            raise
        self.fd = fd
        self.note(run_id)

    def note(self, run_id: str) -> None:
        """Record who holds the lock (pid and run id), for the refusal message."""
        if self.fd is None:
            return
        os.ftruncate(self.fd, 0)
        os.pwrite(self.fd, f"{os.getpid()} {run_id or '-'}\n".encode(), 0)

    def release(self) -> None:
        """Drop the lock (closing the descriptor releases the flock)."""
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None
