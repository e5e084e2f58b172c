"""Which conversations a run exports, oldest first: the controller's planning queries.

Why apart from the batch reader: the controller lists every conversation's
head (id, title, times, provider) once to name and schedule it, and never
reads messages; a worker reads whole conversations and never lists.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, NamedTuple

import apsw

from zexport.sources.archive.opening import for_encoding, is_utf8
from zexport.sources.archive.repair import as_int, as_text


@dataclass(frozen=True, slots=True)
class Selection:
    """Which conversations to export (the ``run`` filters)."""

    providers: tuple[str, ...] = ()
    since: int | None = None
    until: int | None = None
    ids: tuple[str, ...] = ()
    title: str | None = None  # a regular expression searched in titles, ignoring case

    def title_matches(self, title: str) -> bool:
        """Whether ``title`` is selected by ``title`` (always, without a pattern).

        In Python, not SQL: titles may be bytes that are not UTF-8, which are
        matched as they are shown (with replacement characters).
        """
        return self.title is None or _title_pattern(self.title).search(title) is not None

    def where(self, addressable: bool = True) -> tuple[str, list[Any]]:
        """SQL ``WHERE`` clause and bindings for this selection.

        Only rows whose id is text, by default (``addressable=False``: only the others).
        Why: ``id TEXT PRIMARY KEY`` admits NULL and BLOB ids, and everything
        downstream (the plan, the wire, the manifest, the workers' ``id IN (...)``)
        addresses a conversation by its text id: a NULL id stopped the whole run, a
        BLOB one was silently never exported. See :func:`unaddressable_conversations`.
        """
        clauses = ["typeof(id) = 'text'" if addressable else "typeof(id) != 'text'"]
        args: list[Any] = []
        if self.providers:
            clauses.append(f"provider IN ({','.join('?' * len(self.providers))})")
            args.extend(self.providers)
        if self.ids:
            clauses.append(f"id IN ({','.join('?' * len(self.ids))})")
            args.extend(self.ids)
        if self.since is not None:
            clauses.append("COALESCE(updated_at, created_at) >= ?")
            args.append(self.since)
        if self.until is not None:
            clauses.append("COALESCE(created_at, updated_at) < ?")
            args.append(self.until)
        return " WHERE " + " AND ".join(clauses), args


class ConversationHead(NamedTuple):
    """What the controller needs of a conversation to name and schedule it.

    A named tuple, not a frozen dataclass: one is made per conversation while
    planning, on the path to the first file, and a frozen dataclass takes 1 us
    to build (``object.__setattr__`` per field) against 0.3 us.
    """

    id: str
    title: str | None
    created_at: int | None
    updated_at: int | None
    message_count: int | None
    provider: str | None = None
    current_node_id: str | None = None


def list_conversations(conn: apsw.Connection, selection: Selection,
                       rejected: list[tuple[str, str]] | None = None,
                       ) -> Iterator[ConversationHead]:
    """Every selected conversation, oldest first (then by id): the export order.

    A row whose id is text that is not valid UTF-8 cannot be addressed (nor even
    read as text): it is left out and, when ``rejected`` is given, appended to it
    as ``(quoted id, title)``, like :func:`unaddressable_conversations`.
    """
    where, args = selection.where()
    # Dirty rows must not stop the listing: text is read as bytes (a BLOB or bytes that
    # are not UTF-8 would otherwise raise, and stop the whole run), times may be text
    # or REAL.
    sql = (
        "SELECT CAST(id AS BLOB), CAST(title AS BLOB), created_at, updated_at, message_count,"
        f" CAST(provider AS BLOB), CAST(current_node_id AS BLOB) FROM conversations{where}"
        " ORDER BY created_at IS NULL, created_at, id"
    )
    for raw_id, title, created, updated, count, provider, current in conn.execute(
            for_encoding(sql, is_utf8(conn)), args):
        text = title.decode("utf-8", "replace") if type(title) is bytes else as_text(title)
        if not selection.title_matches(text):
            continue
        try:
            cid = raw_id if type(raw_id) is str else raw_id.decode("utf-8")
        except UnicodeDecodeError:
            if rejected is not None:
                rejected.append((f"X'{raw_id.hex().upper()}'", text))
            continue
        yield ConversationHead(cid, text, created if type(created) is int else as_int(created),
                               updated if type(updated) is int else as_int(updated),
                               count if type(count) is int else as_int(count),
                               None if provider is None else as_text(provider),
                               None if current is None else as_text(current))


def unaddressable_conversations(conn: apsw.Connection,
                                selection: Selection) -> list[tuple[str, str]]:
    """``(quoted id, title)`` of selected rows whose id is not text (NULL or a BLOB).

    They cannot be exported (nothing can address them, and no message can point at
    a NULL id); the controller reports each as a failed conversation. The id is
    given as SQL ``quote()`` spells it (``NULL``, ``X'62'``) so the report names it.
    """
    where, args = selection.where(addressable=False)
    rows = [(str(quoted), as_text(title)) for quoted, title in conn.execute(for_encoding(
        f"SELECT quote(id), CAST(title AS BLOB) FROM conversations{where}"
        " ORDER BY created_at IS NULL, created_at", is_utf8(conn)), args)]
    return [(quoted, title) for quoted, title in rows if selection.title_matches(title)]


@functools.lru_cache(maxsize=8)
def _title_pattern(pattern: str) -> re.Pattern[str]:
    return re.compile(pattern, re.IGNORECASE)

