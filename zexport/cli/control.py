"""What ``zexport status`` and ``zexport cancel`` do, apart from parsing their options.

Kept out of :mod:`zexport.cli.app` so the commands stay one line each and the
client logic (find the run, ask, render the answer) reads in one place.

Exit statuses: 0 done, 1 no export running or its controller did not answer
(or, for ``cancel``, the run was still running after ``--timeout``), 2 usage
(several runs and no ``--run``), 3 the controller refused the request.
"""

from __future__ import annotations

import json
from typing import Any

import click

from zexport.errors import ExitStatus, ZexportError
from zexport.run.client import format_status, pick_run, request, wait_stopped

STATUS_TIMEOUT = 2.0
CANCEL_TIMEOUT = 30.0


def status(run_id: str | None, as_json: bool, timeout: float) -> int:
    """Show how a running export is doing; return the exit status."""
    asked = _ask(run_id, "status", "status_reply", timeout=timeout)
    if isinstance(asked, int):
        return asked
    _, reply = asked
    if as_json:
        click.echo(json.dumps(reply["status"], indent=1, ensure_ascii=False))
    else:
        click.echo(format_status(reply["status"]))
    return ExitStatus.OK


def cancel(run_id: str | None, no_wait: bool, timeout: float) -> int:
    """Ask a running export to stop and (unless ``no_wait``) wait until it has; exit status."""
    asked = _ask(run_id, "cancel_request", "cancel_reply", reason="cancelled")
    if isinstance(asked, int):
        return asked
    info, reply = asked
    already = " (already under way)" if reply.get("already") else ""
    click.echo(f"run {info['run_id']}: {reply['state']}{already}")
    if no_wait:
        return ExitStatus.OK
    if not wait_stopped(info, timeout):
        click.echo(f"zexport: run {info['run_id']} still running after {timeout:g}s", err=True)
        return ExitStatus.FAILED
    click.echo(f"run {info['run_id']}: stopped")
    return ExitStatus.OK


def _ask(run_id: str | None, msg_type: str, expected: str,
         **fields: Any) -> tuple[dict[str, Any], dict[str, Any]] | int:
    """Find the run and send one request: ``(run info, reply)``, or the exit status
    after saying what went wrong (no run, no answer: its code; a refusal: 3)."""
    try:
        info = pick_run(run_id)
        reply = request(info, msg_type, **fields)
    except ZexportError as exc:
        click.echo(f"zexport: {exc}", err=True)
        return exc.exit_code
    if reply["t"] != expected:
        click.echo(f"zexport: controller answered: {reply.get('message')}", err=True)
        return ExitStatus.REFUSED
    return info, reply
