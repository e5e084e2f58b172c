"""The run ledger: what workers report, written into the report, the manifest and progress.

One call per ``done`` frame (a batch): the records of the batch are kept,
each conversation's outcome goes to the report and, when it was written, to
the manifest (flushed when due, not per conversation), and progress is shown
once for the whole batch. The ledger also holds the run's two counters,
``total`` and ``done``, that ``zexport status``, the progress display and the
report's final status are computed from.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from zexport.run.manifest import RENDER_AGAIN
from zexport.run.progress import NullProgress, ProgressSink

if TYPE_CHECKING:
    from zexport.net.service import Stats
    from zexport.run.batches import Failure, Item
    from zexport.run.manifest import Resume
    from zexport.run.report import RunReport
    from zexport.run.steps import FormatSteps

# Download progress is shown at most this often (seconds), and once at the end.
DOWNLOAD_PROGRESS_EVERY = 0.1


class RunLedger:
    """Results into the report, the manifest and progress."""

    def __init__(self, report: RunReport, progress: ProgressSink | None = None) -> None:
        self.report = report
        self.progress: ProgressSink = progress or NullProgress()
        self.resume: Resume | None = None  # once planned
        self.steps: FormatSteps | None = None  # once the run folder exists
        self.downloads: Stats | None = None  # once the download service runs
        self.total = 0  # conversations selected (failed unaddressable rows included)
        self.done = 0  # of which handled: skipped, exported or failed
        self.export_started = 0.0
        self.download_shown = 0.0  # when download progress was last shown
        self.download_pending = False  # counts changed since

    def fail(self, failures: list[Failure]) -> None:
        """Conversations that will not be exported (each is reported, and done)."""
        for failure in failures:
            self.report.failure(failure.conversation_id, failure.folder, failure.reason)
        self.done += len(failures)

    def record(self, batch_id: int, rows: list[Item], results: list[Any]) -> None:
        """One batch's ``done`` results (``rows``: the batch as it was sent)."""
        places = {cid: (folder, source) for cid, folder, source in rows}
        if self.steps is not None:  # kept before the manifest marks them done
            self.steps.keep(batch_id, {cid: folder for cid, folder, _ in rows},
                            {r["id"] for r in results if r["ok"]})
        resume = self.resume
        outcome = self.report.outcome
        title = ""
        done = 0
        for res in results:
            cid = res["id"]
            place = places.get(cid)
            if place is None:
                continue
            folder, source = place
            outcome(cid, folder, res)
            done += 1
            title = res.get("title") or title
            # A missing attachment records the attachment context: a re-run renders the
            # conversation again only when that changes. A conflict renders it again
            # every run (so it stays reported) until the user resolves it.
            if res["ok"] and resume is not None and source is not None:
                if res.get("conflicts"):
                    source = RENDER_AGAIN
                retry = resume.attachment_context if res.get("attachments_failed") else None
                # ``files`` is checked by the protocol: [path, hash] pairs of strings.
                resume.done(cid, folder, source, retry, res.get("files") or ())
        self.done += done
        if resume is not None:
            resume.flush_due()
        self.show_export(title)

    def show_export(self, title: str = "") -> None:
        """The ``exporting`` progress line."""
        report = self.report
        elapsed = max(time.time() - report.started, 1e-6)
        self.progress.update("exporting", self.done, self.total, title, {
            "failed": len(report.failures), "rate": self.done / elapsed,
            "attachments_copied": report.attachments_exported,
            "attachments_downloaded": self.downloads.downloaded if self.downloads else 0,
            "attachments_unavailable": report.attachments_failed,
            "conflicts": len(report.conflicts)})

    def show_downloads(self, stats: Stats, final: bool = False) -> None:
        """Show download counts at most every DOWNLOAD_PROGRESS_EVERY seconds (and once
        at the end): the sample's thousands of instant failures made a JSON line each."""
        now = time.monotonic()
        if not final and now - self.download_shown < DOWNLOAD_PROGRESS_EVERY:
            self.download_pending = True
            return
        self.download_shown, self.download_pending = now, False
        done = stats.downloaded + stats.cached + stats.failed
        self.progress.update("downloading", done, stats.requested, "", {
            "done": stats.downloaded + stats.cached, "failed": stats.failed,
            "bytes": stats.bytes, "cached": stats.cached})

    def downloads_ended(self, stats: Stats) -> None:
        """The download service closed: its last counts, into progress and the report."""
        if self.download_pending:
            self.show_downloads(stats, final=True)
        self.report.downloads = stats.to_dict()
        self.report.notes.extend(stats.archive_errors)

    def counts(self) -> dict[str, Any]:
        """The counters of ``zexport status`` (docs/protocol.md, ``status_reply``)."""
        report = self.report
        now = time.time()
        failed = len(report.failures)
        elapsed = max(1e-6, now - (self.export_started or now))
        rate = report.exported / elapsed if self.export_started else 0.0
        remaining = max(0, self.total - self.done)
        eta = remaining / rate if rate > 0 and remaining else (0.0 if not remaining else None)
        return {
            "conversations": {
                "total": self.total, "done": self.done,
                "to_render": max(0, self.total - report.skipped),
                "rendered": report.exported + failed, "exported": report.exported,
                "skipped": report.skipped, "failed": failed, "remaining": remaining,
            },
            "attachments": {
                "exported": report.attachments_exported,
                "failed": report.attachments_failed,
            },
            "rate": round(rate, 2), "eta": None if eta is None else round(eta, 2),
            "worker_deaths": len(report.worker_deaths),
        }
