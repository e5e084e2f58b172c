"""The output folder during a run: locked, logged to, swept, marked as running.

Opened before anything is written (:meth:`OutputFolder.open` takes the lock
or refuses), left by :meth:`OutputFolder.leave` once the run is over: the
temporaries a cancelled or killed worker may have left are swept, and the
``running`` marker goes, so the next run need not walk the tree for them.
"""

from __future__ import annotations

import contextlib
import os

from zexport.core.lock import OutputLock
from zexport.core.output import UnsafePathError, ensure_dir, sweep_temporaries
from zexport.core.statedir import MANIFEST_NAME
from zexport.errors import OutputError
from zexport.run.log import RunLog, run_log_path
from zexport.run.report import RunReport
from zexport.run.steps import undo_fresh_state

# In the state folder while a run may leave temporaries; a run that finds it sweeps them.
RUNNING_MARKER = "running"


class OutputFolder:
    """One run's hold on its output folder."""

    def __init__(self, out: str, state_dir: str, shown: str) -> None:
        self.out = out
        self.state_dir = state_dir
        self.shown = shown  # as the user gave it, for messages
        self.lock = OutputLock(state_dir)
        self.run_log: RunLog | None = None  # <out>/.zexport/run.log, once the lock is ours
        self.fresh = False  # the output folder had no state folder before this run
        self.marker = os.path.join(state_dir, RUNNING_MARKER)

    def open(self, report: RunReport) -> None:
        """Create and lock the folder, start its log, sweep what a killed run left."""
        self.fresh = not os.path.lexists(self.state_dir)  # a first export here
        try:
            os.makedirs(self.out, exist_ok=True)
            ensure_dir(self.state_dir)
            # Lock before sweeping: another run's temporaries are files in flight.
            self.lock.acquire(self.out)
            self.run_log = RunLog(run_log_path(self.out))
            report.spool_to(self.state_dir)
        except (OSError, UnsafePathError) as exc:  # read-only, no permission, not a folder
            self.release()
            reason = str(exc)
            if isinstance(exc, OSError) and exc.strerror:
                reason = exc.strerror + (f" ({exc.filename})" if exc.filename else "")
            raise OutputError(
                f"cannot write to the output folder {self.shown}: {reason}") from None
        # Temporaries are left only by a run that did not end cleanly (killed, a crash),
        # and that run left its marker: walking a 10,000-folder tree for them cost an
        # unchanged re-run 1 s, most of its time.
        if os.path.lexists(self.marker) or not os.path.lexists(
                os.path.join(self.state_dir, MANIFEST_NAME)):
            swept = sweep_temporaries(self.out)
            if swept:
                report.notes.append(f"removed {swept} temporary files left by an earlier run")
        try:
            os.close(os.open(self.marker, os.O_WRONLY | os.O_CREAT | os.O_NOFOLLOW, 0o644))
        except OSError:  # a symlink in its place: sweep every time rather than follow it
            pass

    def leave(self, sweep: bool, clean: bool) -> None:
        """The run is over: ``sweep`` for temporaries; ``clean``: the tree holds none now."""
        if sweep:
            sweep_temporaries(self.out)
        if clean:
            with contextlib.suppress(OSError):
                os.unlink(self.marker)

    def release(self, undo_fresh: bool = False) -> None:
        """Close the log and unlock; ``undo_fresh``: remove what a failed first run made."""
        if self.run_log is not None:
            self.run_log.close()
            self.run_log = None
        if undo_fresh and self.fresh:
            undo_fresh_state(self.state_dir)  # under the lock still; keeps run.log
        self.lock.release()
