"""``cancel``: stop a running export cleanly; the client waits until it has stopped."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from zexport.errors import ExitStatus
from zexport.protocol import BOOL, STR
from zexport.run.client import wait_stopped
from zexport.run.commands._base import Command, Console, Option, RunControl

WAIT_TIMEOUT = 30.0


class Cancel(Command):
    """Starts the run's cancel (or says one is under way); the client then waits for the
    run's registration to go, which the controller removes last."""

    name = "cancel"
    help = """Stop a running export cleanly; by default wait until it has stopped.

    Workers stop at the next conversation (a long one is aborted), nothing
    half-written is left, the report says ``cancelled``, and the next
    ``zexport run`` on the same folder resumes where this one stopped.
    """
    request_type = "cancel_request"
    reply_type = "cancel_reply"
    request_fields = ({}, {"reason": STR})
    reply_fields = ({"state": STR}, {"already": BOOL, "run_id": STR})
    options = (
        Option("--no-wait", "no_wait", "Return once the export has the request.", is_flag=True),
        Option("--timeout", "timeout", "How long to wait for the export to stop.",
               type=float, default=WAIT_TIMEOUT),
    )

    def request(self, options: Mapping[str, Any]) -> dict[str, Any]:
        return {"reason": "cancelled"}

    def execute(self, run: RunControl, request: dict[str, Any]) -> dict[str, Any]:
        state, already = run.cancel(request.get("reason") or "cancelled")
        return {"state": state, "already": already, "run_id": run.run_id}

    def show(self, run: Mapping[str, Any], reply: dict[str, Any], options: Mapping[str, Any],
             console: Console) -> int:
        already = " (already under way)" if reply.get("already") else ""
        console.out(f"run {run['run_id']}: {reply['state']}{already}")
        if options.get("no_wait"):
            return ExitStatus.OK
        timeout = float(options.get("timeout", WAIT_TIMEOUT))
        if not wait_stopped(run, timeout):
            console.err(f"zexport: run {run['run_id']} still running after {timeout:g}s")
            return ExitStatus.FAILED
        console.out(f"run {run['run_id']}: stopped")
        return ExitStatus.OK
