"""Grok's timestamps as Unix seconds, in every encoding one export mixes.

Conversations carry ISO 8601 strings; responses carry MongoDB Extended JSON
dates, canonical (``{"$date": {"$numberLong": "<ms>"}}``) or relaxed
(``{"$date": "<ISO>"}``, ``{"$date": <ms>}``).
"""

from __future__ import annotations

import re
from datetime import datetime, timezone
from typing import Any

# Python 3.10's fromisoformat takes 3 or 6 fraction digits only, and no "Z".
_FRACTION = re.compile(r"(\.\d+)")
_MS_FROM = 100_000_000_000  # a bare number this large is milliseconds (after 1973)


def unix_seconds(value: Any) -> int | None:
    """The time ``value`` names, in whole seconds; None if it names none."""
    if isinstance(value, dict):
        inner = value.get("$date")
        if isinstance(inner, dict):
            inner = inner.get("$numberLong")
            return _millis(inner)
        if isinstance(inner, (int, float)) and not isinstance(inner, bool):
            return int(inner) // 1000
        return _iso(inner)
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return int(value) // 1000 if value >= _MS_FROM else int(value)
    return _iso(value)


def _millis(value: Any) -> int | None:
    try:
        return int(str(value)) // 1000
    except ValueError:
        return None


def _iso(value: Any) -> int | None:
    if not isinstance(value, str) or not value:
        return None
    text = value.strip()
    if text.endswith(("Z", "z")):
        text = text[:-1] + "+00:00"
    text = _FRACTION.sub(lambda m: (m.group(1) + "000000")[:7], text, count=1)
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    return int(when.timestamp())
