"""``--tz``: which zone times are written in (ISO 8601, always with the offset)."""

from __future__ import annotations

import os
import time
from datetime import datetime, timedelta, timezone, tzinfo
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from .errors import UsageError

_EPOCH = datetime(1970, 1, 1)
LOCALTIME_FILE = "/etc/localtime"


class LocalZone(tzinfo):
    """The machine's zone as the C library sees it, daylight saving included.

    ``time.localtime`` knows the zone's rules even when no IANA name for it
    is available to ``zoneinfo``. It is the slow fallback (a ``mktime`` and a
    ``localtime`` call per timestamp, about a quarter of a worker's time on
    the 10k benchmark); :func:`local_zone` prefers a compiled ``ZoneInfo``
    of the same rules.
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


def local_zone() -> tzinfo:
    """The machine's zone, as a ``ZoneInfo`` when its rules can be found.

    The C library takes ``TZ`` first (an IANA name, optionally after ``:``),
    else ``/etc/localtime`` (a TZif file on Linux and macOS). Both are read
    here into a ``ZoneInfo``, whose conversions run in C. Its ``key`` (the
    zone's name, or ``local:`` and the file the rules came from) keeps the
    resume fingerprint stable between runs and changes with the zone. A
    ``TZ`` that is a POSIX rule string (``EST5EDT,M3.2.0,M11.1.0``) or a
    machine without either falls back to :class:`LocalZone`.
    """
    name = os.environ.get("TZ")
    if name is not None:
        name = name[1:] if name.startswith(":") else name
        if not name:
            return LocalZone()
        try:
            if os.path.isabs(name):
                with open(name, "rb") as fh:
                    return ZoneInfo.from_file(fh, key=f"local:{name}")
            return ZoneInfo(name)  # same rules as --tz NAME, so the same key
        except (ZoneInfoNotFoundError, ValueError, OSError):
            return LocalZone()
    try:
        with open(LOCALTIME_FILE, "rb") as fh:
            return ZoneInfo.from_file(fh, key=f"local:{os.path.realpath(LOCALTIME_FILE)}")
    except (OSError, ValueError):
        return LocalZone()


def resolve_tz(name: str) -> tzinfo:
    """``UTC``, ``local`` or an IANA zone name such as ``Europe/Paris``."""
    if name.upper() in ("UTC", "Z"):
        return timezone.utc
    if name == "local":
        return local_zone()
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise UsageError(f"unknown time zone {name!r} (use UTC, local or an IANA name)") from None
