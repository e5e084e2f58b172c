"""Helpers for the export-input tests: fixtures, ZIPs built from them, reading outputs."""

from __future__ import annotations

import json
import shutil
import zipfile
from pathlib import Path
from typing import Any

from corpora import APP_FIXTURES, EXPORT_FIXTURES

FIXTURES = EXPORT_FIXTURES
APP_EMPTY = APP_FIXTURES / "app-empty-sqlite.db"
APP_TABLE = APP_FIXTURES / "table.db"
CHATGPT = FIXTURES / "chatgpt"
CLAUDE = FIXTURES / "claude"
SYNTH_2026 = CHATGPT / "synthetic-2026-layout"
CLAUDE_2026 = CLAUDE / "synthetic-2026"
PULSAR = CHATGPT / "2015pulsar-chatgpt-conversation-extractor--fixtures-conversations.json"
HARDENING = CHATGPT / "2015pulsar-chatgpt-conversation-extractor--fixtures-hardening.json"


def zip_folder(folder: Path, target: Path, skip: tuple[str, ...] = ()) -> Path:
    """``folder``'s files as a ZIP (as the provider ships it)."""
    with zipfile.ZipFile(target, "w", zipfile.ZIP_DEFLATED) as zf:
        for path in sorted(folder.rglob("*")):
            rel = path.relative_to(folder).as_posix()
            if path.is_file() and rel not in skip:
                zf.write(path, rel)
    return target


def copy_folder(folder: Path, target: Path) -> Path:
    shutil.copytree(folder, target)
    return target


def report(out: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((out / ".zexport" / "report.json").read_text())
    return data


def markdowns(out: Path) -> dict[str, str]:
    """``{folder name: conversation.md text}``."""
    return {p.parent.name: p.read_text() for p in out.glob("*/conversation.md")}


def jsons(out: Path) -> dict[str, dict[str, Any]]:
    """``{conversation id: conversation.json}``."""
    found: dict[str, dict[str, Any]] = {}
    for p in out.glob("*/conversation.json"):
        doc = json.loads(p.read_text())
        found[doc["id"]] = doc
    return found


def sections(md: str) -> list[str]:
    """The ``## Role`` headings of a conversation.md, in order."""
    return [line[3:] for line in md.splitlines() if line.startswith("## ")]
