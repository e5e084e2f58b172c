"""Grok exports through the first-party source plugin, installed with pip as a user would.

``.ci/run`` installs ``plugins/zexport-grok`` (not editable) before pytest; these
tests fail, not skip, when it is not installed, then run real ``zexport run
--input`` processes on the shared Grok fixture (as the ZIP xAI sends, with its
doubled slash, the unpacked folder and the JSON alone) and on exports built here
for what the fixture lacks.
"""

from __future__ import annotations

import json
import zipfile
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

import pytest
from exportkit import CLAUDE, FIXTURES, jsons, markdowns, report, sections

pytestmark = pytest.mark.timeout(120)

GROK = FIXTURES / "grok" / "synthetic-2026"
USER_DIR = "ttl/30d/export_data/00000000-0000-4000-8000-00000000e000"
BACKEND = GROK / USER_DIR / "prod-grok-backend.json"
ASSET_ID = "0380cd07-a199-4623-bcd8-5f42cc28a9be"
ASSET = GROK / USER_DIR / "prod-mc-asset-server" / ASSET_ID / "content"
UNUSED_ID = "11111111-2222-4333-8444-555555555555"


def export(cli: Any, inp: Path, out: Path, *extra: str, status: int = 0) -> Any:
    res = cli("run", "--input", str(inp), "--out", str(out), "--tz", "UTC", "--workers", "2",
              "--progress", "none", *extra)
    assert res.returncode == status, res.stdout + res.stderr
    assert "not loaded" not in res.stderr, res.stderr
    return res


def grok_zip(target: Path, backend: bytes | None = None) -> Path:
    """The fixture as xAI ships it: every member under ``ttl/30d/export_data/<uuid>/``,
    assets as ``prod-mc-asset-server//<id>/content`` (a doubled slash, kept by
    writing the names as they are, not normalised as ``ZipFile.write`` would)."""
    with zipfile.ZipFile(target, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr(f"{USER_DIR}/prod-grok-backend.json",
                    BACKEND.read_bytes() if backend is None else backend)
        zf.writestr(f"{USER_DIR}/prod-mc-auth-mgmt-api.json", b'{"accounts": []}')
        zf.writestr(zipfile.ZipInfo(f"{USER_DIR}/prod-mc-asset-server//{ASSET_ID}/content"),
                    ASSET.read_bytes())
        zf.writestr(zipfile.ZipInfo(f"{USER_DIR}/prod-mc-asset-server//{UNUSED_ID}/content"),
                    b"%PDF-1.4 referenced by no conversation")
    return target


def test_the_plugin_is_installed_as_a_distribution_with_an_entry_point() -> None:
    eps = {ep.name: ep for ep in entry_points(group="zexport")}
    assert "grok" in eps, ("no entry point 'grok' in group 'zexport': install it:"
                           " .venv/bin/pip install ./plugins/zexport-grok (as .ci/run does)")
    assert eps["grok"].dist is not None and eps["grok"].dist.name == "zexport-grok"
    assert "site-packages" in str(eps["grok"].load().__file__)


def test_formats_lists_the_grok_source(cli: Any) -> None:
    res = cli("formats")
    assert res.returncode == 0, res.stderr
    listing = res.stdout.split("Sources (", 1)[1].splitlines()[1:]
    assert "  grok         Grok data export (ZIP, its folder, or prod-grok-backend.json)" \
           "  [zexport-grok 0.1.0]" in listing


@pytest.mark.parametrize("shape", ["zip", "folder"])
def test_the_fixture_exports_its_latest_branch_with_its_image(
        cli: Any, tmp_path: Path, isolated_env: dict[str, str], shape: str) -> None:
    inp = grok_zip(tmp_path / "grok.zip") if shape == "zip" else GROK
    export(cli, inp, tmp_path / "md")
    (entry,) = (Path(isolated_env["XDG_CACHE_HOME"]) / "zexport" / "sources").iterdir()
    # Only the referenced asset is copied out of a ZIP; a folder's is used in place.
    if shape == "zip":
        assert sorted(p.name for p in (entry / "files").iterdir()) == [ASSET_ID]
    else:
        assert not (entry / "files").exists()
    (md,) = markdowns(tmp_path / "md").values()
    assert sections(md) == ["User", "Assistant"]
    # No active response in the export: the latest leaf (r2b, 03:26:00) wins over r2a.
    assert "Ravello." in md and "Positano." not in md
    assert f"![{ASSET_ID}.png](attachments/{ASSET_ID}.png)" in md
    (copied,) = (tmp_path / "md").glob(f"*/attachments/{ASSET_ID}.png")
    assert copied.read_bytes() == ASSET.read_bytes()
    # The artifact, whole, read as Markdown after the text it was cut from.
    assert md.endswith("Ravello. \n\n> [!note]+ Artifact: plan.md\n> ### Plan\n")
    export(cli, inp, tmp_path / "json", "--format", "json")
    (doc,) = jsons(tmp_path / "json").values()
    assert (doc["id"], doc["title"], doc["provider"]) == ("g-1", "Amalfi", "grok")
    assert (doc["created_at"], doc["updated_at"]) == (1783999509, 1783999800)  # ISO strings
    assert doc["current_node_id"] == "r2b" and doc["active_branch"] == ["r1", "r2b"]
    r1, r2a, r2b = doc["messages"]
    assert [m["role"] for m in (r1, r2a, r2b)] == ["user", "assistant", "assistant"]
    # Both Mongo $date forms: canonical {"$numberLong": ms} and relaxed ISO.
    assert (r1["created_at"], r2a["created_at"], r2b["created_at"]) == (
        1783999510, 1783999520, 1783999560)
    assert r2a["sibling_ids"] == ["r2a", "r2b"] and r2a["sibling_index"] == 0
    assert r2a["parts"] == [
        {"type": "reasoning", "text": "..."}, {"type": "text", "text": "Positano."},
        {"type": "source-url", "sourceId": "r2a-src-0", "url": "https://example.com/p",
         "title": "P"}]
    assert r2b["parts"] == [
        {"type": "text", "text": "Ravello. "},
        {"type": "data-artifact", "artifactId": "a1", "versionId": "v1", "title": "plan.md",
         "contentType": "text/markdown", "content": "# Plan"}]
    (att,) = r1["attachments"]
    assert (att["type"], att["mime_type"], att["size"]) == ("image", "image/png", 4)
    export(cli, inp, tmp_path / "all", "--branches", "all")
    # The other branch, its search result an inline source.
    assert 'Positano.[\\[1\\]](<https://example.com/p> "P")' in markdowns(
        tmp_path / "all")["2026-07-14 Amalfi"]


@pytest.mark.parametrize("name", ["prod-grok-backend.json", "my grok chats.json"])
def test_the_json_alone_exports_with_a_placeholder_naming_the_missing_image(
        cli: Any, tmp_path: Path, name: str) -> None:
    """Recognised by its content, whatever its name, and not claimed by the Claude
    source (Grok's responses have a ``sender`` too)."""
    alone = tmp_path / name
    alone.write_bytes(BACKEND.read_bytes())
    out = tmp_path / "md"
    res = export(cli, alone, out)
    (md,) = markdowns(out).values()
    assert f"> ⚠ Attachment unavailable: {ASSET_ID}: file not on disk" in md
    (note,) = report(out)["notes"]
    assert note.endswith("1 files referenced by conversations are not in the export:"
                         f" prod-mc-asset-server/{ASSET_ID}/content")
    assert f"zexport: warning: {note}" in res.stderr.splitlines()


def _response(rid: str, sender: str, text: str, when: Any, parent: str | None = None,
              **extra: Any) -> dict[str, Any]:
    response = {"_id": rid, "sender": sender, "message": text, "create_time": when, **extra}
    if parent is not None:
        response["parent_response_id"] = parent
    return {"response": response, "share_link": None}


def _ms(ms: int) -> dict[str, Any]:
    return {"$date": {"$numberLong": str(ms)}}


def _export(folder: Path, conversations: list[dict[str, Any]]) -> Path:
    backend = folder / USER_DIR / "prod-grok-backend.json"
    backend.parent.mkdir(parents=True)
    backend.write_text(json.dumps({"conversations": conversations, "projects": [],
                                   "tasks": [], "media_posts": []}))
    return folder


RETRIED = {
    "conversation": {"id": "g-retried", "title": "", "summary": "Recovering a script",
                     "create_time": "2026-07-15T10:00:00.5Z"},
    "responses": [
        _response("t1", "human", "Complete this script.", _ms(1784102400000)),
        _response("t2", "ASSISTANT", "", _ms(1784102410000), "t1", partial=True),  # aborted
        _response("t3", "assistant", "Here it is.", _ms(1784102420000), "t2"),
        _response("t4", "human", "Complete this script.", _ms(1784102430000)),  # a retry
        _response("t5", "ASSISTANT", "Second attempt.", {"$date": "2026-07-15T10:01:00Z"},
                  "t4"),
        _response("t6", "assistant", "Orphan.", _ms(1784102450000), "missing-response"),
    ]}


def test_roots_retries_dangling_parents_and_aborted_responses(cli: Any,
                                                               tmp_path: Path) -> None:
    inp = _export(tmp_path / "export", [RETRIED])
    export(cli, inp, tmp_path / "json", "--format", "json")
    (doc,) = jsons(tmp_path / "json").values()
    assert doc["title"] == "Recovering a script"  # the summary, when the title is empty
    assert doc["created_at"] == 1784109600
    by_id = {m["id"]: m for m in doc["messages"]}
    assert sorted(by_id) == ["t1", "t3", "t4", "t5", "t6"]  # the empty t2 is no message
    assert by_id["t3"]["parent_id"] == "t1"  # hangs from its nearest kept ancestor
    assert by_id["t5"]["created_at"] == 1784109660
    assert by_id["t4"]["parent_id"] is None and by_id["t6"]["parent_id"] is None
    assert by_id["t1"]["sibling_ids"] == ["t1", "t4", "t6"]  # roots in creation order
    assert doc["active_branch"] == ["t4", "t5"]  # the latest leaf (10:01, after t6)


def test_a_broken_conversation_is_reported_and_the_rest_exported(cli: Any,
                                                                 tmp_path: Path) -> None:
    broken = {"conversation": {"id": "g-broken", "title": "Broken"}, "responses": "nope"}
    inp = _export(tmp_path / "export", [broken, 7, RETRIED])
    out = tmp_path / "out"
    res = export(cli, inp, out, status=1)
    rep = report(out)
    assert rep["counts"]["exported"] == 1
    first, second = rep["run_errors"]
    assert first.endswith("prod-grok-backend.json conversation #1 ('Broken'): cannot read:"
                          " no responses list"), first
    assert second.endswith("prod-grok-backend.json conversation #2: cannot read: not a"
                           " conversation object but int"), second
    for error in (first, second):
        assert f"zexport: error: {error}" in res.stderr.splitlines()
    assert list(markdowns(out)) == ["2026-07-15 Recovering a script"]


def test_a_backend_json_cut_short_exports_what_precedes_the_break(cli: Any,
                                                                  tmp_path: Path) -> None:
    whole = json.dumps({"conversations": [RETRIED, json.loads(BACKEND.read_text())[
        "conversations"][0]]}).encode()
    cut = whole[:whole.index(b'"Amalfi"')]
    out = tmp_path / "out"
    res = export(cli, grok_zip(tmp_path / "cut.zip", cut), out, status=1)
    assert list(markdowns(out)) == ["2026-07-15 Recovering a script"]
    (error,) = report(out)["run_errors"]
    assert f"prod-grok-backend.json: the JSON breaks off at byte {len(cut):,}" in error
    assert f"zexport: error: {error}" in res.stderr.splitlines()


def _refused(cli: Any, inp: Path, tmp_path: Path, says: str) -> None:
    out = tmp_path / "out"
    res = cli("run", "--input", str(inp), "--out", str(out))
    assert res.returncode == 2, res.stderr
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and says in lines[0], res.stderr
    assert not out.exists()


def test_a_truncated_grok_zip_is_refused_creating_nothing(cli: Any, tmp_path: Path) -> None:
    whole = grok_zip(tmp_path / "whole.zip").read_bytes()
    cut = tmp_path / "cut.zip"
    cut.write_bytes(whole[:len(whole) * 2 // 3])
    _refused(cli, cut, tmp_path, "not a readable ZIP file")


def test_an_empty_backend_json_is_refused_saying_so(cli: Any, tmp_path: Path) -> None:
    inp = _export(tmp_path / "export", [])
    (inp / USER_DIR / "prod-grok-backend.json").write_bytes(b"")
    _refused(cli, inp, tmp_path, f"as a grok export: {USER_DIR}/prod-grok-backend.json: the"
             " JSON breaks off at byte 0 (the file is empty); no conversation of the file could"
             " be exported")


def test_a_grok_side_file_alone_is_refused_saying_what_it_is(cli: Any,
                                                              tmp_path: Path) -> None:
    side = tmp_path / "prod-mc-auth-mgmt-api.json"
    side.write_text('{"accounts": []}')
    _refused(cli, side, tmp_path, "this is a Grok export's account file, which holds no"
             " conversations; give the export's ZIP or folder, or its prod-grok-backend.json")


@pytest.mark.parametrize(("name", "what"), [
    ("users", "users.json (the account)"),
    ("memories", "memories.json (Claude's memory)"),
    ("projects", "projects.json (projects and their documents)")])
def test_a_claude_side_file_alone_is_refused_saying_what_to_give(
        cli: Any, tmp_path: Path, name: str, what: str) -> None:
    _refused(cli, CLAUDE / f"yaleman-anthropic-data--tests-data-{name}.json", tmp_path,
             f"this is a Claude export's {what}, which holds no conversations; give the"
             " export's ZIP or folder, or its conversations.json")


# -- the conversion's pieces, on the installed package ------------------------------------

def _cite(n: int) -> str:
    return ('<grok:render card_id="c4274c" card_type="citation_card" type="render_inline_citation">'
            f'\n<argument name="citation_id">{n}</argument>\n</grok:render>')


def test_inline_citations_are_sources_at_their_cuts_whitespace_kept() -> None:
    from zexport_grok.content import response_parts

    response = {"message": f"DNS maps names.{_cite(1)} Ports are not in it.{_cite(7)}"
                           ' Really.<grok-card data-id="9" data-plain-type="render_inline_citation"'
                           ' ></grok-card>\n',
                "web_search_results": [{"url": "https://a.example", "title": "A"},
                                       {"url": "https://b.example", "title": "B"}]}
    assert response_parts(response, "m") == [
        {"type": "text", "text": "DNS maps names."},
        {"type": "source-url", "sourceId": "m-src-1", "url": "https://b.example", "title": "B"},
        # citation 7 names no result and the card none: removed, the text around them one.
        {"type": "text", "text": " Ports are not in it. Really.\n"}]


def test_search_results_are_sources_after_a_text_that_cites_nothing() -> None:
    from zexport_grok.content import response_parts

    response = {"message": "Go.", "thinking_trace": "  ",
                "web_search_results": [{"url": "https://a.example"}, {"title": "no url"},
                                       {"url": "https://a.example", "title": "again"}]}
    assert response_parts(response, "m") == [
        {"type": "text", "text": "Go."},
        {"type": "source-url", "sourceId": "m-src-0", "url": "https://a.example"}]


def test_an_artifact_is_a_part_between_the_texts_around_it() -> None:
    from zexport_grok.content import response_parts

    text = ('See:\n<xaiArtifact artifact_id="a" artifact_version_id="v" title="x.py"'
            ' contentType="text/python">\nprint(1)\n\n</xaiArtifact>\nDone.')
    assert response_parts({"message": text}, "m") == [
        {"type": "text", "text": "See:\n"},
        {"type": "data-artifact", "artifactId": "a", "versionId": "v", "title": "x.py",
         "contentType": "text/python", "content": "print(1)\n"},
        {"type": "text", "text": "\nDone."}]


@pytest.mark.parametrize(("value", "seconds"), [
    ({"$date": {"$numberLong": "1783999510820"}}, 1783999510),
    ({"$date": "2026-07-14T03:26:00.000Z"}, 1783999560),
    ({"$date": 1783999560999}, 1783999560),
    ("2026-07-14T03:25:09.401949Z", 1783999509),
    ("2026-07-14T03:25:09.4Z", 1783999509),
    ("2026-07-14T05:25:09+02:00", 1783999509),
    (1783999509, 1783999509),
    ({"$date": {"$numberLong": "soon"}}, None), ("yesterday", None), (True, None), (None, None),
])
def test_both_mongo_date_forms_and_iso_times(value: Any, seconds: int | None) -> None:
    from zexport_grok.times import unix_seconds

    assert unix_seconds(value) == seconds


class _Reads:
    """A stream that remembers how far it has been read."""

    def __init__(self, data: bytes) -> None:
        self.data, self.at = data, 0

    def read(self, size: int = -1) -> bytes:
        end = len(self.data) if size < 0 else self.at + size
        chunk, self.at = self.data[self.at:end], min(end, len(self.data))
        return chunk


def test_an_object_whose_first_key_is_the_list_is_streamed_not_built_whole() -> None:
    """Grok's ``{"conversations": [...], "projects": ...}``: the first conversation comes
    out after reading about its own bytes, not the whole list (flat memory)."""
    from zexport_grok.convert import is_conversation

    from zexport.sources.jsonstream import iter_conversations

    entry = json.loads(BACKEND.read_text())["conversations"][0]
    many = [{**entry, "conversation": {**entry["conversation"], "id": f"g-{n}"}}
            for n in range(2000)]
    data = json.dumps({"conversations": many, "projects": [{"name": "p"}]}).encode()
    stream = _Reads(data)
    found = iter_conversations(stream, is_conversation)  # type: ignore[arg-type]  # a stream
    key, first = next(found)
    assert (key, first["conversation"]["id"]) == (None, "g-0")
    assert stream.at < len(data) // 10, (stream.at, len(data))
    assert [c["conversation"]["id"] for _k, c in found] == [f"g-{n}" for n in range(1, 2000)]


def test_without_the_plugin_a_grok_export_is_refused_naming_the_plugin(tmp_path: Path) -> None:
    from zexport.errors import ArchiveError
    from zexport.sources.builtin import zexport_sources
    from zexport.sources.resolve import prepare_input

    builtin = {s.name: s for s in zexport_sources()}
    with pytest.raises(ArchiveError) as refused:
        prepare_input(str(GROK), None, builtin, str(tmp_path / "cache"))
    assert str(refused.value) == (
        "this looks like a Grok export (prod-grok-backend.json), which the 'grok' source"
        " plugin reads: install it from zexport's repository (pip install"
        f" ./plugins/zexport-grok): {GROK}")
    assert not (tmp_path / "cache").exists()


def test_a_newer_export_updates_only_the_conversation_that_changed(cli: Any,
                                                                   tmp_path: Path) -> None:
    amalfi = json.loads(BACKEND.read_text())["conversations"][0]
    out = tmp_path / "out"
    export(cli, _export(tmp_path / "v1", [RETRIED, amalfi]), out)
    before = {p.parent.name: p.stat().st_mtime_ns for p in out.glob("*/conversation.md")}
    newer = json.loads(json.dumps(amalfi))
    newer["conversation"]["modify_time"] = "2026-07-20T09:00:00Z"
    newer["responses"].append(_response("r3", "human", "And in winter?", _ms(1784538000000),
                                        "r2b"))
    export(cli, _export(tmp_path / "v2", [RETRIED, newer]), out)
    counts = report(out)["counts"]
    assert (counts["exported"], counts["skipped"]) == (1, 1)
    mds = markdowns(out)
    assert sorted(mds) == ["2026-07-14 Amalfi", "2026-07-15 Recovering a script"]
    assert "And in winter?" in mds["2026-07-14 Amalfi"]  # same folder, now the latest leaf
    after = {p.parent.name: p.stat().st_mtime_ns for p in out.glob("*/conversation.md")}
    assert after["2026-07-15 Recovering a script"] == before["2026-07-15 Recovering a script"]
