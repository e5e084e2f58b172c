"""What every file system zexport writes for accepts as one path component (a test helper)."""

from __future__ import annotations

import unicodedata

WINDOWS_FORBIDDEN = set('<>:"/\\|?*')


def valid_everywhere(name: str) -> bool:
    """The rules Linux, macOS and Windows together impose on one path component."""
    return (
        bool(name)
        and len(name.encode()) <= 255
        and not any(c in WINDOWS_FORBIDDEN or ord(c) < 32 for c in name)
        and not name.endswith((".", " "))
        and name not in (".", "..")
        and name.split(".")[0].strip().casefold() not in {"con", "prn", "aux", "nul"}
        and unicodedata.is_normalized("NFC", name)
    )
