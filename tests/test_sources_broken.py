"""An export whose JSON breaks off: what precedes the break is exported, the break reported.

Real fixtures, cut by the test: a ``conversations.json`` truncated in the
middle of a conversation, and a 2026 sharded export whose middle shard is
truncated (as a folder and as the ZIP). Each run is a real ``zexport run
--input`` (controller, workers); the conversion of a sharded export runs in
real helper processes, and gives the same archive as one process.
"""

from __future__ import annotations

import io
import json
import os
import sqlite3
import zipfile
from pathlib import Path
from typing import Any

import orjson
import pytest
from exportkit import HARDENING, PULSAR, markdowns, report

from zexport.plugins import load_registry
from zexport.sources import parallel
from zexport.sources.jsonstream import JSONBroken, iter_conversations
from zexport.sources.resolve import prepare_input

pytestmark = pytest.mark.timeout(120)


def _real_conversations() -> list[dict[str, Any]]:
    """The 13 conversations of the two pulsar fixtures (keyed by name), with their names as ids.

    Their node ids repeat across conversations (``root``, ``u1``, ``a1``), as in
    real exports.
    """
    convs = []
    for fixture in (PULSAR, HARDENING):
        for key, conv in json.loads(fixture.read_text()).items():
            convs.append({**conv, "id": key})
    return convs


def _run(cli: Any, inp: Path, out: Path, status: int) -> Any:
    res = cli("run", "--input", str(inp), "--out", str(out), "--tz", "UTC", "--workers", "2",
              "--progress", "none", "-q")
    assert res.returncode == status, res.stdout + res.stderr
    return res


def _titles(out: Path) -> list[str]:
    return sorted(next(line[2:] for line in md.splitlines() if line.startswith("# "))
                  for md in markdowns(out).values())


def test_truncated_conversations_json_exports_every_conversation_before_the_break(
        cli: Any, tmp_path: Path) -> None:
    data = PULSAR.read_bytes()
    keys = list(json.loads(data))
    cut_at = data.index("Кириллица".encode()) + 1  # the sixth's title, mid-character
    cut = tmp_path / "conversations.json"
    cut.write_bytes(data[:cut_at])
    res = _run(cli, cut, tmp_path / "out", status=1)
    whole = json.loads(data)
    assert _titles(tmp_path / "out") == sorted(whole[k]["title"] for k in keys[:5])
    errors = res.stderr.strip().splitlines()
    assert len(errors) == 1, res.stderr
    assert errors[0] == (  # the file named once: it is the export
        f"zexport: error: chatgpt export {cut}: the JSON breaks off at byte {cut_at:,} (the"
        " file ends there: truncated); the 5 conversations before it were exported, the rest"
        " of the file was not")
    rep = report(tmp_path / "out")
    assert rep["status"] == "partial" and rep["counts"]["exported"] == 5
    assert len(rep["run_errors"]) == 1 and f"at byte {cut_at:,}" in rep["run_errors"][0]


def _sharded(folder: Path, convs: list[dict[str, Any]], sizes: list[int]) -> list[str]:
    """A 2026 layout (manifest, ``conversations-NNN.json``) with shards of ``sizes``."""
    folder.mkdir()
    names, at = [], 0
    for n, size in enumerate(sizes):
        name = f"conversations-{n:03d}.json"
        (folder / name).write_bytes(orjson.dumps(convs[at:at + size], option=orjson.OPT_INDENT_2))
        names.append(name)
        at += size
    (folder / "export_manifest.json").write_text(json.dumps({"version": 1, "logical_files": {
        "conversations.json": {"files": names, "sharded": True}}}))
    return names


@pytest.mark.parametrize("shape", ["folder", "zip"])
def test_a_truncated_shard_costs_only_what_follows_its_break(
        cli: Any, tmp_path: Path, shape: str) -> None:
    convs = _real_conversations()[:8]
    folder = tmp_path / "export"
    names = _sharded(folder, convs, [3, 3, 2])
    middle = (folder / names[1]).read_bytes()
    second = orjson.dumps(convs[4]["title"])
    cut_at = middle.index(second) + 5  # inside the shard's second conversation
    (folder / names[1]).write_bytes(middle[:cut_at])
    inp = folder
    if shape == "zip":
        inp = tmp_path / "export.zip"
        with zipfile.ZipFile(inp, "w", zipfile.ZIP_DEFLATED) as zf:
            for path in sorted(folder.iterdir()):
                zf.write(path, path.name)
    res = _run(cli, inp, tmp_path / "out", status=1)
    kept = convs[:3] + convs[3:4] + convs[6:]
    assert _titles(tmp_path / "out") == sorted(c["title"] for c in kept)
    errors = res.stderr.strip().splitlines()
    assert len(errors) == 1, res.stderr
    assert (f"conversations-001.json: the JSON breaks off at byte {cut_at:,} (the file ends"
            " there: truncated); the conversation before it was exported") in errors[0]
    assert report(tmp_path / "out")["counts"]["exported"] == 6


def test_a_shard_that_breaks_before_its_first_conversation_costs_only_that_shard(
        cli: Any, tmp_path: Path) -> None:
    convs = _real_conversations()[:8]
    folder = tmp_path / "export"
    names = _sharded(folder, convs, [3, 3, 2])
    (folder / names[1]).write_bytes((folder / names[1]).read_bytes()[:12])
    res = _run(cli, folder, tmp_path / "out", status=1)
    assert _titles(tmp_path / "out") == sorted(c["title"] for c in convs[:3] + convs[6:])
    (error,) = res.stderr.strip().splitlines()
    assert error.endswith(f"{names[1]}: the JSON breaks off at byte 12 (the file ends there:"
                          " truncated); no conversation of the file could be exported"), error


def test_an_export_that_breaks_before_its_first_conversation_is_refused(
        cli: Any, tmp_path: Path) -> None:
    cut = tmp_path / "conversations.json"
    cut.write_bytes(PULSAR.read_bytes()[:30])
    out = tmp_path / "out"
    res = cli("run", "--input", str(cut), "--out", str(out), "--source", "chatgpt")
    assert res.returncode == 2, res.stderr
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and "the JSON breaks off at byte 30" in lines[0], res.stderr
    assert not out.exists()


@pytest.mark.parametrize("whole", [False, True], ids=["streamed", "parsed-whole"])
def test_the_break_is_found_at_its_byte(whole: bool) -> None:
    data = PULSAR.read_bytes()
    at = data.index(b'"cycle"') - 3
    bad = data[:at] + b"]" + data[at:]  # not JSON from that byte on
    seen = []
    with pytest.raises(JSONBroken) as broken:
        for key, _conv in iter_conversations(io.BytesIO(bad), lambda v: "mapping" in v,
                                             len(bad) if whole else None):
            seen.append(key)
    assert seen == ["linear", "regenerate", "attachment", "missingParent"]
    assert broken.value.offset == at
    assert broken.value.exact is whole  # streamed: where yajl's lexer stood, here the same


def _rows(db: str) -> dict[str, list[tuple[Any, ...]]]:
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    rows = {t: [tuple(str(v).replace("/part-1/", "/") for v in r)
                for r in con.execute(f"SELECT * FROM {t} ORDER BY rowid")]
            for t in ("conversations", "messages", "attachments")}
    con.close()
    return rows


def test_shards_converted_in_two_processes_give_the_archive_of_one(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    convs = _real_conversations()
    convs.insert(10, {**convs[0], "title": "The same id again"})  # a repeated conversation
    folder = tmp_path / "export"
    _sharded(folder, convs, [2, 2, 2, 2, 1, 1, 1, 1, 2])
    sources = load_registry().sources
    one = prepare_input(str(folder), None, sources, str(tmp_path / "one"), processes=1)
    helpers: list[list[str]] = []
    popen = parallel.subprocess.Popen

    def counted(args: list[str], **kw: Any) -> Any:
        helpers.append(args)
        return popen(args, **kw)

    monkeypatch.setattr(parallel.subprocess, "Popen", counted)
    two = prepare_input(str(folder), None, sources, str(tmp_path / "two"), processes=2)
    assert len(helpers) == 1 and orjson.loads(helpers[0][-1])["files"] == [
        f"conversations-{n:03d}.json" for n in range(5, 9)]
    assert not [n for n in os.listdir(os.path.dirname(two.db)) if n.startswith("parts-")]
    assert one.notes == two.notes and any("appears twice" in n for n in one.notes)
    rows_one = _rows(one.db)
    rows_two = _rows(two.db)
    assert len(rows_one["conversations"]) == 13
    renamed = [r[0] for r in rows_one["messages"] if r[0].endswith(":u1")]
    assert len(renamed) >= 5  # the fixtures' reused node ids were renamed, in both
    assert {t: [tuple(v.replace(str(tmp_path / "one"), "") for v in r) for r in rows]
            for t, rows in rows_one.items()} == \
        {t: [tuple(v.replace(str(tmp_path / "two"), "") for v in r) for r in rows]
         for t, rows in rows_two.items()}
