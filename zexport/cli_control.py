"""``zexport status`` and ``zexport cancel``: thin click commands over :mod:`zexport.client`.

Exit statuses: 0 done, 1 no export running or its controller did not answer,
2 usage (several runs and no ``--run``).
"""

from __future__ import annotations

import json
import sys

import click

from .errors import ZexportError


def _fail(exc: ZexportError) -> None:
    click.echo(f"zexport: {exc}", err=True)
    sys.exit(exc.exit_code)


@click.command()
@click.option("--run", "run_id", metavar="ID", help="Which export (when several are running).")
@click.option("--json", "as_json", is_flag=True, help="Print the status reply's JSON.")
@click.option("--timeout", type=float, default=2.0, show_default=True, hidden=True)
def status(run_id: str | None, as_json: bool, timeout: float) -> None:
    """Show how a running export is doing: phase, counts, rate, ETA, workers."""
    from .client import format_status, pick_run, request

    try:
        info = pick_run(run_id)
        reply = request(info, "status", timeout=timeout)
    except ZexportError as exc:
        _fail(exc)
        return
    if reply["t"] != "status_reply":
        click.echo(f"zexport: controller answered: {reply.get('message')}", err=True)
        sys.exit(3)
    if as_json:
        click.echo(json.dumps(reply["status"], indent=1, ensure_ascii=False))
    else:
        click.echo(format_status(reply["status"]))


@click.command()
@click.option("--run", "run_id", metavar="ID", help="Which export (when several are running).")
@click.option("--no-wait", is_flag=True, help="Return once the export has the request.")
@click.option("--timeout", type=float, default=30.0, show_default=True,
              help="How long to wait for the export to stop.")
def cancel(run_id: str | None, no_wait: bool, timeout: float) -> None:
    """Stop a running export cleanly; by default wait until it has stopped.

    Workers stop at the next conversation (a long one is aborted), nothing
    half-written is left, the report says ``cancelled``, and the next
    ``zexport run`` on the same folder resumes where this one stopped.
    """
    from .client import pick_run, request, wait_stopped

    try:
        info = pick_run(run_id)
        reply = request(info, "cancel_request", reason="cancelled")
    except ZexportError as exc:
        _fail(exc)
        return
    if reply["t"] != "cancel_reply":
        click.echo(f"zexport: controller answered: {reply.get('message')}", err=True)
        sys.exit(3)
    already = " (already under way)" if reply.get("already") else ""
    click.echo(f"run {info['run_id']}: {reply['state']}{already}")
    if no_wait:
        return
    if not wait_stopped(info, timeout):
        click.echo(f"zexport: run {info['run_id']} still running after {timeout:g}s", err=True)
        sys.exit(1)
    click.echo(f"run {info['run_id']}: stopped")
