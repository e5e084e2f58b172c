"""Starting worker processes: early, while the controller is still importing.

Why early: a worker is a fresh interpreter that imports pyzmq, APSW and the
exporter before it can say ``hello`` (~0.15 s of CPU), and the controller
spends about as long importing its own modules and opening the archive.
Done one after the other, that start-up is paid in full by every run; done
side by side, the worker boots on the CPU the importing controller leaves
idle. So ``zexport run`` starts its workers first (:class:`EarlyWorkers`,
from the CLI, before :mod:`zexport.run.controller` is imported), and the
controller adopts them when it binds their sockets.

This module imports nothing heavy: it runs before everything else.

A worker started early connects to its ``w<N>`` endpoint before the
controller has bound it; ZeroMQ queues its ``hello`` and reconnects until the
socket exists (the worker asks for a short reconnect interval). Its stderr
goes to a log in the run's private folder until the controller's ``config``
names the log in the output folder (which is only known to be writable
later); :meth:`EarlyWorkers.boot_log` is appended there at the end.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
from collections.abc import Iterator

from zexport.core.output import open_append
from zexport.core.runtime import new_run_dir, remove_run_dir

# An environment variable whose name holds one of these words is not passed to workers.
_SECRET_WORDS = ("TOKEN", "SECRET", "PASSWORD", "COOKIE", "AUTH", "KEY", "CREDENTIAL")


def worker_env() -> dict[str, str]:
    """The environment a worker gets: ours, minus anything that looks like a secret."""
    return {k: v for k, v in os.environ.items()
            if not any(word in k.upper() for word in _SECRET_WORDS)}


@contextlib.contextmanager
def sigint_ignored_in_children() -> Iterator[None]:
    """Spawn workers with SIGINT already ignored.

    Ctrl-C reaches the whole process group, and a worker still importing
    modules would die of KeyboardInterrupt before it could ignore SIGINT
    itself. An ignored disposition survives exec (and Python keeps it), so
    the worker is immune from its first instruction. SIGINT is blocked in the
    meantime, so a Ctrl-C meant for the controller stays pending, not lost.
    """
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    old = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, old)
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})


def start_worker(run_dir: str, index: int, log_path: str,
                 format_name: str) -> subprocess.Popen[bytes]:
    """Start ``python -m zexport.work.worker RUN_DIR INDEX FORMAT``.

    Its stderr is appended to ``log_path``."""
    log_fd = open_append(log_path)  # never through a link planted at the log's name
    try:
        with sigint_ignored_in_children():
            return subprocess.Popen(
                [sys.executable, "-m", "zexport.work.worker", run_dir, str(index), format_name],
                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=log_fd,
                env=worker_env(), close_fds=True,
            )
    finally:
        os.close(log_fd)


class EarlyWorkers:
    """Workers started before the controller exists, and the run folder they use.

    Use as a context manager around the controller's whole life: on the way
    out it kills the workers nobody adopted (the run was refused, or had
    nothing to render) and removes the run folder if the controller never
    took it over.
    """

    def __init__(self, count: int, format_name: str) -> None:
        self.run_id, self.run_dir = new_run_dir()
        self.adopted = False  # the controller took the run folder (it removes it)
        self.procs: list[subprocess.Popen[bytes] | None] = []
        try:
            for index in range(count):
                self.procs.append(
                    start_worker(self.run_dir, index, self.boot_log(index), format_name))
        except BaseException:
            self.close()
            raise

    def boot_log(self, index: int) -> str:
        """Where worker ``index`` writes until the controller names its log."""
        return os.path.join(self.run_dir, f"boot-{index}.log")

    def adopt(self) -> tuple[str, str]:
        """Hand the run folder to the controller: ``(run_id, run_dir)``."""
        self.adopted = True
        return self.run_id, self.run_dir

    def take(self, index: int) -> subprocess.Popen[bytes] | None:
        """The started worker ``index``, once (None if there is none)."""
        if index < len(self.procs):
            proc, self.procs[index] = self.procs[index], None
            return proc
        return None

    def close(self) -> None:
        """Kill and reap the workers not taken; remove the folder if not adopted."""
        for proc in self.procs:
            if proc is not None and proc.poll() is None:
                proc.kill()
            if proc is not None:
                proc.wait()
        self.procs = []
        if not self.adopted:
            remove_run_dir(self.run_dir)

    def __enter__(self) -> EarlyWorkers:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
