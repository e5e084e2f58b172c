"""The run ledger in-process: ``done`` results into a real report and a real manifest.

One call per batch: each conversation's outcome in the report, the written
ones in the manifest (a conflict marked to render again, a missing
attachment with the attachment context), records kept before that, and one
progress line for the whole batch.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from zexport import protocol
from zexport.run.batches import Failure
from zexport.run.ledger import RunLedger
from zexport.run.manifest import RENDER_AGAIN, Manifest, Resume
from zexport.run.report import RunReport


class Progress:
    def __init__(self) -> None:
        self.updates: list[tuple[str, int, int, str, dict[str, Any]]] = []

    def phase(self, phase: str, total: int) -> None:
        pass

    def update(self, phase: str, current: int, total: int, title: str,
               extra: dict[str, Any]) -> None:
        self.updates.append((phase, current, total, title, extra))

    def close(self) -> None:
        pass

    def summary(self, summary: dict[str, Any]) -> None:
        pass


class Steps:
    def __init__(self) -> None:
        self.kept: list[tuple[int, dict[str, str], set[str]]] = []

    def keep(self, batch: int, folders: dict[str, str], exported: set[str]) -> None:
        self.kept.append((batch, dict(folders), exported))


def result(cid: str, ok: bool = True, **fields: Any) -> dict[str, Any]:
    res = {"id": cid, "ok": ok, "title": f"title {cid}", "error": None if ok else "boom",
           "warnings": [], "attachments_ok": 0, "attachments_failed": [], **fields}
    return res


def done_frame(*results: dict[str, Any]) -> list[Any]:
    """Results as the controller gets them: through the protocol's checks."""
    msg = protocol.decode(protocol.encode("done", w=0, batch=4, results=list(results)))
    out: list[Any] = msg["results"]
    return out


def test_a_batch_goes_into_report_manifest_and_one_progress_line(tmp_path: Path) -> None:
    report = RunReport(options={}, started=0.0)
    progress, steps = Progress(), Steps()
    ledger = RunLedger(report, progress)
    resume = Resume(str(tmp_path), str(tmp_path / "out"), "md", "opts", "renderer", False,
                    attachment_context="ctx-1")
    ledger.resume, ledger.steps = resume, steps  # type: ignore[assignment]
    ledger.total = 10
    ledger.done = 5  # planning settled five (unchanged)
    rows = [(f"c{i}", f"folder {i}", f"src{i}") for i in range(5)]
    ledger.record(4, rows, done_frame(
        result("c0", files=[["folder 0/conversation.md", "h0"]]),
        result("c1", conflicts=[["folder 1/conversation.md", "edited by hand"]]),
        result("c2", attachments_failed=[["att", "HTTP 404"]], attachments_ok=2),
        result("c3", ok=False),
        result("not-in-batch"),  # a worker's word about a conversation it was not sent
        result("c4")))
    resume.close()

    assert steps.kept == [(4, {cid: folder for cid, folder, _ in rows}, {
        "c0", "c1", "c2", "c4", "not-in-batch"})]
    assert (report.exported, report.attachments_exported, report.attachments_failed) == (4, 2, 1)
    assert report.failures == [{"conversation_id": "c3", "folder": "folder 3",
                                "reason": "boom"}]
    assert [c["path"] for c in report.conflicts] == ["folder 1/conversation.md"]
    assert ledger.done == 10
    entries = Manifest(resume.manifest.path).load()
    assert {cid: (e.folder, e.source, e.retry) for cid, e in entries.items()} == {
        "c0": ("folder 0", "src0", None),
        "c1": ("folder 1", RENDER_AGAIN, None),  # rendered again until resolved
        "c2": ("folder 2", "src2", "ctx-1"),  # retried when the context changes
        "c4": ("folder 4", "src4", None),
    }
    assert len(progress.updates) == 1
    phase, current, total, title, extra = progress.updates[0]
    assert (phase, current, total, title) == ("exporting", 10, 10, "title c4")
    assert (extra["failed"], extra["attachments_copied"], extra["conflicts"]) == (1, 2, 1)


def test_failures_are_reported_and_counted_done() -> None:
    report = RunReport(options={}, started=0.0)
    ledger = RunLedger(report)
    ledger.total = 3
    ledger.fail([Failure("a", "A", "its worker died twice"), Failure("b", "B", "timed out")])
    assert ledger.done == 2
    assert [f["conversation_id"] for f in report.failures] == ["a", "b"]
    counts = ledger.counts()
    assert counts["conversations"] == {
        "total": 3, "done": 2, "to_render": 3, "rendered": 2, "exported": 0, "skipped": 0,
        "failed": 2, "remaining": 1}
    assert (counts["rate"], counts["eta"]) == (0.0, None)  # not exporting yet: no rate


def test_download_progress_is_shown_at_most_every_tenth_of_a_second() -> None:
    from zexport.net.service import Stats

    progress = Progress()
    ledger = RunLedger(RunReport(options={}, started=0.0), progress)
    stats = Stats(requested=3, downloaded=1)
    ledger.show_downloads(stats)
    ledger.show_downloads(stats)  # within 0.1 s: held back
    assert len(progress.updates) == 1 and ledger.download_pending
    stats.failed = 2
    stats.archive_errors.append("could not update the archive")
    ledger.downloads_ended(stats)
    assert len(progress.updates) == 2 and not ledger.download_pending
    assert progress.updates[-1][1:3] == (3, 3)
    assert ledger.report.downloads["failed"] == 2
    assert ledger.report.notes == ["could not update the archive"]


def test_while_exporting_the_counts_give_a_rate_and_an_eta_and_at_the_end_eta_zero() -> None:
    import time

    import pytest

    report = RunReport(options={}, started=0.0)
    ledger = RunLedger(report)
    ledger.total, ledger.done = 100, 40
    ledger.export_started = time.time() - 4
    report.exported = 30
    counts = ledger.counts()
    assert counts["rate"] == pytest.approx(30 / 4, rel=0.1)
    assert counts["eta"] == pytest.approx(60 / counts["rate"], rel=0.1)
    ledger.done = 100
    assert ledger.counts()["eta"] == 0.0
