"""zexport.textparts: a message's parts as the one text they are, sources at their cuts.

Checked with a CommonMark parser: what a reader sees (one paragraph, a link at
each citation, two cells in a row) rather than bytes alone.
"""

from __future__ import annotations

from typing import Any

from mdshape import MD, cell_texts, normalize_link, shape, table_cells

from zexport.model import Conversation, Message
from zexport.textparts import join_parts, markdown_citation, markdown_sources


def text(value: Any) -> dict[str, Any]:
    return {"type": "text", "text": value}


def src(url: str | None, title: str | None = None) -> dict[str, Any]:
    part: dict[str, Any] = {"type": "source-url", "sourceId": "x", "url": url}
    if title is not None:
        part["title"] = title
    return part


def test_pieces_of_a_sentence_are_one_paragraph_with_a_link_at_each_cut() -> None:
    parts = [text("Paris is the capital"), src("https://a.example/paris", "Paris"),
             text(" of France"), src("https://b.example/fr"), text(".")]
    joined = join_parts(parts, "perplexity")
    assert joined.text == ('Paris is the capital[\\[1\\]](<https://a.example/paris> "Paris")'
                           " of France[\\[2\\]](<https://b.example/fr>).")
    found = shape(joined.text)
    assert found.blocks == [("paragraph_open", "p"), ("inline", "Paris is the capital of France."),
                            ("paragraph_close", "p")]
    assert found.hrefs == ["https://a.example/paris", "https://b.example/fr"]


def test_a_source_cited_twice_has_one_number_and_is_listed_once() -> None:
    parts = [text("A"), src("https://one.example", "One"), text(" B"),
             src("https://two.example", "Two"), text(" C"),
             src("https://one.example", "one, again")]
    joined = join_parts(parts)
    assert [(s.number, s.url, s.title) for s in joined.sources] == [
        (1, "https://one.example", "One"), (2, "https://two.example", "Two")]
    assert joined.text.count("[\\[1\\]]") == 2 and joined.text.count("[\\[2\\]]") == 1
    listed = MD.parse(markdown_sources(joined.sources))
    assert [t.type for t in listed if t.type.endswith("_open")] == [
        "ordered_list_open", "list_item_open", "paragraph_open", "list_item_open",
        "paragraph_open"]
    assert shape(markdown_sources(joined.sources)).hrefs == [
        "https://one.example", "https://two.example"]


def test_a_source_without_url_is_a_plain_number_and_listed_by_title() -> None:
    joined = join_parts([text("Old"), src(None, "A printed book"), text(" news")])
    assert joined.text == "Old\\[1\\] news"
    assert shape(joined.text).hrefs == []
    assert shape(joined.text).blocks[1] == ("inline", "Old[1] news")
    assert markdown_sources(joined.sources) == "1. A printed book"


def test_claude_text_parts_are_blocks_chatgpt_text_parts_one_text() -> None:
    """Claude's transform makes a text part per content block (a preface, then a report
    whose first line is a heading); ChatGPT's and Perplexity's cut one string, and two
    text parts side by side are where a citation without a URL was dropped."""
    parts = [text("I'll research this."), text("# Report\n\nBengals"),
             src("https://c.example"), text(" are cats.")]
    claude = shape(join_parts(parts, "claude").text)
    assert claude.blocks == [
        ("paragraph_open", "p"), ("inline", "I'll research this."), ("paragraph_close", "p"),
        ("heading_open", "h1"), ("inline", "Report"), ("heading_close", "h1"),
        ("paragraph_open", "p"), ("inline", "Bengals are cats."), ("paragraph_close", "p")]
    sentence = [text("Bengals are"), text(" cats.")]
    for provider in ("chatgpt", "perplexity"):
        assert join_parts(sentence, provider).text == "Bengals are cats."
    # A text part that already ends a paragraph gets no extra blank lines.
    assert join_parts([text("One.\n\n"), text("Two.")], "claude").text == "One.\n\nTwo."


def test_a_null_or_missing_text_is_empty_never_none() -> None:
    parts = [text(None), {"type": "text"}, text("kept"), src("https://x.example"), text(None)]
    joined = join_parts(parts)
    assert "None" not in joined.text and joined.text.startswith("kept")
    msg = Message(id="m", role="user", parts=[text(None)], parts_raw="", parts_error=None,
                  created_at=None, updated_at=None, order_index=0, parent_id=None,
                  sibling_ids=None, sibling_index=None)
    assert msg.text() == ""


def test_other_parts_split_the_text_and_stay_in_their_place() -> None:
    reasoning = {"type": "reasoning", "text": "hmm"}
    joined = join_parts([text("Before"), reasoning, text("After"), src("https://x.example")])
    assert joined.blocks == ["Before", reasoning, "After[\\[1\\]](<https://x.example>)"]
    assert joined.text == "Before\n\nAfter[\\[1\\]](<https://x.example>)"


def test_a_cut_after_a_bang_or_a_backslash_is_still_a_link() -> None:
    """``!`` right before ``[`` would make the link an image; an unescaped ``\\`` would
    escape its bracket. Both render as they did, and the link is a link."""
    for before, shown in (("Wow!", "Wow!"), ("C:\\", "C:\\"), ("a\\!", "a!"),
                          ("two \\\\", "two \\")):
        joined = join_parts([text(before), src("https://x.example")])
        tokens = MD.parseInline(joined.text)[0].children or []
        kinds = [t.type for t in tokens]
        assert "image" not in kinds and "link_open" in kinds, (before, joined.text)
        assert shape(joined.text).blocks[1] == ("inline", shown), joined.text


def test_a_pipe_or_quote_in_a_title_keeps_a_table_row_whole() -> None:
    parts = [text("| Breed | Spots |\n|---|---|\n| Bengal"),
             src("https://x.example/a|b", 'Cats | "Big" \\ small'), text(" | rosettes |")]
    body = join_parts(parts, "perplexity").text
    assert table_cells(body) == [[[], []], [[normalize_link("https://x.example/a|b")], []]]
    assert cell_texts(body) == [["Breed", "Spots"], ["Bengal", "rosettes"]]
    link = next(c for t in MD.parse(body) for c in t.children or [] if c.type == "link_open")
    assert link.attrs["title"] == 'Cats | "Big" \\ small'


def test_a_url_that_could_end_the_link_early_is_encoded_not_cut() -> None:
    for url in ("https://w.example/Foo_(bar", "https://w.example/a b>c", "https://w.example/x\\y"):
        mark = markdown_citation(join_parts([src(url)]).sources[0])
        assert shape(mark).hrefs == [normalize_link(url.replace("\\", "%5C"))], mark


def test_conversation_message_text_uses_the_conversations_provider() -> None:
    msg = Message(id="m", role="assistant", parts=[text("Preface."), text("Report.")],
                  parts_raw="", parts_error=None, created_at=None, updated_at=None,
                  order_index=0, parent_id=None, sibling_ids=None, sibling_index=None)
    conv = Conversation(id="c", title="t", provider="claude", created_at=None,
                        updated_at=None, message_count=1, current_node_id=None,
                        messages=[msg], folder="t")
    assert conv.message_text(msg).text == "Preface.\n\nReport."
    assert msg.text() == "Preface.Report."  # no provider given: pieces of one text
    assert msg.text("claude") == "Preface.\n\nReport."
