"""``--tz``: which zone times are written in (ISO 8601, always with the offset)."""

from __future__ import annotations

import time
from datetime import datetime, timedelta, timezone, tzinfo
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from .errors import UsageError

_EPOCH = datetime(1970, 1, 1)


class LocalZone(tzinfo):
    """The machine's zone as the C library sees it, daylight saving included.

    ``time.localtime`` knows the zone's rules even when no IANA name for it
    is available to ``zoneinfo``.
    """

    def utcoffset(self, dt: datetime | None) -> timedelta:
        if dt is None:
            return timedelta(seconds=time.localtime().tm_gmtoff)
        ts = time.mktime(dt.replace(tzinfo=None).timetuple())
        return timedelta(seconds=time.localtime(ts).tm_gmtoff)

    def dst(self, dt: datetime | None) -> timedelta:
        return timedelta(0)

    def tzname(self, dt: datetime | None) -> str:
        return "local"

    def fromutc(self, dt: datetime) -> datetime:
        ts = (dt.replace(tzinfo=None) - _EPOCH).total_seconds()
        return dt + timedelta(seconds=time.localtime(ts).tm_gmtoff)


def resolve_tz(name: str) -> tzinfo:
    """``UTC``, ``local`` or an IANA zone name such as ``Europe/Paris``."""
    if name.upper() in ("UTC", "Z"):
        return timezone.utc
    if name == "local":
        return LocalZone()
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise UsageError(f"unknown time zone {name!r} (use UTC, local or an IANA name)") from None
