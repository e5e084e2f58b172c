"""Where in the output folder each conversation goes: ``--layout`` (BRIEF §4, §4b).

A layout is a template of path parts separated by ``/``, each made of
literal text and fields (:data:`FIELDS`). It names a conversation's *place*:
the path the controller names once, before any work is sent, and keeps unique
(:mod:`zexport.run.plan`). What a place means depends on the template's last
character:

- ending in ``/``, one folder per conversation (the app's layout, ``folder``:
  ``{date} {title}/``): ``<place>/conversation.<ext>``, attachments in
  ``<place>/attachments/``;
- otherwise one note per conversation (``note``: ``{date} {title}``):
  ``<place>.<ext>``, attachments in a folder shared by the notes beside it,
  ``<dir>/attachments/<note name>/``, so a folder of notes holds notes only
  (and one ``attachments`` folder), as Obsidian vaults are kept.

Every field is sanitized as one path component (a ``/`` in a title cannot make
a folder), each part is capped at 255 bytes on whole characters, and only the
last part gets the `` (<id prefix>)`` suffix that keeps equal names apart.
"""

from __future__ import annotations

import string
from dataclasses import dataclass
from datetime import datetime, tzinfo

from zexport.core.naming import _SPACES as _SPACE_RUNS
from zexport.core.naming import _WINDOWS_RESERVED as _DEVICE_NAMES
from zexport.core.naming import (
    MAX_NAME_BYTES,
    _sanitized_title,
    base_name,
    date_prefix,
    name_key,
    sanitize_component,
    truncate_utf8,
)
from zexport.errors import UsageError

ATTACHMENTS_DIR = "attachments"
CONVERSATION_STEM = "conversation"  # the file of a folder layout: conversation.<ext>
# The named layouts, with the date prefix and without (--no-date-prefix).
NAMED = {"folder": ("{date} {title}/", "{title}/"), "note": ("{date} {title}", "{title}")}
FIELDS = {
    "title": "the title (Untitled when it has none)",
    "date": "creation date, YYYY-MM-DD in --tz (empty when unknown)",
    "year": "creation year, YYYY (empty when unknown)",
    "month": "creation month, 01-12 (empty when unknown)",
    "day": "creation day of the month, 01-31 (empty when unknown)",
    "provider": "chatgpt, claude, perplexity (unknown when empty)",
    "id": "the conversation id",
    "id8": "the first 8 characters of the id",
}
# A part left with nothing in it (only date fields, and the conversation has no date).
EMPTY_PART = "undated"
# Room kept for ``.<extension>`` after a note's name, whatever the format: a note keeps
# its name when the same archive is exported to another format.
EXTENSION_ROOM = 16


@dataclass(frozen=True)
class Files:
    """Where one conversation's files go, relative to the output folder."""

    main: str  # the conversation file
    own_dir: str  # the conversation's folder: files a format writes with ctx.write
    attachments_dir: str  # where its attachments are copied
    attachments_link: str  # attachments_dir as seen from the main file's folder


@dataclass(frozen=True)
class Layout:
    """A parsed ``--layout``; ``spec`` is what is recorded in the manifest: ``folder``,
    ``note`` or the template (the date prefix of a named layout is a naming option,
    not another layout: changing it moves files, as a title change does)."""

    spec: str
    parts: tuple[tuple[tuple[str, str | None], ...], ...]  # per part: (literal, field)
    folders: bool  # one folder per conversation (the template ends with "/")
    # Named layouts (folder, note): whether dated. They take naming.base_name's path, the
    # same names (tests check it) in half the time: planning is on the way to the first file.
    named_dated: bool | None = None

    @classmethod
    def parse(cls, text: str, dated: bool = True) -> Layout:
        """``folder``, ``note`` or a template; a bad template raises UsageError.

        ``dated``: the named layouts' names start with the creation day."""
        template = NAMED[text][0 if dated else 1] if text in NAMED else text
        folders = template.endswith("/")
        body = template[:-1] if folders else template
        if not body.strip():
            raise UsageError(f"--layout {text!r} is empty (use folder, note or a template"
                             " such as '{provider}/{year}/{title}')")
        parts: list[tuple[tuple[str, str | None], ...]] = []
        for raw in body.split("/"):
            if not raw.strip():
                raise UsageError(f"--layout {text!r} has an empty path part")
            try:
                pieces = list(string.Formatter().parse(raw))
            except ValueError as exc:
                raise UsageError(f"--layout {text!r}: {exc} (write {{{{ and }}}} for braces)"
                                 ) from None
            part: list[tuple[str, str | None]] = []
            for literal, field, spec_, conversion in pieces:
                if field is not None and field not in FIELDS:
                    known = ", ".join("{" + f + "}" for f in FIELDS)
                    raise UsageError(f"--layout {text!r}: unknown field {{{field}}}"
                                     f" (fields: {known})")
                if spec_ or conversion:
                    raise UsageError(f"--layout {text!r}: fields take no format"
                                     f" ({{{field}}} only)")
                part.append((literal, field))
            if all(f is None for _, f in part) and not sanitize_component(
                    "".join(lit for lit, _ in part)):
                raise UsageError(f"--layout {text!r}: the path part {raw!r} is not a name")
            parts.append(tuple(part))
        return cls(spec=text, parts=tuple(parts), folders=folders,
                   named_dated=dated if text in NAMED else None)

    def last_part_cap(self, extension: str) -> int:
        """The byte cap of a place's last part (a note's name leaves room for ``.ext``)."""
        if self.folders:
            return MAX_NAME_BYTES
        return MAX_NAME_BYTES - max(EXTENSION_ROOM, len(extension.encode()) + 1)

    def base_place(self, title: str | None, provider: str | None, created_at: int | None,
                   conversation_id: str, tz: tzinfo, extension: str,
                   reserved: frozenset[str] = frozenset()) -> str:
        """The place a conversation gets when no other one shares it.

        ``reserved``: keys (:func:`zexport.core.naming.name_key`) of top-level names a format
        writes itself; a first-level folder that would take one gets a ``_``.
        """
        if self.named_dated is not None:
            name = base_name(title or "", created_at, tz, self.named_dated)
            return name if self.folders else truncate_utf8(
                name, self.last_part_cap(extension)).rstrip(". ")
        values = _Values(title, provider, created_at, conversation_id, tz)
        last = len(self.parts) - 1
        out: list[str] = []
        for i, part in enumerate(self.parts):
            cap = self.last_part_cap(extension) if i == last else MAX_NAME_BYTES
            name = _component(part, values, cap)
            if i == 0 and i != last and name_key(name) in reserved:
                name = truncate_utf8(name, MAX_NAME_BYTES - 1) + "_"
            out.append(name)
        return "/".join(out)

    def reserved_places(self, reserved: tuple[str, ...], extension: str) -> list[str]:
        """The places no conversation may take because the format writes those names
        itself (the HTML index): for a one-part layout, the folder or the note that
        would be that file."""
        if len(self.parts) != 1:
            return []
        if self.folders:
            return list(reserved)
        ext = f".{extension}"
        return [name[:-len(ext)] for name in reserved
                if extension and name_key(name).endswith(name_key(ext))]

    def files(self, place: str, extension: str) -> Files:
        """Where the files of the conversation at ``place`` go."""
        if self.folders:
            return Files(f"{place}/{CONVERSATION_STEM}.{extension}" if extension else place,
                         place, f"{place}/{ATTACHMENTS_DIR}", ATTACHMENTS_DIR)
        head, _, stem = place.rpartition("/")
        own = f"{ATTACHMENTS_DIR}/{stem}"
        own_dir = f"{head}/{own}" if head else own
        return Files(f"{place}.{extension}" if extension else place, own_dir, own_dir, own)

    def relocate(self, path: str, old: str, new: str, extension: str) -> str:
        """Where ``path`` (a file of the conversation at place ``old``, relative to the
        output folder) is once the conversation moved to ``new``; other paths unchanged.
        What the manifest's per-file records follow when files move."""
        if self.folders or not extension:
            return new + path[len(old):] if path.startswith(old + "/") else path
        before, after = self.files(old, extension), self.files(new, extension)
        if path == before.main:
            return after.main
        if path.startswith(before.own_dir + "/"):
            return after.own_dir + path[len(before.own_dir):]
        return path


class _Values:
    """The fields of one conversation, each computed once when first asked for."""

    def __init__(self, title: str | None, provider: str | None, created_at: int | None,
                 conversation_id: str, tz: tzinfo) -> None:
        self.title = title or ""
        self.provider = provider or ""
        self.created_at = created_at
        self.id = conversation_id
        self.tz = tz
        self._day: datetime | None | bool = False

    def _when(self) -> datetime | None:
        if self._day is False:
            self._day = None
            if date_prefix(self.created_at, self.tz):  # a time that can be shown
                assert self.created_at is not None
                self._day = datetime.fromtimestamp(self.created_at, self.tz)
        return self._day if isinstance(self._day, datetime) else None

    def get(self, field: str) -> str:
        if field == "title":
            return _sanitized_title(self.title, True)  # device names: checked per part
        if field == "date":
            return date_prefix(self.created_at, self.tz).strip()
        if field in ("year", "month", "day"):
            day = self._when()
            if day is None:
                return ""
            return f"{day.year:04d}" if field == "year" else f"{getattr(day, field):02d}"
        if field == "provider":
            return sanitize_component(self.provider) or "unknown"
        if field == "id":
            return sanitize_component(self.id) or "x"
        return sanitize_component(self.id[:8]) or "x"  # id8


def _component(part: tuple[tuple[str, str | None], ...], values: _Values, cap: int) -> str:
    """One path part: literals and sanitized fields, joined, then made a safe name.

    For ``{date} {title}`` this gives exactly the app-compatible names of
    :func:`zexport.core.naming.base_name` (the date, a space, the sanitized title, or
    the title alone when there is no date).
    """
    pieces: list[str] = []
    for literal, field in part:
        if literal:
            pieces.append(_safe_literal(literal))
        if field is not None:
            pieces.append(values.get(field))
    text = _SPACE_RUNS.sub(" ", "".join(pieces)).strip().lstrip(".").strip()
    text = truncate_utf8(text, cap).rstrip(". ")
    stem = text.partition(".")[0]
    if stem.strip().casefold() in _DEVICE_NAMES:
        text = truncate_utf8(f"{stem}_{text[len(stem):]}", cap).rstrip(". ")
    return text or EMPTY_PART


def _safe_literal(literal: str) -> str:
    """Literal text of a template, with what no file name may hold replaced (its
    spaces kept: they separate fields)."""
    lead = literal[:len(literal) - len(literal.lstrip())]
    trail = literal[len(literal.rstrip()):] if literal.strip() else ""
    core = sanitize_component(literal) if literal.strip() else ""
    return lead + core + trail if core else (lead or trail)
