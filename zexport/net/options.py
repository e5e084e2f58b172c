"""The download options of ``zexport run``, apart from the downloader itself.

Kept in a module of their own so the CLI and the controller can hold them
without importing httpx (about 0.2 s): a run with ``--no-downloads`` or
``--no-attachments``, and ``zexport status``, never pay for it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

MB = 1024 * 1024


def human_size(n: int) -> str:
    """``100 MB``-style size for messages (powers of 1024, as ``--max-attachment-size``)."""
    for unit, scale in (("GB", 1 << 30), ("MB", MB), ("KB", 1024)):
        if n >= scale:
            value = n / scale
            return f"{value:.0f} {unit}" if value == int(value) else f"{value:.1f} {unit}"
    return f"{n} bytes"


@dataclass
class DownloadOptions:
    """The download-related options of ``zexport run`` (none of them secret)."""

    auth_file: str | None = None
    cache_dir: str | None = None
    concurrency: int = 16
    per_host: int | None = None
    max_bytes: int = 100 * MB
    deadline: float = 120.0
    update_archive: bool = False
    enabled: bool = True  # False: copy what is on disk, download nothing (--no-downloads)


    def public(self) -> dict[str, Any]:
        """For the report: what was asked, never what is in the auth file."""
        return {"auth_file": self.auth_file, "cache_dir": self.cache_dir,
                "download_concurrency": self.concurrency,
                "download_per_host": self.per_host or self.concurrency,
                "max_attachment_size": self.max_bytes, "download_timeout": self.deadline,
                "update_archive": self.update_archive, "downloads": self.enabled}
