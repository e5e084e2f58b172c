"""The controller's CPU of one ``zexport run``, by thread: main loop, planning, side indexes.

Usage::

    PYTHONPATH=<checkout> python benchmarks/bench_controller_threads.py ARCHIVE OUT [--workers 2]

Why: a whole run's controller CPU moves by 20% from run to run on the shared
machine, more than a change of 20 us a conversation. Run in-process, with
``time.thread_time`` around the planning thread and (in checkouts that still
have them) the side-index builders, each part of the controller is told apart:
a part that is gone shows as gone, whatever the neighbours do. Prints one line:
the process's CPU seconds (``getrusage``: every thread) and each part's.
"""

from __future__ import annotations

import argparse
import functools
import os
import resource
import sys
import time
from typing import Any

SPENT: dict[str, float] = {}


def timed(owner: Any, name: str, label: str) -> None:
    """Count the thread CPU time of every call of ``owner.name`` (if it exists) as ``label``."""
    func = getattr(owner, name, None)
    if func is None:
        return

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        start = time.thread_time()
        try:
            return func(*args, **kwargs)
        finally:
            SPENT[label] = SPENT.get(label, 0.0) + time.thread_time() - start

    setattr(owner, name, wrapper)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("archive")
    p.add_argument("out")
    p.add_argument("--workers", default="2")
    args = p.parse_args()

    import zexport.cli.app as app
    import zexport.run.controller as controller
    import zexport.run.planning as planning

    def report_and_exit(status: int) -> None:
        usage = resource.getrusage(resource.RUSAGE_SELF)
        SPENT["main thread"] = time.thread_time()
        parts = " ".join(f"{k}={v:.3f}" for k, v in sorted(SPENT.items()))
        print(f"controller CPU {usage.ru_utime + usage.ru_stime:.3f} s: {parts}", file=sys.stderr)
        sys.stderr.flush()
        os._exit(status)

    app._exit_now = report_and_exit  # type: ignore[assignment]
    timed(controller.Controller, "_plan_now", "planning thread")
    timed(planning, "build_message_index", "message index thread")
    timed(planning, "build_attachment_index", "attachment index thread")
    sys.argv = ["zexport", "run", "--db", args.archive, "--out", args.out, "--workers",
                args.workers, "--progress", "none", "--tz", "UTC", "-q", "--no-downloads"]
    try:
        app.main()
    except SystemExit as exc:
        report_and_exit(exc.code if isinstance(exc.code, int) else 1)


if __name__ == "__main__":
    main()
