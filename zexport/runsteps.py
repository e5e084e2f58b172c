"""A format's per-run steps, ``start`` and ``finish``, as the controller runs them.

Kept out of the controller's socket loop: this is where plugin code runs in
the controller process, so every call is wrapped (an exception names the
plugin), and ``finish`` runs in a daemon thread so that the controller stays
responsive to Ctrl-C and ``zexport cancel`` while a big index or a
whole-export file is written.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Mapping, Sequence
from datetime import tzinfo
from typing import Any

from .errors import PluginError
from .formats.base import Format, RunContext
from .runfiles import clear_shards


class FormatSteps:
    """Builds the :class:`RunContext` and calls ``start``/``finish`` of one format."""

    def __init__(self, fmt: Format, options: Mapping[str, Any], plugin: str, out_dir: str,
                 tz: tzinfo, branches: str, exported_at: str, plan_path: str) -> None:
        self.fmt = fmt
        self.options = options
        self.plugin = plugin
        self.out_dir = out_dir
        self.tz = tz
        self.branches = branches
        self.exported_at = exported_at
        self.plan_path = plan_path

    def context(self, total: int, failures: Mapping[str, str] | None = None,
                shard_paths: Sequence[str] = ()) -> RunContext:
        """The context of one step."""
        return RunContext(
            out_dir=self.out_dir, options=self.options, tz=self.tz, branches=self.branches,
            exported_at=self.exported_at, format_name=self.fmt.name, total=total,
            plan_path=self.plan_path, failures=failures or {}, shard_paths=shard_paths)

    def _who(self) -> str:
        return f"format {self.fmt.name!r} of {self.plugin}" if self.plugin else (
            f"format {self.fmt.name!r}")

    def start(self, total: int) -> None:
        """Clear stale record shards, then call ``start``; a failure stops the run."""
        clear_shards(self.out_dir, self.fmt.name)
        try:
            self.fmt.start(self.context(total))
        except Exception as exc:  # plugin code: anything may come out
            raise PluginError(
                f"{self._who()} failed to start: {type(exc).__name__}: {exc}") from exc

    async def finish(self, total: int, failures: Mapping[str, str],
                     shard_paths: Sequence[str], stop: Callable[[], bool]) -> str | None:
        """Call ``finish`` in a daemon thread; return an error text, or None if it worked.

        ``stop`` is polled: when it turns true (a cancel), the step is
        abandoned; its atomic writes leave no half-written file behind.
        """
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
        return f"{self._who()} failed in its finish step: {type(exc).__name__}: {exc}"
