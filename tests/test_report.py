"""The run report: spooled lists stream into valid JSON, counts match, spools go away."""

from __future__ import annotations

import json
import os
from pathlib import Path

from zexport.report import EXIT_OK, EXIT_PARTIAL, RunReport


def test_spooled_report_is_valid_json_with_every_item(tmp_path: Path) -> None:
    report = RunReport(options={"format": "markdown"}, started=0.0)
    report.spool_to(str(tmp_path))
    for i in range(2500):
        report.outcome(f"c{i}", f"folder {i}", {
            "ok": True, "warnings": [f"message m{i}: NULL created_at"],
            "attachments_failed": [[f"a{i}", "file not on disk"]] if i % 2 else []})
    assert report.finish(2500, 2500, None) == EXIT_PARTIAL
    target = tmp_path / "report.json"
    report.write(str(target))
    doc = json.loads(target.read_text())
    assert doc["counts"]["exported"] == 2500
    assert doc["counts"]["warnings"] == len(doc["warnings"]) == 2500
    assert doc["counts"]["attachments_failed"] == len(doc["attachment_failures"]) == 1250
    assert doc["attachment_failures"][0] == {
        "conversation_id": "c1", "folder": "folder 1", "attachment_id": "a1",
        "reason": "file not on disk"}
    assert sorted(os.listdir(tmp_path)) == ["report.json"]  # spools removed


def test_empty_lists_and_in_memory_report(tmp_path: Path) -> None:
    report = RunReport(options={}, started=0.0)
    assert report.finish(0, 0, None) == EXIT_OK
    report.write(str(tmp_path / "r.json"))
    doc = json.loads((tmp_path / "r.json").read_text())
    assert doc["warnings"] == [] and doc["attachment_failures"] == []
    assert doc["status"] == "ok"
