"""``--tz local``: the fast ZoneInfo path gives what the C library gives."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from datetime import datetime
from zoneinfo import ZoneInfo

import pytest

from zexport.core.timezones import LocalZone, iso_formatter, local_zone, resolve_tz
from zexport.run.manifest import tz_identity

# Around DST changes of several kinds: New York (1 h), Lord Howe (30 min),
# Kolkata (+5:30, none), Paris through an absolute TZif path, the 1970s and 2040s.
ZONES = ["America/New_York", "Australia/Lord_Howe", "Asia/Kolkata", ":Europe/Paris",
         "/usr/share/zoneinfo/America/Sao_Paulo"]


@pytest.fixture
def tz_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[pytest.MonkeyPatch]:
    yield monkeypatch
    monkeypatch.undo()
    time.tzset()


def _times() -> list[int]:
    steps = list(range(-1_500_000_000, 2_400_000_000, 5_555_555))
    return [t + d for t in steps for d in (0, 1800, 3600)]


@pytest.mark.parametrize("name", ZONES)
def test_local_zone_matches_the_c_library(tz_env: pytest.MonkeyPatch, name: str) -> None:
    if name.startswith("/") and not os.path.exists(name):
        pytest.skip("no system zoneinfo")
    tz_env.setenv("TZ", name)
    time.tzset()
    fast = local_zone()
    assert isinstance(fast, ZoneInfo)  # the compiled path, not the mktime fallback
    reference = LocalZone()
    for ts in _times():
        assert (datetime.fromtimestamp(ts, fast).isoformat()
                == datetime.fromtimestamp(ts, reference).isoformat()), (name, ts)


def test_posix_rule_strings_fall_back_to_the_c_library(tz_env: pytest.MonkeyPatch) -> None:
    tz_env.setenv("TZ", "ABC+3")
    time.tzset()
    zone = resolve_tz("local")
    assert isinstance(zone, LocalZone)
    assert datetime.fromtimestamp(0, zone).isoformat() == "1969-12-31T21:00:00-03:00"


def test_local_identity_follows_the_zone(tz_env: pytest.MonkeyPatch) -> None:
    tz_env.setenv("TZ", "America/New_York")
    time.tzset()
    first = tz_identity(resolve_tz("local"))
    assert first == tz_identity(resolve_tz("local"))  # stable between runs
    tz_env.setenv("TZ", "Asia/Kolkata")
    time.tzset()
    assert tz_identity(resolve_tz("local")) != first  # a new zone re-renders


@pytest.mark.parametrize("zone", ["UTC", "Europe/Paris", "Asia/Kolkata", "Australia/Lord_Howe",
                                  "America/St_Johns", "Africa/Monrovia", "Pacific/Chatham"])
def test_iso_formatter_equals_isoformat(zone: str) -> None:
    """The cached formatter gives exactly ``fromtimestamp(ts, tz).isoformat()``:
    across DST changes, offsets with seconds (Monrovia's -0:44:30 until 1972),
    the ends of datetime's range, and values that are no time at all."""
    import random

    rng = random.Random(zone)
    tz = resolve_tz(zone)
    iso = iso_formatter(tz)
    samples = [rng.randint(-3_000_000_000, 4_000_000_000) for _ in range(20_000)]
    samples += [rng.randint(1_600_000_000, 1_610_000_000) for _ in range(20_000)]
    samples += [-62135596800 + d for d in range(-7200, 7200, 97)]  # year 1 and before
    samples += [253402300799 + d for d in range(-90000, 7200, 97)]  # year 9999 and after
    for ts in samples:
        try:
            expected: str | None = datetime.fromtimestamp(ts, tz).isoformat()
        except (OverflowError, OSError, ValueError):
            expected = None
        assert iso(ts) == expected, (zone, ts)
    assert iso(None) is None
    assert iso(10**30) is None
