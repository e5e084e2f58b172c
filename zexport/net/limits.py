"""What a download may take and how it fails: importable without httpx.

httpx (with httpcore, anyio and an SSL context per client) costs the
controller about 0.2 s of CPU, in its event loop. A run whose missing
attachments all belong to providers without credentials, or to hosts that
can never resolve, downloads nothing, so it must not pay for it: the
attachment service, the options and the provider session use what is here,
and :mod:`zexport.net.downloader` is imported only for a real
request (see ``AttachmentService.downloader``).
"""

from __future__ import annotations

from dataclasses import dataclass

from zexport.net.auth import host_label, origin_of
from zexport.net.options import MB, DownloadOptions


@dataclass(frozen=True)
class Limits:
    """How hard, how long and how much to download."""

    concurrency: int = 8
    per_host: int = 8
    max_bytes: int = 100 * MB
    deadline: float = 120.0          # total active seconds per file, over every attempt
    idle_timeout: float = 30.0       # httpx read/connect timeout (network silence)
    attempts: int = 4                # tries per file for 429 / 5xx / transport errors
    backoff: float = 0.5             # first backoff, doubled per retry
    max_backoff: float = 10.0
    max_retry_after: float = 60.0    # a longer Retry-After fails the file instead
    max_redirects: int = 5
    max_json_bytes: int = 1 * MB

    @classmethod
    def from_options(cls, options: DownloadOptions) -> Limits:
        """The downloader limits ``zexport run``'s download options imply."""
        return cls(concurrency=options.concurrency,
                   per_host=options.per_host or options.concurrency,
                   max_bytes=options.max_bytes, deadline=options.deadline)


class DownloadError(Exception):
    """A download failed; ``reason`` is safe to show (no URL path, no secret)."""

    def __init__(self, reason: str, retryable: bool = False,
                 retry_after: float | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.retryable = retryable
        self.retry_after = retry_after


def check_resolvable(url: str) -> None:
    """Raise :class:`DownloadError` for a host under ``.invalid``.

    RFC 6761: such a name never resolves. Saying so without asking DNS keeps
    runs on the sample archive (whose unreachable files live there) fast and
    identical offline (``EAI_AGAIN``) and online.
    """
    origin = origin_of(url)
    if origin is not None and origin[1].rstrip(".").rsplit(".", 1)[-1] == "invalid":
        raise DownloadError(f"cannot resolve host {host_label(url)}")
