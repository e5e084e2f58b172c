"""The converters' rules, one by one: schema, citations, tree order, cycles, recognition."""

from __future__ import annotations

import gc
import io
import json
import sqlite3
import zipfile
from pathlib import Path

import pytest
from exportkit import APP_EMPTY, CLAUDE_2026, PULSAR, SYNTH_2026

from zexport.core.collector import THRESHOLDS, fewer_collections
from zexport.sources.bundle import open_bundle
from zexport.sources.chatgpt import ChatGPTSource, _parents
from zexport.sources.chatgpt_cites import cite_parts
from zexport.sources.claude import ClaudeSource
from zexport.sources.ownyourchat import OwnYourChatSource
from zexport.sources.records import ConversationRecord, MessageRecord
from zexport.sources.writer import ArchiveWriter, latest_leaf, ordered


def _columns(db: Path) -> dict[str, list[tuple[str, str, int, str | None, int]]]:
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    tables = [r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type='table'")]
    out = {t: [(c[1], c[2], c[3], c[4], c[5]) for c in con.execute(f"PRAGMA table_info({t})")]
           for t in tables}
    con.close()
    return out


def test_converted_archive_has_the_apps_exact_tables_and_columns(tmp_path: Path) -> None:
    w = ArchiveWriter(str(tmp_path / "a.db"))
    w.close()
    assert _columns(tmp_path / "a.db") == _columns(APP_EMPTY)


def test_citation_cut_keeps_whitespace_and_removes_markers() -> None:
    text = "Stay in Positano. \ue200cite\ue202turn0search0\ue201 Then eat."
    meta = {"content_references": [
        {"matched_text": " ", "start_idx": 17, "end_idx": 18, "type": "sources_footnote"},
        {"matched_text": "\ue200cite\ue202turn0search0\ue201", "start_idx": 18,
         "items": [{"title": "Guide", "url": "https://e.x/g"}]}]}
    parts = cite_parts(text, meta, "m")
    assert parts == [{"type": "text", "text": "Stay in Positano. "},
                     {"type": "source-url", "sourceId": "m-src-1", "url": "https://e.x/g",
                      "title": "Guide"},
                     {"type": "text", "text": " Then eat."}]
    unresolved = cite_parts("A \ue200cite\ue202turn9search9\ue201 b", {}, "m")
    assert unresolved == [{"type": "text", "text": "A  b"}]


def test_old_style_citation_spans() -> None:
    text = "Fact【3†source】 more"
    meta = {"citations": [{"start_ix": 4, "end_ix": 14,
                           "metadata": {"url": "https://e.x", "title": "T"}}]}
    assert [p.get("text", p.get("url")) for p in cite_parts(text, meta, "m")] == [
        "Fact", "https://e.x", " more"]


def test_siblings_in_creation_order_and_depth_first() -> None:
    msgs = [MessageRecord("u", "user", [], 1, None), MessageRecord("late", "assistant", [], 9, "u"),
            MessageRecord("early", "assistant", [], 5, "u"),
            MessageRecord("next", "user", [], 6, "early")]
    assert [m.id for m in ordered(msgs)] == ["u", "early", "next", "late"]
    assert latest_leaf(msgs) == "late"


def test_cycles_and_dangling_parents_are_cut() -> None:
    mapping = {"a": {"parent": "b"}, "b": {"parent": "a"}, "c": {"parent": "gone"},
               "d": {"parent": "d"}}
    assert _parents(mapping) == {"a": "b", "b": None, "c": None, "d": None}


def test_message_ids_reused_across_conversations_stay_unique(tmp_path: Path) -> None:
    w = ArchiveWriter(str(tmp_path / "a.db"))
    for cid in ("c1", "c2"):
        w.add(ConversationRecord(cid, cid, "chatgpt", 1, 1, "a", [
            MessageRecord("root", "user", [], 1, None), MessageRecord("a", "assistant", [], 2,
                                                                      "root")]))
    w.close()
    con = sqlite3.connect(tmp_path / "a.db")
    rows = con.execute("SELECT id, parent_id FROM messages WHERE conversation_id='c2'"
                       " ORDER BY order_index").fetchall()
    assert rows == [("c2:root", None), ("c2:a", "c2:root")]
    assert con.execute("SELECT current_node_id FROM conversations WHERE id='c2'").fetchone() == (
        "c2:a",)


def test_a_message_id_taken_after_new_ones_renames_it_and_keeps_the_others_once(
        tmp_path: Path) -> None:
    # c2's first message is new, its second one's id is c1's: the rows c2 had already
    # written before the clash are not left behind twice, nor under another name.
    w = ArchiveWriter(str(tmp_path / "a.db"))
    w.add(ConversationRecord("c1", "c1", "chatgpt", 1, 1, None, [
        MessageRecord("root", "user", [], 1, None)]))
    w.add(ConversationRecord("c2", "c2", "chatgpt", 2, 2, "root", [
        MessageRecord("fresh", "user", [{"type": "text", "text": "q"}], 1, None),
        MessageRecord("root", "assistant", [{"type": "text", "text": "a"}], 2, "fresh")]))
    w.close()
    con = sqlite3.connect(tmp_path / "a.db")
    rows = con.execute("SELECT id, conversation_id, parent_id, parts, sibling_ids FROM messages"
                       " ORDER BY rowid").fetchall()
    assert rows == [
        ("root", "c1", None, "[]", '["root"]'),
        ("fresh", "c2", None, '[{"type":"text","text":"q"}]', '["fresh"]'),
        ("c2:root", "c2", "fresh", '[{"type":"text","text":"a"}]', '["c2:root"]')]
    assert con.execute("SELECT id, message_count, current_node_id FROM conversations"
                       " ORDER BY rowid").fetchall() == [("c1", 1, "root"), ("c2", 2, "c2:root")]


def test_fewer_collections_raises_the_thresholds_and_puts_them_back() -> None:
    before = gc.get_threshold()
    with pytest.raises(RuntimeError), fewer_collections():
        assert gc.get_threshold() == THRESHOLDS != before
        raise RuntimeError("a conversion that fails")
    assert gc.get_threshold() == before


@pytest.mark.parametrize(("path", "expected"), [
    (SYNTH_2026, "chatgpt"), (PULSAR, "chatgpt"), (CLAUDE_2026, "claude"),
    (CLAUDE_2026 / "conversations.json", "claude"), (APP_EMPTY, "ownyourchat")])
def test_recognised_by_content(path: Path, expected: str, tmp_path: Path) -> None:
    # Renamed to say nothing: recognition reads the content, not the name.
    if path.is_file():
        anon = tmp_path / "input.data"
        anon.write_bytes(path.read_bytes())
        path = anon
    bundle = open_bundle(str(path))
    found = [s.name for s in (OwnYourChatSource(), ChatGPTSource(), ClaudeSource())
             if s.recognise(bundle)]
    assert found == [expected]


def test_zip_members_are_not_extracted_to_recognise(tmp_path: Path) -> None:
    z = tmp_path / "e.zip"
    with zipfile.ZipFile(z, "w") as zf:
        zf.writestr("conversations.json", PULSAR.read_text())
    assert ChatGPTSource().recognise(open_bundle(str(z)))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["e.zip"]


@pytest.mark.parametrize("whole", [True, False], ids=["parsed-whole", "streamed"])
def test_a_broken_map_among_conversations_keyed_by_name_is_handed_on_in_its_place(
        whole: bool) -> None:
    """Parsed whole (small files) or streamed (ijson): a map beside conversations keyed by
    name is a broken conversation, handed on where it stood; other values are not."""
    from zexport.sources.chatgpt import is_conversation
    from zexport.sources.jsonstream import iter_conversations

    good = {"title": "ok", "mapping": {}}
    doc = {"broken-first": {"title": "b1", "mapping": None}, "a": good, "version": 3,
           "broken-mid": {"title": "b2"}, "b": good, "note": "text"}
    data = json.dumps(doc).encode()
    got = [key for key, _ in iter_conversations(io.BytesIO(data), is_conversation,
                                                size=len(data) if whole else None)]
    assert got == ["broken-first", "a", "broken-mid", "b"]
    listed = json.dumps({"conversations": [good], "user": {"id": "u"}}).encode()
    assert [key for key, _ in iter_conversations(
        io.BytesIO(listed), is_conversation, size=len(listed) if whole else None)] == [None]
