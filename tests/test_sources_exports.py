"""ChatGPT and Claude exports through real ``zexport run --input`` (controller, workers).

Every fixture in the shared exports folder is exported to Markdown and JSON;
the assertions are what a reader of the output checks: the right branch, no
scaffolding, citations inline with the text's whitespace kept, images found
in the export and copied.
"""

from __future__ import annotations

import json
import os
import zipfile
from pathlib import Path
from typing import Any

import pytest
from exportkit import (
    APP_TABLE,
    CHATGPT,
    CLAUDE,
    CLAUDE_2026,
    HARDENING,
    PULSAR,
    SYNTH_2026,
    copy_folder,
    jsons,
    markdowns,
    report,
    sections,
    zip_folder,
)

pytestmark = pytest.mark.timeout(120)


def export(cli: Any, inp: Path, out: Path, *extra: str, status: int = 0) -> Any:
    res = cli("run", "--input", str(inp), "--out", str(out), "--tz", "UTC", "--workers", "2",
              "--progress", "none", *extra)
    assert res.returncode == status, res.stdout + res.stderr
    return res


@pytest.mark.parametrize("shape", ["folder", "zip"])
def test_chatgpt_2026_sharded_export_active_branch_citations_and_image(
        cli: Any, tmp_path: Path, shape: str) -> None:
    inp = (copy_folder(SYNTH_2026, tmp_path / "export") if shape == "folder"
           else zip_folder(SYNTH_2026, tmp_path / "export.zip"))
    export(cli, inp, tmp_path / "md")
    (md,) = markdowns(tmp_path / "md").values()
    assert sections(md) == ["System", "User", "Assistant"]
    assert "Old answer." not in md  # the other branch
    assert md.count("Custom instructions") == 1 and "Be brief." in md
    # The citation is an inline link where the marker was, the space before it kept.
    assert "Stay in Positano. [\\[1\\]](<https://example.com/amalfi>" in md
    assert "\ue200" not in md and "turn0search0" not in md
    assert "> [!note]- Reasoning" in md and "Positano vs Ravello." in md
    assert "![photo.png](attachments/photo.png)" in md
    folder = next((tmp_path / "md").glob("*/attachments/photo.png")).parent.parent
    assert (folder / "attachments" / "photo.png").read_bytes() == (
        SYNTH_2026 / "file_00000000aaaa0000aaaa0000aaaa0000.dat").read_bytes()
    export(cli, inp, tmp_path / "json", "--format", "json")
    doc = jsons(tmp_path / "json")["6a000000-0000-4000-8000-000000000001"]
    assert doc["current_node_id"] == "a2"
    assert doc["active_branch"] == ["ci", "u1", "a2"]
    a2 = next(m for m in doc["messages"] if m["id"] == "a2")
    assert [p["type"] for p in a2["parts"]] == ["reasoning", "reasoning", "text", "source-url"]
    assert a2["parts"][2]["text"] == "Stay in Positano. "
    assert a2["parts"][3]["url"] == "https://example.com/amalfi"
    a1 = next(m for m in doc["messages"] if m["id"] == "a1")
    assert a1["sibling_ids"] == ["a1", "a2"] and a1["sibling_index"] == 0  # creation order
    assert {m["id"] for m in doc["messages"]} == {"ci", "u1", "a1", "a2"}  # no scaffolding


def test_chatgpt_tree_edge_cases(cli: Any, tmp_path: Path) -> None:
    export(cli, PULSAR, tmp_path / "md")  # example.zip is missing: a warning, not a failure
    mds = markdowns(tmp_path / "md")
    assert len(mds) == 8
    regen = mds["Regenerated answer"]
    assert "NEW ACTIVE ANSWER" in regen and "OLD BRANCH ANSWER" not in regen
    assert sections(mds["Broken chat"]) == ["Assistant"]  # a dangling parent: a root
    assert sections(mds["Cycle chat"]) == ["Assistant", "User"]  # the cycle cut once
    tech = mds["Technical nodes"]
    assert sections(tech) == ["User", "Assistant"]  # the hidden system node is not a turn
    assert "> ⚠ Attachment unavailable: example.zip" in mds["Attachment chat"]
    export(cli, PULSAR, tmp_path / "all", "--branches", "all")
    assert "OLD BRANCH ANSWER" in markdowns(tmp_path / "all")["Regenerated answer"]


def test_chatgpt_internal_recipients_and_reasoning_are_parts_not_turns(
        cli: Any, tmp_path: Path) -> None:
    export(cli, HARDENING, tmp_path / "json", "--format", "json")
    docs = {d["title"]: d for d in jsons(tmp_path / "json").values()}
    internal = docs["Internal recipient"]
    assert [m["role"] for m in internal["messages"]] == ["user", "assistant"]
    final = internal["messages"][1]
    assert [p["type"] for p in final["parts"]] == ["tool-call", "tool-result", "text"]
    assert final["parts"][0]["toolName"] == "browser"
    reasoning = docs["Reasoning nodes"]["messages"][1]
    assert [p["type"] for p in reasoning["parts"]] == ["reasoning", "reasoning", "text"]
    dup = docs["Duplicate sediment attachment"]["messages"][0]
    assert [a["filename"] for a in dup["attachments"]] == ["example.zip"]  # listed once


def test_claude_tree_latest_leaf_blocks_and_files(cli: Any, tmp_path: Path) -> None:
    export(cli, CLAUDE_2026 / "conversations.json", tmp_path / "md")
    (md,) = markdowns(tmp_path / "md").values()
    assert sections(md) == ["User", "Assistant", "User"]
    assert "Ravello." in md and "Positano." not in md  # the latest leaf's branch
    assert "> ⚠ Attachment unavailable: photo.png" in md
    export(cli, CLAUDE_2026 / "conversations.json", tmp_path / "json", "--format", "json")
    (doc,) = jsons(tmp_path / "json").values()
    assert doc["active_branch"] == ["m1", "m2b", "m3"]
    m1, m2a = doc["messages"][0], doc["messages"][1]
    assert m1["parts"][-1] == {"type": "file-text", "filename": "notes.txt", "text": "hello"}
    assert [p["type"] for p in m2a["parts"]] == ["reasoning", "tool-web_search", "text",
                                                "source-url"]
    assert m2a["parts"][1]["output"][0]["url"] == "https://example.com/amalfi"  # merged
    assert m2a["parts"][2]["text"] == "Positano."
    assert m2a["sibling_ids"] == ["m2a", "m2b"]


def test_claude_august_2026_layout_with_nested_zip(cli: Any, tmp_path: Path) -> None:
    download = tmp_path / "claude-download"
    download.mkdir()
    zip_folder(CLAUDE_2026, download / "conversations-000.zip")
    (download / "manifest-acc-2026-08-20.json").write_text(json.dumps(
        {"files": [{"name": "conversations-000.zip"}]}))
    export(cli, download, tmp_path / "md")
    (md,) = markdowns(tmp_path / "md").values()
    assert "Ravello." in md


def test_claude_flat_export_is_one_branch_with_thinking(cli: Any, tmp_path: Path) -> None:
    export(cli, CLAUDE / "yaleman-anthropic-data--tests-data-conversations.json",
           tmp_path / "json", "--format", "json")
    (doc,) = jsons(tmp_path / "json").values()
    ids = [m["id"] for m in doc["messages"]]
    assert doc["active_branch"] == ids and len(ids) == 2
    assert doc["messages"][1]["parts"][0]["type"] == "reasoning"


@pytest.mark.parametrize(("name", "status", "count"), [
    ("chatgpt/polylogue-0.2.0--schemas-providers-chatgpt-representatives-sample-00.json", 0, 1),
    ("chatgpt/polylogue-0.2.0--schemas-providers-chatgpt-representatives-sample-01.json", 0, 1),
    ("claude/osteele-claude-chat-viewer--testdata-conversations.json", 0, 2),
    ("claude/osteele-claude-chat-viewer--testdata-claude-bakery-chat.json", 0, 1),
    ("claude/osteele-claude-chat-viewer--testdata-conversation-rendering-tests.json", 0, 1),
    ("claude/polylogue-0.2.0--schemas-providers-claude-ai-representatives-sample-00.json", 0, 1),
])
def test_every_other_fixture_exports_to_markdown_and_json(cli: Any, tmp_path: Path, name: str,
                                                         status: int, count: int) -> None:
    inp = CHATGPT.parent / name
    for fmt in ("markdown", "json"):
        export(cli, inp, tmp_path / fmt, "--format", fmt, status=status)
        assert report(tmp_path / fmt)["counts"]["exported"] == count
    docs = list(jsons(tmp_path / "json").values())
    for doc in docs:
        assert doc["active_branch"], doc["id"]
        assert doc["provider"] == name.split("/")[0]


def test_bakery_chat_follows_its_current_leaf(cli: Any, tmp_path: Path) -> None:
    export(cli, CLAUDE / "osteele-claude-chat-viewer--testdata-claude-bakery-chat.json",
           tmp_path / "json", "--format", "json")
    (doc,) = jsons(tmp_path / "json").values()
    assert doc["active_branch"][-1] == "47e6dd5f-0e09-4063-8ab3-f155765ac9a1"


# -- bad input ---------------------------------------------------------------------------


def _refused(cli: Any, inp: Path, tmp_path: Path, says: str, *extra: str) -> None:
    out = tmp_path / "out"
    res = cli("run", "--input", str(inp), "--out", str(out), *extra)
    assert res.returncode == 2, res.stderr
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and says in lines[0], res.stderr
    assert not out.exists()


def test_a_zip_that_is_not_an_export_is_refused(cli: Any, tmp_path: Path) -> None:
    bad = tmp_path / "photos.zip"
    with zipfile.ZipFile(bad, "w") as zf:
        zf.writestr("holiday.jpg", b"\xff\xd8\xff")
    _refused(cli, bad, tmp_path, "not an export or archive any source recognises")


def test_a_truncated_zip_is_refused(cli: Any, tmp_path: Path) -> None:
    whole = zip_folder(SYNTH_2026, tmp_path / "whole.zip").read_bytes()
    cut = tmp_path / "cut.zip"
    cut.write_bytes(whole[: len(whole) // 2])
    _refused(cli, cut, tmp_path, "not a readable ZIP file")


def test_unknown_source_and_db_with_input_are_usage_errors(cli: Any, tmp_path: Path) -> None:
    _refused(cli, PULSAR, tmp_path, "unknown source 'nope'", "--source", "nope")
    _refused(cli, PULSAR, tmp_path, "give --db or --input, not both", "--db", str(PULSAR))


def test_missing_shard_and_asset_and_broken_conversation_are_reported(
        cli: Any, tmp_path: Path) -> None:
    inp = copy_folder(SYNTH_2026, tmp_path / "export")
    os.remove(inp / "conversations-001.json")
    os.remove(inp / "file_00000000aaaa0000aaaa0000aaaa0000.dat")
    convs = json.loads((inp / "conversations-000.json").read_text())
    convs.append({"id": "broken", "title": "Broken", "mapping": "not a tree"})
    (inp / "conversations-000.json").write_text(json.dumps(convs))
    out = tmp_path / "out"
    # The missing image is a warning; the conversation that cannot be read fails the run
    # partly, as one that cannot be exported does.
    res = export(cli, inp, out, status=1)
    rep = report(out)
    assert rep["counts"]["exported"] == 1
    notes = "\n".join(rep["notes"])
    assert "lists conversations-001.json, which is missing" in notes
    assert "not in the export: file_00000000aaaa0000aaaa0000aaaa0000.dat (photo.png)" in notes
    warned = [line for line in res.stderr.splitlines() if line.startswith("zexport: warning:")]
    assert [w.removeprefix("zexport: warning: ") for w in warned] == rep["notes"][:len(warned)]
    assert any("lists conversations-001.json, which is missing" in w for w in warned)
    (error,) = rep["run_errors"]
    assert error.endswith("conversations-000.json conversation #2 ('Broken'): cannot read:"
                          " no mapping")
    assert f"zexport: error: {error}" in res.stderr.splitlines()
    (md,) = markdowns(out).values()
    assert "> ⚠ Attachment unavailable: photo.png" in md


@pytest.mark.parametrize("damage", ["garbage", None, [1, 2], "deleted"])
def test_a_broken_conversation_of_an_export_keyed_by_name_is_reported_not_dropped(
        cli: Any, tmp_path: Path, damage: Any) -> None:
    """The keyed shape (``{name: conversation}``): one conversation's ``mapping`` broken
    must fail the run partly with that conversation named, as in the array shape, and
    not disappear from the export without a word."""
    convs = json.loads(PULSAR.read_text())
    victim = "regenerate"
    if damage == "deleted":
        del convs[victim]["mapping"]
    else:
        convs[victim]["mapping"] = damage
    inp = tmp_path / "conversations.json"
    inp.write_text(json.dumps(convs))
    out = tmp_path / "out"
    res = export(cli, inp, out, status=1)
    rep = report(out)
    assert rep["counts"]["exported"] == len(convs) - 1
    (error,) = rep["run_errors"]
    title = convs[victim]["title"]
    position = list(convs).index(victim) + 1
    assert error.endswith(f"conversations.json conversation #{position} ({title!r}): cannot"
                          " read: no mapping"), error
    assert f"zexport: error: {error}" in res.stderr.splitlines()


# -- re-runs, cache, listing --------------------------------------------------------------


def _conversation(cid: str, text: str, updated: float) -> dict[str, Any]:
    return {"id": cid, "title": f"Chat {cid}", "create_time": 1_700_000_000.0,
            "update_time": updated, "current_node": "a", "mapping": {
                "r": {"id": "r", "parent": None, "message": None},
                "u": {"id": "u", "parent": "r", "message": {
                    "id": "u", "author": {"role": "user"}, "create_time": 1_700_000_001.0,
                    "content": {"content_type": "text", "parts": ["Q " + cid]}}},
                "a": {"id": "a", "parent": "u", "message": {
                    "id": "a", "author": {"role": "assistant"}, "create_time": 1_700_000_002.0,
                    "content": {"content_type": "text", "parts": [text]}}}}}


def _export_zip(path: Path, convs: list[dict[str, Any]]) -> Path:
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("conversations.json", json.dumps(convs))
    return path


def test_a_newer_export_updates_only_what_changed(cli: Any, tmp_path: Path) -> None:
    v1 = [_conversation(c, f"answer {c}", 1_700_000_100.0) for c in ("c1", "c2", "c3")]
    out = tmp_path / "out"
    export(cli, _export_zip(tmp_path / "v1.zip", v1), out)
    before = {p.parent.name: p.stat().st_mtime_ns for p in out.glob("*/conversation.md")}
    v2 = [v1[0], _conversation("c2", "a better answer", 1_700_000_900.0), v1[2],
          _conversation("c4", "new", 1_700_000_900.0)]
    export(cli, _export_zip(tmp_path / "v2.zip", v2), out)
    counts = report(out)["counts"]
    assert (counts["exported"], counts["skipped"]) == (2, 2)
    mds = markdowns(out)
    assert sorted(mds) == ["2023-11-14 Chat c1", "2023-11-14 Chat c2", "2023-11-14 Chat c3",
                           "2023-11-14 Chat c4"]  # same folders, one added
    assert "a better answer" in mds["2023-11-14 Chat c2"]
    after = {p.parent.name: p.stat().st_mtime_ns for p in out.glob("*/conversation.md")}
    assert after["2023-11-14 Chat c1"] == before["2023-11-14 Chat c1"]
    assert after["2023-11-14 Chat c3"] == before["2023-11-14 Chat c3"]


def test_a_rerun_of_the_same_input_does_not_convert_again(
        cli: Any, tmp_path: Path, isolated_env: dict[str, str]) -> None:
    inp = zip_folder(SYNTH_2026, tmp_path / "export.zip")
    export(cli, inp, tmp_path / "one")
    cache = Path(isolated_env["XDG_CACHE_HOME"]) / "zexport" / "sources"
    (entry,) = cache.iterdir()
    inode = (entry / "archive.db").stat().st_ino
    export(cli, inp, tmp_path / "two")
    assert [e.name for e in cache.iterdir()] == [entry.name]
    assert (entry / "archive.db").stat().st_ino == inode
    # Only the referenced file was copied out of the ZIP.
    assert sorted(p.name for p in (entry / "files").iterdir()) == [
        "file_00000000aaaa0000aaaa0000aaaa0000.dat"]


def test_formats_lists_the_sources(cli: Any) -> None:
    res = cli("formats")
    assert res.returncode == 0
    listing = res.stdout.split("Sources (", 1)[1].splitlines()[1:4]
    assert [line.split()[0] for line in listing] == ["ownyourchat", "chatgpt", "claude"]


def test_input_accepts_an_ownyourchat_archive(cli: Any, tmp_path: Path) -> None:
    export(cli, APP_TABLE, tmp_path / "out", "--no-downloads")
    assert report(tmp_path / "out")["counts"]["exported"] == 1
