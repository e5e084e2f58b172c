"""Baseline: a careful single-process exporter, the kind written in an afternoon.

Usage: ``python benchmarks/careful_single.py DB OUT``

BRIEF §8 asks zexport to be at least 2x faster than "a careful
single-process exporter with batched reads". This is that exporter: what a
competent engineer who knows SQLite would write without zexport's machinery
(no worker processes, no plugins, no atomic writes, no downloads). It fixes
the app's algorithmic faults (BRIEF §9) but stays serial:

- APSW, opened read-only, all reads inside one read transaction (a consistent
  snapshot while the app may be writing), busy timeout set.
- Conversations in ``id`` order, read by keyset in chunks of 500. Per chunk one
  query for all its messages (``conversation_id IN (...)`` ordered by
  ``conversation_id, order_index``) and one for all its attachments, joined
  through ``messages``, so the unindexed ``attachments.message_id`` costs one
  pass per chunk rather than one per message.
- Parts parsed with the stdlib ``json`` module; unparseable parts keep their
  raw text in the output; unknown part types are kept as JSON blocks.
- Markdown of the active branch: walk ``parent_id`` from ``current_node_id`` to
  the root (cycle-safe); if that is impossible, all messages by
  ``order_index``. The number of messages left on other branches is stated.
  YAML front matter, User / Assistant / System sections, sources as a list of
  links, attachments that exist locally copied and linked (URL-encoded),
  a placeholder for the others. Times in ISO 8601 UTC; no export stamp.
- Folder names ``[YYYY-MM-DD ]<title>`` sanitized for Linux, macOS and
  Windows, NFC, capped in bytes on whole characters; a title already used
  gets a suffix of the conversation id, so nothing is overwritten.
- Plain ``open().write()`` (not atomic); one try/except per conversation.

It imports nothing from zexport. The last line on stdout is a JSON summary:
``{"conversations": n, "seconds": t, "failed": k}``.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import sys
import time
import unicodedata
from collections.abc import Iterable, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any
from urllib.parse import quote

import apsw

CHUNK = 500
NAME_MAX_BYTES = 200  # below the 255-byte limit, leaving room for a dedupe suffix

Row = tuple[Any, ...]

# ---------------------------------------------------------------- names

_BAD_CHARS = re.compile(r'[\x00-\x1f\x7f<>:"/\\|?*]')
_SPACES = re.compile(r"\s+")
_RESERVED = frozenset(
    ["CON", "PRN", "AUX", "NUL"]
    + [f"COM{i}" for i in range(1, 10)]
    + [f"LPT{i}" for i in range(1, 10)]
)


def cap_bytes(s: str, limit: int) -> str:
    """Cut ``s`` to at most ``limit`` UTF-8 bytes without splitting a character."""
    b = s.encode("utf-8", "surrogatepass")
    if len(b) <= limit:
        return s
    return b[:limit].decode("utf-8", "ignore")


def sanitize(name: str, limit: int = NAME_MAX_BYTES) -> str:
    """A file name that is valid on Linux, macOS and Windows."""
    s = unicodedata.normalize("NFC", name)
    s = _BAD_CHARS.sub("_", s)
    s = _SPACES.sub(" ", s).strip(" .")
    s = cap_bytes(s, limit).rstrip(" .")
    if not s:
        return "Untitled"
    if s.split(".", 1)[0].upper() in _RESERVED:
        s = "_" + s
    return s


class NameBook:
    """Hands out folder names that never collide, case-insensitively."""

    def __init__(self) -> None:
        self.used: set[str] = set()

    def take(self, base: str, ident: str) -> str:
        candidates = [base]
        safe_id = _BAD_CHARS.sub("_", unicodedata.normalize("NFC", ident))
        for tail in (f" ({cap_bytes(safe_id, 8)})", f" ({cap_bytes(safe_id, 120)})"):
            candidates.append(cap_bytes(base, 255 - len(tail.encode())) + tail)
        n = 2
        while True:
            for name in candidates:
                key = name.casefold()
                if key not in self.used:
                    self.used.add(key)
                    return name
            candidates = [f"{cap_bytes(candidates[-1], 240)} {n}"]
            n += 1


# ---------------------------------------------------------------- rendering


def iso(ts: Any) -> str | None:
    if not isinstance(ts, int):
        return None
    try:
        return datetime.fromtimestamp(ts, timezone.utc).isoformat()
    except (OverflowError, OSError, ValueError):
        return None


def active_branch(messages: Sequence[Row], current: str | None) -> list[Row]:
    """Root-to-leaf path ending at ``current``; all messages if there is none."""
    by_id = {m[0]: m for m in messages}
    node = by_id.get(current) if current else None
    if node is None:
        return list(messages)
    path: list[Row] = []
    seen: set[str] = set()
    while node is not None and node[0] not in seen:
        seen.add(node[0])
        path.append(node)
        parent = node[4]
        node = by_id.get(parent) if parent else None
    path.reverse()
    return path


def md_escape_alt(s: str) -> str:
    return s.replace("\\", "\\\\").replace("[", "\\[").replace("]", "\\]")


def render_parts(raw: str) -> list[str]:
    try:
        parts = json.loads(raw)
    except (ValueError, TypeError):
        return ["_[message parts could not be parsed; raw content follows]_",
                "```\n" + str(raw) + "\n```"]
    if not isinstance(parts, list):
        parts = [parts]
    blocks: list[str] = []
    sources: list[str] = []
    for part in parts:
        kind = part.get("type") if isinstance(part, dict) else None
        if kind == "text":
            text = part.get("text")
            if text:
                blocks.append(str(text))
        elif kind == "source-url":
            url = str(part.get("url") or "")
            title = str(part.get("title") or url)
            sources.append(f"- [{md_escape_alt(title)}](<{url}>)")
        else:
            blocks.append("```json\n" + json.dumps(part, ensure_ascii=False) + "\n```")
    if sources:
        blocks.append("Sources:\n\n" + "\n".join(sources))
    return blocks


def copy_attachments(
    atts: Iterable[Row], folder: Path, taken: set[str]
) -> list[str]:
    """Copy what exists locally; return the Markdown lines for all of them."""
    lines: list[str] = []
    for att in atts:
        kind, local, filename = att[1], att[2], att[3]
        label = str(filename or (os.path.basename(local) if local else "") or "attachment")
        if local and os.path.isfile(local):
            base = sanitize(os.path.basename(local) or label)
            name, n = base, 2
            while name.casefold() in taken:
                stem, ext = os.path.splitext(base)
                name = f"{stem}-{n}{ext}"
                n += 1
            taken.add(name.casefold())
            dest_dir = folder / "attachments"
            dest_dir.mkdir(exist_ok=True)
            shutil.copyfile(local, dest_dir / name)
            link = f"[{md_escape_alt(label)}](attachments/{quote(name)})"
            lines.append("!" + link if kind == "image" else link)
        else:
            lines.append(f"> _[attachment not available: {md_escape_alt(label)}]_")
    return lines


def render(conv: Row, messages: Sequence[Row], atts_by_msg: dict[str, list[Row]],
           folder: Path) -> str:
    cid, title, provider, created, updated, _count, current = conv
    branch = active_branch(messages, current)
    out: list[str] = [
        "---",
        f"id: {json.dumps(cid)}",
        f"title: {json.dumps(title, ensure_ascii=False)}",
        f"provider: {json.dumps(provider)}",
        f"created: {iso(created) or 'null'}",
        f"updated: {iso(updated) or 'null'}",
        f"message_count: {len(messages)}",
        "---",
        "",
        f"# {title}",
        "",
    ]
    left_out = len(messages) - len(branch)
    if left_out:
        out += [f"_{left_out} message(s) on other branches are not shown._", ""]
    taken: set[str] = set()
    for msg in branch:
        mid, role, parts = msg[0], msg[1], msg[2]
        label = {"user": "User", "assistant": "Assistant", "system": "System"}.get(
            role, str(role).title()
        )
        out += [f"## {label}", ""]
        for block in render_parts(parts):
            out += [block, ""]
        atts = atts_by_msg.get(mid)
        if atts:
            for line in copy_attachments(atts, folder, taken):
                out += [line, ""]
    return "\n".join(out)


# ---------------------------------------------------------------- driver

CONV_COLUMNS = "id, title, provider, created_at, updated_at, message_count, current_node_id"
FIRST_SQL = f"SELECT {CONV_COLUMNS} FROM conversations ORDER BY id LIMIT ?"
NEXT_SQL = f"SELECT {CONV_COLUMNS} FROM conversations WHERE id > ? ORDER BY id LIMIT ?"


def _in(n: int) -> str:
    return ",".join("?" * n)


def export_chunk(
    db: apsw.Connection, convs: list[Row], out: Path, names: NameBook
) -> int:
    ids = [c[0] for c in convs]
    msgs_by_conv: dict[str, list[Row]] = {}
    for row in db.execute(
        "SELECT id, role, parts, order_index, parent_id, conversation_id FROM messages "
        f"WHERE conversation_id IN ({_in(len(ids))}) ORDER BY conversation_id, order_index",
        ids,
    ):
        msgs_by_conv.setdefault(row[5], []).append(row)
    atts_by_msg: dict[str, list[Row]] = {}
    for row in db.execute(
        "SELECT a.message_id, a.type, a.local_path, a.filename, a.id "
        "FROM messages m JOIN attachments a ON a.message_id = m.id "
        f"WHERE m.conversation_id IN ({_in(len(ids))}) ORDER BY a.message_id, a.id",
        ids,
    ):
        atts_by_msg.setdefault(row[0], []).append(row)

    failed = 0
    for conv in convs:
        try:
            title = conv[1] if isinstance(conv[1], str) else str(conv[1] or "")
            created = iso(conv[3])
            prefix = created[:10] + " " if created else ""
            base = prefix + sanitize(title, NAME_MAX_BYTES - len(prefix))
            folder = out / names.take(base, str(conv[0]))
            folder.mkdir(exist_ok=True)
            text = render(conv, msgs_by_conv.get(conv[0], []), atts_by_msg, folder)
            with open(folder / "conversation.md", "w", encoding="utf-8", newline="\n") as f:
                f.write(text)
        except Exception as exc:  # one bad conversation must not stop the run
            failed += 1
            if failed <= 5:
                print(f"failed {conv[0]!r}: {exc!r}", file=sys.stderr)
    return failed


def run(db_path: str, out: Path) -> dict[str, Any]:
    start = time.perf_counter()
    db = apsw.Connection(db_path, flags=apsw.SQLITE_OPEN_READONLY)
    db.setbusytimeout(5000)
    out.mkdir(parents=True, exist_ok=True)
    names = NameBook()
    done = failed = 0
    try:
        db.execute("BEGIN")
        convs = list(db.execute(FIRST_SQL, (CHUNK,)))
        while convs:
            failed += export_chunk(db, convs, out, names)
            done += len(convs)
            convs = list(db.execute(NEXT_SQL, (convs[-1][0], CHUNK)))
        db.execute("COMMIT")
    finally:
        db.close()
    seconds = round(time.perf_counter() - start, 3)
    return {"conversations": done, "seconds": seconds, "failed": failed}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("db", help="OwnYourChat archive (SQLite)")
    parser.add_argument("out", type=Path, help="output folder")
    args = parser.parse_args(argv)
    print(json.dumps(run(args.db, args.out)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
