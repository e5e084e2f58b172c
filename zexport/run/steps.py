"""A format's per-run steps, ``start`` and ``finish``, as the controller runs them.

Kept out of the controller's socket loop: this is where plugin code runs in
the controller process, so every call is wrapped (an exception names the
plugin, and its traceback goes to the run's log, ``<out>/.zexport/run.log``,
which the message names), and ``finish`` runs in a daemon thread so that the
controller stays responsive to Ctrl-C and ``zexport cancel`` while a big index
or a whole-export file is written.

Records: a format that has files per conversation (so a re-run may skip
some) and a ``finish`` step gets its records through a
:class:`~zexport.core.records.RecordStore` that outlives the run, so that
``run.records()`` also yields those of skipped conversations.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING

from zexport.core.records import RecordStore, store_path
from zexport.core.runfiles import clear_shards, shard_path
from zexport.errors import PluginError
from zexport.formats.base import Format, RunContext
from zexport.run.log import RUN_LOG_NAME, run_log_path

if TYPE_CHECKING:
    from zexport.run.setup import RunSetup

log = logging.getLogger("zexport.run.steps")


class FormatSteps:
    """Builds the :class:`RunContext` and calls ``start``/``finish`` of one format."""

    def __init__(self, setup: RunSetup, plan_path: str) -> None:
        self.setup = setup
        self.fmt = fmt = setup.fmt
        self.plugin = setup.plugin
        self.out_dir = setup.out
        self.plan_path = plan_path
        self.keeps_records = fmt.files_per_conversation and type(fmt).finish is not Format.finish
        self.store: RecordStore | None = None
        self.store_error = ""  # why records could not be kept (the finish step is told)

    def context(self, total: int, failures: Mapping[str, str] | None = None,
                shard_paths: Sequence[str] = ()) -> RunContext:
        """The context of one step."""
        setup = self.setup
        return RunContext(
            out_dir=self.out_dir, options=setup.format_options, tz=setup.tz,
            branches=setup.spec.branches, exported_at=setup.exported_at,
            format_name=self.fmt.name, total=total, plan_path=self.plan_path,
            failures=failures or {}, shard_paths=shard_paths,
            record_store=store_path(self.out_dir, self.fmt.name) if self.keeps_records else "")

    def _who(self) -> str:
        return f"format {self.fmt.name!r} of {self.plugin}" if self.plugin else (
            f"format {self.fmt.name!r}")

    def _traceback_logged(self, step: str, exc: BaseException) -> str:
        """Log ``exc`` with its traceback to the run's log; return where it is, for people."""
        log.error("%s failed in its %s step", self._who(), step,
                  exc_info=(type(exc), exc, exc.__traceback__))
        return f"traceback in {run_log_path(self.out_dir)}"

    def start(self, total: int) -> None:
        """Call ``start``, then clear stale record shards; a failure stops the run."""
        try:
            self.fmt.start(self.context(total))
        except Exception as exc:  # plugin code: anything may come out
            where = self._traceback_logged("start", exc)
            raise PluginError(f"{self._who()} failed to start: {type(exc).__name__}: {exc}"
                              f" ({where})") from exc
        clear_shards(self.out_dir, self.fmt.name)
        if self.keeps_records:
            self.store = RecordStore(store_path(self.out_dir, self.fmt.name))

    def keep(self, batch: int, conversation_ids: Iterable[str], exported: set[str]) -> None:
        """An accepted batch: its records replace the kept ones of its conversations."""
        if self.store is None or self.store_error:
            return
        try:
            self.store.replace(conversation_ids, shard_path(self.out_dir, self.fmt.name, batch),
                               exported)
        except Exception as exc:  # a full disk, an unreadable shard: the run goes on
            log.exception("keeping the records of batch %d failed", batch)
            self.store_error = f"{type(exc).__name__}: {exc}"

    def close(self) -> None:
        """Close the record store (if any)."""
        if self.store is not None:
            self.store.close()
            self.store = None

    async def finish(self, total: int, failures: Mapping[str, str],
                     shard_paths: Sequence[str], stop: Callable[[], bool]) -> str | None:
        """Call ``finish`` in a daemon thread; return an error text, or None if it worked.

        ``stop`` is polled: when it turns true (a cancel), the step is
        abandoned; its atomic writes leave no half-written file behind.
        """
        if self.store_error:
            return (f"the records of {self._who()} could not be kept ({self.store_error}):"
                    " its finish step was not run")
        ctx = self.context(total, failures, shard_paths)
        outcome: list[BaseException | None] = []

        def target() -> None:
            try:
                self.fmt.finish(ctx)
            except BaseException as exc:  # reported, never raised in the thread
                outcome.append(exc)
            else:
                outcome.append(None)

        thread = threading.Thread(target=target, name="zexport-finish", daemon=True)
        thread.start()
        while thread.is_alive():
            if stop():
                return f"{self._who()}: finish step interrupted by cancel"
            await asyncio.sleep(0.02)
        exc = outcome[0] if outcome else None
        if exc is None:
            return None
        where = self._traceback_logged("finish", exc)
        return (f"{self._who()} failed in its finish step: {type(exc).__name__}: {exc}"
                f" ({where})")


def undo_fresh_state(state_dir: str) -> None:
    """After a failed ``start`` in a first export: remove what the run made in the state
    folder (lock, manifest, logs of workers that rendered nothing), all but the run's
    log, which holds the traceback the error message points to."""
    import shutil

    for name in os.listdir(state_dir):
        if name == RUN_LOG_NAME:
            continue
        path = os.path.join(state_dir, name)
        if os.path.isdir(path) and not os.path.islink(path):
            shutil.rmtree(path, ignore_errors=True)
        else:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)
