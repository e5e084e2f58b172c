"""When each phase of one ``zexport run`` starts and ends, from the controller's side.

Usage: ``python benchmarks/run_timeline.py -- run --input EXPORT.zip --out OUT ...``
(everything after ``--`` is ``zexport``'s command line; set ``ZEXPORT_CACHE_DIR``
to choose a cold or a warm conversion cache).

Why: ``bench_convoviz.py`` says what each process spent, not in which order.
A cold ``--input`` run is conversion, then planning, then exporting, and only
the last one runs in the workers: this prints the wall-clock second (from the
interpreter's start) and the controller's CPU seconds at each boundary, so
the share of each phase in a run's wall time can be read off directly. It
wraps a few of zexport's own functions in this process (the input step, the
controller's planning and exporting phases), so the run is the real one,
workers and all; each line goes to stderr.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from typing import Any

START = time.perf_counter()


def mark(what: str) -> None:
    sys.stderr.write(f"{time.perf_counter() - START:7.3f} s  cpu {time.process_time():6.3f} s"
                     f"  {what}\n")


def around(owner: Any, name: str, label: str) -> None:
    """Mark the start and end of ``owner.name`` (a function or a coroutine function)."""
    import inspect

    plain: Callable[..., Any] = getattr(owner, name)
    if inspect.iscoroutinefunction(plain):
        async def timed_async(*args: Any, **kwargs: Any) -> Any:
            mark(f"{label} start")
            try:
                return await plain(*args, **kwargs)
            finally:
                mark(f"{label} end")
        setattr(owner, name, timed_async)
        return

    def timed(*args: Any, **kwargs: Any) -> Any:
        mark(f"{label} start")
        try:
            return plain(*args, **kwargs)
        finally:
            mark(f"{label} end")
    setattr(owner, name, timed)


def main() -> None:
    args = sys.argv[1:]
    if args[:1] == ["--"]:
        args = args[1:]
    import zexport.cli.app as cli
    import zexport.run.controller as controller
    import zexport.sources.resolve as resolve

    mark("CLI imported")
    around(resolve, "prepare_input", "input (recognise; convert unless cached)")
    around(controller.Controller, "_plan_now", "planning")
    around(controller.Controller, "_export", "exporting")

    def leave(status: int) -> None:
        mark(f"exit {status}")
        raise SystemExit(status)

    cli._exit_now = leave  # type: ignore[assignment]  # the CLI leaves with os._exit
    sys.argv = ["zexport", *args]
    try:
        cli.cli()
    except SystemExit:
        pass


if __name__ == "__main__":
    main()
