"""Baseline: the OwnYourChat app's own Markdown exporter, translated to Python.

Usage: ``python benchmarks/baseline_app.py DB OUT [--counting-pass]``

This is the yardstick of BRIEF §8 ("at least 50x faster than the baseline").
It does, in one process and one thread with the stdlib ``sqlite3`` module, what
the app's export worker does (``src/main/export/worker.ts``, ``markdown.ts``,
``utils.ts``; defects listed in ``research/peers.md`` §3 and BRIEF §9):

- ``SELECT * FROM conversations ORDER BY updated_at DESC LIMIT 10000`` plus a
  ``count(*)``: the app's hard cap, kept on purpose; anything older is skipped
  (a note on stderr says how many).
- Per conversation: the conversation again by id, then one query for its
  messages ordered by ``order_index``, then **one query per message** for its
  attachments on ``attachments.message_id``, a column with no index, so each
  is a full scan of the attachments table. This N+1 pattern is where the
  app's time goes.
- Markdown like ``markdown.ts``: folder ``OUT/[YYYY-MM-DD ]<sanitized title>``
  (local-time date, title sanitized and cut at 100 UTF-16 units exactly as
  ``sanitizeFilename`` does), ``# title``, bold Created / Last updated /
  Exported lines in ``toLocaleString('en-US')`` style, one ``## User`` or
  ``## Assistant`` section per message in ``order_index`` order (all branches
  interleaved; ``system`` shown as Assistant), parts joined with ``''``,
  attachments that exist locally copied into ``attachments/``.
- Plain ``open().write()``: not atomic; same-title conversations overwrite
  each other silently, as in the app.

Differences from the app, all of which make this baseline *faster* or merely
keep it running, never slower:

- Each conversation is wrapped in try/except and failures are counted (the
  app aborts the whole batch at the first error, e.g. ENAMETOOLONG); we want a
  time, not a crash.
- Attachments are never downloaded (the app asks its main process for each
  missing file, one at a time); a missing file is simply skipped.
- By default the app's counting pass (with attachments on it loads every
  conversation in full once more before exporting, worker.ts) is left out;
  ``--counting-pass`` adds it.
- The archive is opened read-only (the app opens it read-write but does not
  write during an export without downloads).

It imports nothing from zexport so that it measures the app's algorithm and
nothing else. The last line on stdout is a JSON summary:
``{"conversations": n, "seconds": t, "failed": k}``.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import sqlite3
import sys
import time
from datetime import datetime
from pathlib import Path
from typing import Any

APP_LIMIT = 10000  # listConversations({ limit: 10000 }) in worker.ts

Row = dict[str, Any]


def _to_date(ts: Any) -> datetime:
    """drizzle's timestamp mode: Unix seconds to a local Date.

    NULL becomes now, as in mapConversation. A value JS would turn into an
    Invalid Date (text, out of range) also becomes now, so the run goes on.
    """
    if ts is None:
        return datetime.now()
    try:
        return datetime.fromtimestamp(ts)
    except (TypeError, ValueError, OverflowError, OSError):
        return datetime.now()


def format_date(d: datetime) -> str:
    """utils.ts formatDate: YYYY-MM-DD in local time."""
    return f"{d.year:04d}-{d.month:02d}-{d.day:02d}"


def format_date_time(d: datetime) -> str:
    """markdown.ts formatDateTime: toLocaleString('en-US', short month, 2-digit hour/minute)."""
    hour = d.hour % 12 or 12
    ampm = "AM" if d.hour < 12 else "PM"
    return f"{d.strftime('%b')} {d.day}, {d.year}, {hour:02d}:{d.minute:02d} {ampm}"


_FORBIDDEN = re.compile(r'[\\/:*?"<>|]+')
_SPACES = re.compile(r"\s+")
_LEADING_DOTS = re.compile(r"^\.+")


def sanitize_filename(name: str) -> str:
    """utils.ts sanitizeFilename, including its cut at 100 UTF-16 code units.

    A cut through a surrogate pair leaves a lone surrogate, which Node writes
    to disk as U+FFFD; decoding with ``errors="replace"`` does the same.
    """
    s = _FORBIDDEN.sub("-", name)
    s = _SPACES.sub(" ", s)
    s = _LEADING_DOTS.sub("", s)
    units = s.encode("utf-16-le", "surrogatepass")
    if len(units) > 200:
        s = units[:200].decode("utf-16-le", "replace")
    return s.strip() or "Untitled"


def map_conversation(row: sqlite3.Row) -> Row:
    return {
        "id": row["id"],
        "title": row["title"],
        "provider": row["provider"],
        "createdAt": _to_date(row["created_at"]),
        "updatedAt": _to_date(row["updated_at"]),
        "syncedAt": _to_date(row["synced_at"]),
        "messageCount": row["message_count"] or 0,
        "currentNodeId": row["current_node_id"],
    }


def map_attachment(row: sqlite3.Row) -> Row:
    return {
        "id": row["id"],
        "messageId": row["message_id"] or "",
        "type": row["type"],
        "fileId": row["file_id"],
        "originalUrl": row["original_url"] or "",
        "localPath": row["local_path"] or "",
        "filename": row["filename"] or "",
        "mimeType": row["mime_type"] or "",
        "size": row["size"] or 0,
        "width": row["width"],
        "height": row["height"],
    }


def map_message(row: sqlite3.Row, attachments: list[Row]) -> Row:
    """worker.ts mapMessage: unparseable JSON becomes an empty list (the text is lost)."""
    sibling_ids: Any = []
    if row["sibling_ids"]:
        try:
            sibling_ids = json.loads(row["sibling_ids"])
        except ValueError:
            sibling_ids = []
    parts: list[Any] = []
    if row["parts"]:
        try:
            parsed = json.loads(row["parts"])
            if isinstance(parsed, list):
                parts = parsed
        except ValueError:
            parts = []
    created = row["created_at"]
    return {
        "id": row["id"],
        "conversationId": row["conversation_id"] or "",
        "role": row["role"],
        "parts": parts,
        "createdAt": _to_date(created),
        "orderIndex": row["order_index"],
        "attachments": attachments,
        "parentId": row["parent_id"],
        "siblingIds": sibling_ids,
        "siblingIndex": row["sibling_index"] or 0,
    }


def get_conversation_with_messages(
    db: sqlite3.Connection, conversation_id: str
) -> tuple[Row, list[Row]] | None:
    """worker.ts getConversationWithMessages: 2 + one-per-message queries."""
    conv = db.execute("SELECT * FROM conversations WHERE id = ?", (conversation_id,)).fetchall()
    if not conv:
        return None
    msgs = db.execute(
        "SELECT * FROM messages WHERE conversation_id = ? ORDER BY order_index",
        (conversation_id,),
    ).fetchall()
    out: list[Row] = []
    for msg in msgs:
        atts = db.execute(
            "SELECT * FROM attachments WHERE message_id = ?", (msg["id"],)
        ).fetchall()
        out.append(map_message(msg, [map_attachment(a) for a in atts]))
    return map_conversation(conv[0]), out


def _part_text(part: Any) -> str:
    if not isinstance(part, dict):
        return ""
    if part.get("type") == "text":
        text = part.get("text")
    elif part.get("type") == "source-url":
        url = part.get("url")
        title = part.get("title")
        text = f"[{title}]({url})" if title else url
    else:
        return ""
    return "" if text is None else str(text)


def export_to_markdown(conversation: Row, messages: list[Row], out: Path) -> Path:
    """markdown.ts exportToMarkdown with prefixTimestamp and includeAttachments on."""
    safe_title = sanitize_filename(conversation["title"])
    folder = out / f"{format_date(conversation['createdAt'])} {safe_title}"
    if not folder.exists():
        folder.mkdir(parents=True)
    attachments_folder = folder / "attachments"
    if any(m["attachments"] for m in messages) and not attachments_folder.exists():
        attachments_folder.mkdir(parents=True)

    lines: list[str] = [
        f"# {conversation['title']}",
        "",
        f"**Created:** {format_date_time(conversation['createdAt'])}  ",
        f"**Last updated:** {format_date_time(conversation['updatedAt'])}  ",
        f"**Exported:** {format_date_time(datetime.now())}",
        "",
    ]
    for msg in messages:
        lines.append("## User" if msg["role"] == "user" else "## Assistant")
        lines.append("")
        content = "".join(_part_text(p) for p in msg["parts"])
        if content:
            lines.append(content)
            lines.append("")
        for att in msg["attachments"]:
            local = att["localPath"]
            if local and os.path.exists(local):
                dest_name = os.path.basename(local)
                shutil.copyfile(local, attachments_folder / dest_name)
                link = f"[{att['filename']}](./attachments/{dest_name})"
                lines.append("!" + link if att["type"] == "image" else link)
                lines.append("")

    path = folder / "conversation.md"
    with open(path, "w", encoding="utf-8") as f:
        f.write("\n".join(lines))
    return path


def run(db_path: str, out: Path, counting_pass: bool = False) -> dict[str, Any]:
    start = time.perf_counter()
    db = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True)
    db.row_factory = sqlite3.Row
    try:
        rows = db.execute(
            "SELECT * FROM conversations ORDER BY updated_at DESC LIMIT ?", (APP_LIMIT,)
        ).fetchall()
        total = db.execute("SELECT count(*) FROM conversations").fetchone()[0]
        conversations = [map_conversation(r) for r in rows]
        if total > len(conversations):
            print(
                f"note: the app exports at most {APP_LIMIT} conversations; "
                f"{total - len(conversations)} of {total} skipped",
                file=sys.stderr,
            )
        if counting_pass:
            for conv in conversations:
                get_conversation_with_messages(db, conv["id"])

        out.mkdir(parents=True, exist_ok=True)
        failed = 0
        for conv in conversations:
            try:
                data = get_conversation_with_messages(db, conv["id"])
                if data is None:
                    raise LookupError(f"Conversation not found: {conv['id']}")
                export_to_markdown(data[0], data[1], out)
            except Exception as exc:  # count and go on; the app would stop here
                failed += 1
                if failed <= 5:
                    print(f"failed {conv['id']}: {exc!r}", file=sys.stderr)
    finally:
        db.close()
    seconds = round(time.perf_counter() - start, 3)
    return {"conversations": len(conversations), "seconds": seconds, "failed": failed}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("db", help="OwnYourChat archive (SQLite)")
    parser.add_argument("out", type=Path, help="output folder")
    parser.add_argument(
        "--counting-pass",
        action="store_true",
        help="also run the app's attachment-counting pass (reads everything twice)",
    )
    args = parser.parse_args(argv)
    summary = run(args.db, args.out, args.counting_pass)
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
