"""``status``: where a running export is: phase, counts, rate, ETA, workers."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from zexport.errors import ExitStatus
from zexport.protocol import ANY_MAP
from zexport.run.commands._base import REQUEST_TIMEOUT, Command, Console, Option, RunControl


class Status(Command):
    """Answers with the run's snapshot; the client prints it for people, or as JSON."""

    name = "status"
    help = "Show how a running export is doing: phase, counts, rate, ETA, workers."
    request_type = "status"
    reply_type = "status_reply"
    reply_fields = ({"status": ANY_MAP}, {})
    options = (
        Option("--json", "as_json", "Print the status reply's JSON.", is_flag=True),
        Option("--timeout", "timeout", type=float, default=REQUEST_TIMEOUT, hidden=True),
    )

    def timeout(self, options: Mapping[str, Any]) -> float:
        return float(options.get("timeout", REQUEST_TIMEOUT))

    def execute(self, run: RunControl, request: dict[str, Any]) -> dict[str, Any]:
        return {"status": run.status()}

    def show(self, run: Mapping[str, Any], reply: dict[str, Any], options: Mapping[str, Any],
             console: Console) -> int:
        if options.get("as_json"):
            console.out(json.dumps(reply["status"], indent=1, ensure_ascii=False))
        else:
            console.out(format_status(reply["status"]))
        return ExitStatus.OK


def format_status(st: dict[str, Any]) -> str:
    """A status snapshot as a few human lines."""
    conv = st["conversations"]
    att = st["attachments"]
    pct = f" ({100 * conv['done'] / conv['total']:.0f}%)" if conv["total"] else ""
    eta = st.get("eta")
    eta_text = "-" if eta is None else f"{eta:.0f}s"
    state = st["phase"] + (f" ({st['cancelled']})" if st.get("cancelled") else "")
    lines = [
        f"run {st['run_id']} (pid {st['pid']}): {state} -> {st['out']}",
        f"  conversations: {conv['done']}/{conv['total']}{pct}: {conv['exported']} exported, "
        f"{conv['skipped']} skipped, {conv['failed']} failed",
        f"  attachments:   {att['exported']} exported, {att['failed']} unavailable",
        f"  rate: {st['rate']:,.0f}/s  ETA: {eta_text}  elapsed: {st['elapsed']:.1f}s",
        "  workers:",
    ]
    for w in st["workers"]:
        batch = f", batch {w['batch']}" if w.get("batch") is not None else ""
        lines.append(f"    w{w['id']} pid {w['pid']}: {w['state']}{batch}, "
                     f"{w['conversations']} done, heard {w['last_heard']:.1f}s ago")
    if st.get("worker_deaths"):
        lines.append(f"  worker deaths: {st['worker_deaths']}")
    return "\n".join(lines)
