"""Progress (BRIEF §6): the bar counts attachments copied, downloaded and unavailable, and
``--progress json`` ends with one summary object in the app's progress shape."""

from __future__ import annotations

import io
import json
import re
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console

from zexport.run.progress import RichProgress

pytestmark = pytest.mark.timeout(120)


def test_the_bar_shows_attachments_copied_downloaded_and_unavailable() -> None:
    buf = io.StringIO()
    bar = RichProgress(console=Console(file=buf, width=200))
    bar.phase("exporting", 500)
    bar.update("exporting", 500, 500, "t", {
        "rate": 300.0, "attachments_copied": 257, "attachments_downloaded": 12,
        "attachments_unavailable": 345})
    bar.close()
    assert "attachments: 257 copied (12 downloaded), 345 unavailable" in buf.getvalue()


def test_a_real_run_draws_the_attachment_counts_of_its_report(
        cli: Any, sample_db: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    res = cli("run", "--db", str(sample_db), "--out", str(out), "--progress", "bar",
              "--no-downloads")
    assert res.returncode == 0, res.stderr
    counts = json.loads((out / ".zexport" / "report.json").read_text())["counts"]
    assert counts["attachments_exported"] > 0 and counts["attachments_failed"] > 0
    drawn = re.findall(r"attachments: ([\d,]+) copied, ([\d,]+) unavailable", res.stderr)
    assert drawn[-1] == (f"{counts['attachments_exported']:,}",
                         f"{counts['attachments_failed']:,}")


def test_progress_json_ends_with_a_summary_object(cli: Any, sample_db: Path,
                                                  tmp_path: Path) -> None:
    out = tmp_path / "out"
    res = cli("run", "--db", str(sample_db), "--out", str(out), "--progress", "json")
    assert res.returncode == 0, res.stderr
    lines = [json.loads(line) for line in res.stdout.splitlines()]
    last = lines[-1]
    assert [x["phase"] for x in lines].count("done") == 1
    report = json.loads((out / ".zexport" / "report.json").read_text())
    assert last == {
        "phase": "done", "current": report["counts"]["selected"],
        "total": report["counts"]["selected"], "conversationTitle": "",
        "summary": {
            "status": "ok", "exit_status": 0, "cancel_reason": None,
            "seconds": last["summary"]["seconds"], "counts": report["counts"],
            "attachments_unavailable_by_reason": report["attachment_failures_by_reason"],
            "conflicts": [], "report": str(out / ".zexport" / "report.json")}}
    assert sum(last["summary"]["attachments_unavailable_by_reason"].values()) == (
        report["counts"]["attachments_failed"]) > 0
    exporting = [x for x in lines if x["phase"] == "exporting"]
    assert exporting[-1]["attachments_unavailable"] == report["counts"]["attachments_failed"]
    assert exporting[-1]["attachments_copied"] == report["counts"]["attachments_exported"]
