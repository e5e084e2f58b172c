"""The markdown format on hand-made conversations: what each kind of part becomes."""

from __future__ import annotations

from datetime import timezone

from zexport.formats.base import RenderContext
from zexport.formats.markdown import MarkdownFormat
from zexport.model import Attachment, Conversation, Message


def render(parts: list[dict[str, object]], attachments: list[Attachment] | None = None,
           **options: str) -> str:
    msg = Message(id="m1", role="assistant", parts=parts, parts_raw="", parts_error=None,
                  created_at=1_700_000_000, updated_at=None, order_index=0, parent_id=None,
                  sibling_ids=None, sibling_index=None, attachments=attachments or [])
    conv = Conversation(id="c1", title="T", provider="claude", created_at=None,
                        updated_at=None, message_count=1, current_node_id="m1",
                        messages=[msg], folder="T")
    fmt = MarkdownFormat()
    ctx = RenderContext(out_dir="/nowhere", folder="/nowhere/T",
                        options=fmt.parse_options(options), tz=timezone.utc,
                        branches="active", exported_at="x")
    return fmt.render(conv, ctx)


def test_sources_are_links_at_their_cut_and_listed_once_below() -> None:
    body = render([{"type": "text", "text": "Answer"},
                   {"type": "source-url", "url": "https://e.example/a b", "title": "A [x]"},
                   {"type": "source-url", "url": None, "title": "Offline book"}])
    assert ("Answer[\\[1\\]](<https://e.example/a%20b> \"A [x]\")\\[2\\]\n\n**Sources**\n\n"
            "1. [A \\[x\\]](<https://e.example/a%20b>)\n2. Offline book\n") in body
    assert "None" not in body
    assert "## Assistant\n\n*2023-11-14T22:13:20+00:00*\n\nAnswer" in body


def test_unknown_parts_are_kept_in_a_fence_longer_than_their_content() -> None:
    body = render([{"type": "artifact", "text": "```python\nx\n```"}])
    assert "*[artifact part]*" in body
    assert "````json" in body and '"text": "```python\\nx\\n```"' in body


def test_a_prose_document_is_an_open_callout_closed_like_a_message() -> None:
    """A canvas the assistant wrote is read, not a JSON string: its Markdown in an open
    callout, headings below the role's, a fence it leaves open closed inside it."""
    body = render([{"type": "data-canvas", "name": "Amalfi\nplan", "textdoc_type": "document",
                    "content": "# Day 1\n\nWalk.\n\n```py\nx = 1\n"},
                   {"type": "text", "text": "Hi"}])
    assert ("> [!note]+ Canvas: Amalfi plan\n> ### Day 1\n>\n> Walk.\n>\n> ```py\n"
            "> x = 1\n> ```\n\nHi") in body
    assert "data-canvas" not in body and "textdoc_type" not in body


def test_a_code_document_is_a_fence_in_its_language_longer_than_its_content() -> None:
    body = render([{"type": "data-artifact", "title": "x.py", "contentType": "text/x-python",
                    "content": "s = '```'\nprint(s)\n"},
                   {"type": "data-canvas", "name": "", "textdoc_type": "code/java`x",
                    "content": "class A {}"}])
    assert "*Artifact: x.py*\n\n````python\ns = '```'\nprint(s)\n````" in body
    assert "*Canvas*\n\n```javax\nclass A {}\n```" in body  # a backtick never in the info


def test_a_document_part_without_text_stays_a_json_block() -> None:
    body = render([{"type": "data-artifact", "title": "img", "content": None, "url": "u"}])
    assert "*[data-artifact part]*" in body and '"url": "u"' in body


def test_reasoning_is_a_folded_callout_and_both_kinds_can_be_hidden() -> None:
    parts: list[dict[str, object]] = [
        {"type": "reasoning", "text": "First, think.\n\n```py\nx = 1\n```\n"},
        {"type": "text", "text": "Answer"},
        {"type": "tool-call", "toolName": "web_search", "args": {"query": "q"}},
        {"type": "tool-result", "result": "r"},
        {"type": "reasoning", "text": "   "},  # nothing to show: no empty callout
    ]
    body = render(parts)
    assert ("> [!note]- Reasoning\n> First, think.\n>\n> ```py\n> x = 1\n> ```\n\nAnswer"
            in body)
    assert body.count("[!note]") == 1
    assert "*[tool-call part]*" in body and "*[tool-result part]*" in body
    hidden = render(parts, reasoning="hide", tool_calls="hide")
    assert "Reasoning" not in hidden and "think" not in hidden and "tool" not in hidden
    assert "## Assistant\n\n*2023-11-14T22:13:20+00:00*\n\nAnswer" in hidden
    only_tools_hidden = render(parts, tool_calls="hide")
    assert "[!note]- Reasoning" in only_tools_hidden and "tool" not in only_tools_hidden


def test_attachments_embedded_linked_or_placeholder() -> None:
    img = Attachment(id="a1", message_id="m1", type="image", file_id=None, original_url=None,
                     local_path=None, filename="my pic.png", mime_type="image/png", size=None,
                     width=None, height=None, created_at=None,
                     exported_path="attachments/my pic.png")
    gone = Attachment(id="a2", message_id="m1", type="file", file_id="f", original_url=None,
                      local_path=None, filename="notes.pdf", mime_type=None, size=None,
                      width=None, height=None, created_at=None,
                      unavailable_reason="HTTP 404")
    body = render([{"type": "text", "text": "see"}], [img, gone])
    assert "![my pic.png](attachments/my%20pic.png)" in body
    assert "> ⚠ Attachment unavailable: notes.pdf: HTTP 404" in body


def test_every_line_of_a_callout_is_quoted_whatever_its_line_endings() -> None:
    """A line left out of the quote could open a code fence that swallows the rest of
    the file: CommonMark ends lines at LF, CRLF and a lone CR."""
    for text in ("Plan:\r```\rcode", "Plan:\r\n```\r\ncode", "Plan:\n```\ncode",
                 "> quoted\n```unclosed"):
        body = render([{"type": "reasoning", "text": text}, {"type": "text", "text": "Answer"}])
        callout = body.split("> [!note]- Reasoning\n", 1)[1].split("\n\nAnswer", 1)[0]
        assert all(line.startswith(">") for line in callout.split("\n")), (text, callout)
        assert "\r" not in callout
        assert body.endswith("\n\nAnswer\n")


def test_tool_parts_of_every_naming_are_hidden_and_redacted_reasoning_is_kept() -> None:
    parts: list[dict[str, object]] = [
        {"type": "dynamic-tool", "toolName": "x"}, {"type": "tool-weather", "input": {}},
        {"type": "tool_use", "name": "y"}, {"type": "toolbox-note", "text": "kept"},
        {"type": "reasoning", "text": "", "signature": "abc"},
        {"type": "text", "text": "Answer"}]
    hidden = render(parts, tool_calls="hide")
    assert "dynamic-tool" not in hidden and "tool-weather" not in hidden
    assert "tool_use" not in hidden
    assert "*[toolbox-note part]*" in hidden  # not a tool part: kept
    assert '"signature": "abc"' in hidden  # blank reasoning with data: a JSON block
