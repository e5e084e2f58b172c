"""What ``zexport status`` and ``zexport cancel`` do, without click.

The click commands (in :mod:`zexport.cli`) and the fast entry point
(:mod:`zexport.entry`, which answers these two commands without importing
click) both call :func:`status` and :func:`cancel` here, so every message and
exit status is the same whichever way the command was parsed. Output goes
through the ``echo`` the caller passes: ``click.echo``, or the entry point's
equivalent.

Exit statuses: 0 done, 1 no export running or its controller did not answer
(or, for ``cancel``, the run was still running after ``--timeout``), 2 usage
(several runs and no ``--run``), 3 the controller refused the request.
"""

from __future__ import annotations

from .errors import ZexportError

TYPE_CHECKING = False  # typing's, without importing typing (3 ms of `zexport status`)
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any

    Echo = Callable[[str, bool], None]
    """``echo(text, to_stderr)``: print one line (or several) and a newline."""

STATUS_TIMEOUT = 2.0
CANCEL_TIMEOUT = 30.0


def status(run_id: str | None, as_json: bool, timeout: float, echo: Echo) -> int:
    """Show how a running export is doing; return the exit status."""
    from .client import format_status

    asked = _ask(run_id, "status", "status_reply", echo, timeout=timeout)
    if isinstance(asked, int):
        return asked
    _, reply = asked
    if as_json:
        import json

        echo(json.dumps(reply["status"], indent=1, ensure_ascii=False), False)
    else:
        echo(format_status(reply["status"]), False)
    return 0


def cancel(run_id: str | None, no_wait: bool, timeout: float, echo: Echo) -> int:
    """Ask a running export to stop and (unless ``no_wait``) wait until it has; exit status."""
    from .client import wait_stopped

    asked = _ask(run_id, "cancel_request", "cancel_reply", echo, reason="cancelled")
    if isinstance(asked, int):
        return asked
    info, reply = asked
    already = " (already under way)" if reply.get("already") else ""
    echo(f"run {info['run_id']}: {reply['state']}{already}", False)
    if no_wait:
        return 0
    if not wait_stopped(info, timeout):
        echo(f"zexport: run {info['run_id']} still running after {timeout:g}s", True)
        return 1
    echo(f"run {info['run_id']}: stopped", False)
    return 0


def _ask(run_id: str | None, msg_type: str, expected: str, echo: Echo,
         **fields: Any) -> tuple[dict[str, Any], dict[str, Any]] | int:
    """Find the run and send one request: ``(run info, reply)``, or the exit status
    after saying what went wrong (no run, no answer: its code; a refusal: 3)."""
    from .client import pick_run, request

    try:
        info = pick_run(run_id)
        reply = request(info, msg_type, **fields)
    except ZexportError as exc:
        echo(f"zexport: {exc}", True)
        return exc.exit_code
    if reply["t"] != expected:
        echo(f"zexport: controller answered: {reply.get('message')}", True)
        return 3
    return info, reply
