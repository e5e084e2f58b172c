"""Output names: safe on Linux, macOS and Windows, unique, and decided once.

The controller names every conversation (:class:`zexport.run.plan.Plan`) before any
worker starts, in a fixed order, so a conversation's folder never depends on
worker count or scheduling (BRIEF §4). Names keep Unicode (NFC), are capped at
255 bytes on whole characters, and equal titles get a short, stable suffix
from the conversation id instead of overwriting each other.
"""

from __future__ import annotations

import functools
import re
import unicodedata
from collections.abc import Iterable
from datetime import datetime, tzinfo
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    import regex

MAX_NAME_BYTES = 255
FALLBACK_TITLE = "Untitled"

# Forbidden on Windows (and '/' everywhere), plus C0/C1 controls and DEL.
_FORBIDDEN = re.compile(r'[<>:"/\\|?*\x00-\x1f\x7f-\x9f]')
# Bidirectional overrides and isolates: they make a name display as another one.
_BIDI = re.compile("[\u200e\u200f\u202a-\u202e\u2066-\u2069]")
_SPACES = re.compile(r"\s+")
_WINDOWS_RESERVED = frozenset(
    ["con", "prn", "aux", "nul"]
    + [f"{p}{d}" for p in ("com", "lpt") for d in "123456789\u00b9\u00b2\u00b3"]
)


@functools.cache
def _graphemes() -> tuple[regex.Pattern[str], regex.Pattern[str]]:
    """The grapheme-cluster pattern and the trailing-marks one, made on first need:
    ``regex`` costs every process that imports this module ~7 ms, and most names are
    short or ASCII and never need it."""
    import regex

    return regex.compile(r"\X"), regex.compile(r"[\p{M}\u200d]+$")


def truncate_utf8(text: str, max_bytes: int) -> str:
    """Cut ``text`` to at most ``max_bytes`` UTF-8 bytes, on a whole user-perceived
    character (an extended grapheme cluster: never inside an emoji sequence, a flag,
    an accent or an Indic syllable's vowel sign)."""
    if len(text.encode("utf-8")) <= max_bytes:
        return text
    if text.isascii() and "\r\n" not in text:  # each ASCII character is a cluster alone
        return text[:max_bytes]
    cluster_pattern, trailing_marks = _graphemes()
    end = used = 0
    for cluster in cluster_pattern.finditer(text):
        used += len(cluster.group().encode("utf-8"))
        if used > max_bytes:
            break
        end = cluster.end()
    if end == 0:  # one "character" longer than the cap (Zalgo text): its base alone
        cut = text.encode("utf-8")[:max_bytes].decode("utf-8", errors="ignore")
        return trailing_marks.sub("", cut)
    return text[:end]


def sanitize_component(text: str, max_bytes: int = MAX_NAME_BYTES, *,
                       prefixed: bool = False) -> str:
    """Turn arbitrary text into one path component valid on every common OS.

    Forbidden characters become ``_``; controls and bidi overrides are
    removed; whitespace runs collapse; leading dots (hidden files, ``..``)
    and trailing dots/spaces (invalid on Windows) go; Windows device names
    (``CON``, ``nul.txt``, ``COM¹``) get a ``_`` after the stem, unless
    ``prefixed``: the text will follow a date prefix, and "2024-01-01 CON" is
    no device name. Returns "" when nothing is left; callers choose the fallback.
    """
    name = unicodedata.normalize("NFC", text)
    name = _BIDI.sub("", name)
    name = _FORBIDDEN.sub("_", name)
    name = _SPACES.sub(" ", name).strip().lstrip(".").strip()
    name = truncate_utf8(name, max_bytes).rstrip(". ")
    stem, dot, ext = name.partition(".")
    if not prefixed and stem.strip().casefold() in _WINDOWS_RESERVED:
        name = truncate_utf8(f"{stem}_{dot}{ext}", max_bytes).rstrip(". ")
    return name


def date_prefix(created_at: int | None, tz: tzinfo) -> str:
    """``YYYY-MM-DD `` in ``tz`` for a Unix time, or "" when there is none.

    Called for every conversation while planning, which is on the path to
    the first file: one ``datetime`` and an f-string (1 us), not the cached
    ISO formatter, whose per-hour cache mostly misses here (conversations
    are hours apart; it was 4x slower on 10,000). Years before 1000, which
    ``strftime`` does not pad, keep the ``strftime`` spelling so names never
    change.
    """
    if created_at is None:
        return ""
    try:
        day = datetime.fromtimestamp(created_at, tz)
        if day.year >= 1000:
            return f"{day.year}-{day.month:02d}-{day.day:02d} "
        return day.strftime("%Y-%m-%d ")
    except (OverflowError, OSError, ValueError, TypeError):
        return ""


def name_key(name: str) -> str:
    """The key two names collide on: case-insensitive and normalisation-insensitive
    file systems (macOS, Windows) treat ``Café``/``Café`` and ``A``/``a`` alike."""
    return unicodedata.normalize("NFC", name).casefold()


def base_name(title: str, created_at: int | None, tz: tzinfo, dated: bool = True) -> str:
    """The folder name a conversation gets when no other one shares it.

    ``dated``: prefix the creation day (``2024-01-01 Title``), as the app's
    "Prefix with date" export setting does; a conversation without a date gets none.
    """
    prefix = date_prefix(created_at, tz) if dated else ""
    title_part = _sanitized_title(title, bool(prefix))
    if not prefix:
        return title_part
    # The prefix is safe and the title already sanitized: only the cap remains.
    return truncate_utf8(prefix + title_part, MAX_NAME_BYTES).rstrip(". ")


@functools.lru_cache(maxsize=4096)
def _sanitized_title(title: str, prefixed: bool) -> str:
    """Titles repeat a lot ("New chat"): sanitize each distinct one once."""
    return sanitize_component(title, prefixed=prefixed) or FALLBACK_TITLE


class NameSet(Protocol):
    """The folder-name keys already in use."""

    def claim(self, key: str) -> bool:
        """Record ``key`` as used if it is free; whether it was."""
        ...


def suffixed_name(base: str, conversation_id: str, used: NameSet,
                  max_bytes: int = MAX_NAME_BYTES) -> str:
    """``base (id8)``, lengthening the id part until the name is free; records it in ``used``.

    ``max_bytes`` caps the whole name (a note's name leaves room for its extension)."""
    token = sanitize_component(conversation_id, 64) or "x"
    for length in (8, 12, 16, len(token)):
        suffix = f" ({token[:length]})"
        name = truncate_utf8(base, max_bytes - len(suffix.encode())).rstrip(". ") + suffix
        if used.claim(name_key(name)):
            return name
    n = 2
    while True:
        suffix = f" ({token} {n})"
        name = truncate_utf8(base, max_bytes - len(suffix.encode())).rstrip(". ") + suffix
        if used.claim(name_key(name)):
            return name
        n += 1


def unique_names(names: Iterable[str]) -> list[str]:
    """Make a list of file names unique within one folder (``a.png``, ``a (2).png``)."""
    used: set[str] = set()
    out: list[str] = []
    for name in names:
        stem, dot, ext = name.rpartition(".") if "." in name[1:] else (name, "", "")
        candidate, n = name, 2
        while name_key(candidate) in used:
            tail = f" ({n}){dot}{ext}"
            candidate = truncate_utf8(stem, MAX_NAME_BYTES - len(tail.encode())) + tail
            n += 1
        used.add(name_key(candidate))
        out.append(candidate)
    return out
