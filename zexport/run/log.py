"""The controller's log, ``<out>/.zexport/run.log``: what went wrong, out of the user's way.

Frames dropped for not fitting the protocol, rejected control requests and
tracebacks of a format's ``start``/``finish`` go here, not to the terminal:
any same-user process can send frames, and must not be able to write into
the progress display. The file is made afresh by each run (an earlier run's
file is removed first, and a symlink planted in its place is never followed).
"""

from __future__ import annotations

import logging
import os

from zexport.core.statedir import STATE_DIR

RUN_LOG_NAME = "run.log"
_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_APPEND | os.O_NOFOLLOW | os.O_CLOEXEC


def run_log_path(out_dir: str) -> str:
    """Where a run exporting to ``out_dir`` logs."""
    return os.path.join(out_dir, STATE_DIR, RUN_LOG_NAME)


class RunLog:
    """Sends every ``zexport.*`` log record of this process to the run's log file."""

    def __init__(self, path: str) -> None:
        self.path = path
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass
        stream = os.fdopen(os.open(path, _FLAGS, 0o600), "a", encoding="utf-8",
                           errors="backslashreplace")
        self.handler = logging.StreamHandler(stream)
        self.handler.setFormatter(logging.Formatter(
            "%(asctime)s %(levelname)s %(name)s: %(message)s"))
        self.logger = logging.getLogger("zexport")
        self.saved = (self.logger.propagate, self.logger.level)
        self.logger.addHandler(self.handler)
        self.logger.propagate = False  # not to the terminal (nor pytest's capture)
        self.logger.setLevel(logging.INFO)

    def close(self) -> None:
        """Stop logging to the file and close it."""
        self.logger.removeHandler(self.handler)
        self.logger.propagate, level = self.saved
        self.logger.setLevel(level)
        self.handler.close()
