"""The run report: spooled lists stream into valid JSON, counts match, spools go away."""

from __future__ import annotations

import json
import os
from pathlib import Path

from zexport.run.report import EXIT_OK, EXIT_PARTIAL, RunReport


def test_spooled_report_is_valid_json_with_every_item(tmp_path: Path) -> None:
    report = RunReport(options={"format": "markdown"}, started=0.0)
    report.spool_to(str(tmp_path))
    for i in range(2500):
        report.outcome(f"c{i}", f"folder {i}", {
            "ok": True, "warnings": [f"message m{i}: NULL created_at"],
            "attachments_failed": [[f"a{i}", "file not on disk"]] if i % 2 else []})
    assert report.finish(2500, 2500, None) == EXIT_OK  # missing attachments: warnings
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


def test_exit_status_warnings_failures_and_strict() -> None:
    missing = {"ok": True, "attachments_failed": [["a", "no credentials for chatgpt (add a"
                                                   " [chatgpt] table to the --auth file)"]]}
    for strict, expected in ((False, EXIT_OK), (True, EXIT_PARTIAL)):
        report = RunReport(options={}, started=0.0, strict=strict)
        report.outcome("c1", "f1", missing)
        assert report.finish(1, 1, None) == expected
    report = RunReport(options={}, started=0.0)
    report.outcome("c1", "f1", {"ok": True, "conflicts": [["f1/conversation.md", "edited"]]})
    assert report.finish(1, 1, None) == EXIT_OK
    report.strict = True
    assert report.finish(1, 1, None) == EXIT_PARTIAL
    report = RunReport(options={}, started=0.0)
    report.outcome("c1", "f1", {"ok": False, "error": "render failed"})
    assert report.finish(1, 1, None) == EXIT_PARTIAL


def test_attachment_reasons_are_grouped_for_the_summary() -> None:
    report = RunReport(options={}, started=0.0)
    for i in range(5364):
        report.outcome(f"c{i}", "f", {"ok": True, "attachments_failed": [[
            "a", "no credentials for chatgpt (add a [chatgpt] table to the --auth file)"]]})
    for i in range(3):
        report.outcome(f"d{i}", "f", {"ok": True, "attachments_failed": [[
            "a", "HTTP 404 (not found) from files.example.com"]]})
    assert report.attachment_lines() == [
        "5,364 attachments need chatgpt credentials: see --auth (docs/attachments.md)",
        "3 attachments unavailable: HTTP 404 (not found) from files.example.com"]
    assert report.to_dict()["attachment_failures_by_reason"] == {
        "no credentials for chatgpt (add a [chatgpt] table to the --auth file)": 5364,
        "HTTP 404 (not found) from files.example.com": 3}
