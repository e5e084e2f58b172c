"""ChatGPT canvas: a document the assistant wrote is a document part of its answer.

The conversation is the pulsar fixture's real "linear" chat with a canvas
exchange put between the question and the answer, shaped as the field
inventory of real exports has it (an assistant ``code`` message to
``canmore.create_textdoc`` whose text is ``{name, type, content}``, then the
tool's reply), exported through a real ``zexport run --input``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from exportkit import PULSAR, jsons, markdowns

pytestmark = pytest.mark.timeout(120)

DOCUMENT = "# Day 1\n\nWalk the Path of the Gods.\n\n# Day 2\n\nFerry to Capri."


def _with_canvas() -> dict[str, Any]:
    conv = json.loads(PULSAR.read_text())["linear"]
    mapping = conv["mapping"]
    mapping["canvas"] = {"id": "canvas", "parent": "u1", "message": {
        "id": "m-canvas", "author": {"role": "assistant", "name": None},
        "create_time": 1786279650, "recipient": "canmore.create_textdoc", "channel": "final",
        "content": {"content_type": "code", "language": "json", "text": json.dumps(
            {"name": "Amalfi plan", "type": "document", "content": DOCUMENT})},
        "metadata": {}}}
    mapping["created"] = {"id": "created", "parent": "canvas", "message": {
        "id": "m-created", "author": {"role": "tool", "name": "canmore.create_textdoc"},
        "create_time": 1786279651, "recipient": "all",
        "content": {"content_type": "text", "parts": [
            "Successfully created text document 'Amalfi Plan' which will be referenced in all"
            " future messages with the unique identifier textdoc_id: '6741a3c5'"]},
        "metadata": {"canvas": {"textdoc_id": "6741a3c5", "textdoc_type": "document",
                                "version": 1, "title": "Amalfi plan"}}}}
    mapping["a1"]["parent"] = "created"
    return {**conv, "id": "canvas-chat"}


def test_a_canvas_document_is_a_document_part_of_the_answer(cli: Any, tmp_path: Path) -> None:
    inp = tmp_path / "conversations.json"
    inp.write_text(json.dumps([_with_canvas()]))
    for fmt in ("json", "markdown"):
        res = cli("run", "--input", str(inp), "--out", str(tmp_path / fmt), "--format", fmt,
                  "--tz", "UTC", "--workers", "1", "--progress", "none")
        assert res.returncode == 0, res.stderr
    (doc,) = jsons(tmp_path / "json").values()
    turns = [m for m in doc["messages"] if m["id"] in doc["active_branch"]]
    assert [m["role"] for m in turns] == ["user", "assistant"]
    parts = turns[1]["parts"]
    assert parts[0] == {"type": "data-canvas", "name": "Amalfi plan",
                        "textdoc_type": "document", "content": DOCUMENT}
    assert parts[1]["type"] == "tool-result" and "Successfully created" in parts[1]["output"]
    assert parts[-1] == {"type": "text", "text": "Hi there"}
    (md,) = markdowns(tmp_path / "markdown").values()
    # The whole document, read as Markdown in an open callout (its headings below the turn's).
    quoted = "\n".join(f"> {line}" if line else ">" for line in DOCUMENT.split("\n"))
    assert "> [!note]+ Canvas: Amalfi plan\n" + quoted.replace("> # ", "> ### ") in md
    assert md.index("Amalfi plan") < md.index("Hi there")
