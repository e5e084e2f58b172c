"""Robust HTTP downloads for the controller: one client, bounded everything.

Why each rule (see research/reliability.md §3):

- **httpx clients in the controller's asyncio loop**, beside the ZeroMQ
  sockets; ``trust_env=False`` so proxy variables cannot redirect
  credentialed traffic; a cookie jar that accepts nothing, so a server's
  ``Set-Cookie`` is never replayed anywhere. The pool is *sharded* into
  clients of at most :data:`SHARD_SIZE` connections: httpcore 1.0's pool
  rescans every connection on every request start and finish
  (encode/httpcore#1035), which measured 1,000 downloads at concurrency 32
  slower than at 16; shards keep that scan short.
- **Concurrency**: a global semaphore, a semaphore per shard equal to its
  pool size (so never a ``PoolTimeout``), plus a per-host semaphore.
- **Redirects are followed by hand** (at most :attr:`Limits.max_redirects`):
  credentials are attached only while the request's origin equals the
  origin they were issued for, and once a redirect leaves it they are
  dropped for the rest of the chain; https → http is refused except to a
  loopback host.
- **Size cap on decoded bytes** (``iter_bytes``), so a gzip bomb or a lying
  ``Content-Length`` stops at the cap; a partial file is always deleted.
- **Total deadline per file**: httpx's timeouts are idle timeouts, which a
  server dripping one byte a second never trips.
- **Retries** on 429, 5xx and transport errors with exponential backoff,
  honouring ``Retry-After`` up to a bound; 401/403/404 (and other 4xx) fail
  at once.
- **Nothing secret in messages**: failure reasons name the host, never the
  path or query (pre-signed URLs carry secrets there); httpx's own INFO
  logging (full URLs) is raised to WARNING.
"""

from __future__ import annotations

import asyncio
import email.utils
import http.cookiejar
import logging
import os
import random
import socket
import ssl
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import httpx
import orjson

from zexport.net.auth import Credentials, host_label, is_loopback, origin_of
from zexport.net.limits import DownloadError, Limits, check_resolvable
from zexport.net.options import human_size

# DownloadError and Limits live in .limits (importable without httpx); kept here too.
__all__ = ["DownloadError", "Downloader", "Limits", "Received"]

for _name in ("httpx", "httpcore"):
    logging.getLogger(_name).setLevel(logging.WARNING)

T = TypeVar("T")
REDIRECT_CODES = frozenset({301, 302, 303, 307, 308})
FAIL_FAST = {401: "unauthorized", 403: "forbidden", 404: "not found", 410: "gone"}
CHUNK = 64 * 1024
SHARD_SIZE = 8


@dataclass
class Received:
    """A finished file download."""

    path: str
    size: int
    content_type: str | None
    content_disposition: str | None
    final_url: str


def redirect_target(current: str, location: str) -> str:
    """Resolve a ``Location`` header and check the hop is allowed (DownloadError if not)."""
    try:
        target = str(httpx.URL(current).join(location))
    except Exception:  # httpx raises several types for malformed URLs
        raise DownloadError(f"bad redirect from {host_label(current)}") from None
    new, old = origin_of(target), origin_of(current)
    if new is None:
        raise DownloadError(f"redirect from {host_label(current)} to a non-http(s) URL")
    if old is not None and old[0] == "https" and new[0] == "http" and not is_loopback(new[1]):
        raise DownloadError(
            f"refused redirect from https to plain http ({host_label(target)})")
    return target


def credentials_for(url: str, creds: Credentials | None) -> dict[str, str]:
    """The credential headers a request to ``url`` may carry: none unless same origin."""
    if creds is None or not creds.has_secrets:
        return {}
    origin = creds.origin
    if origin is None or origin_of(url) != origin:
        return {}
    if origin[0] == "http" and not is_loopback(origin[1]):
        return {}  # never send secrets in the clear to a remote host
    return creds.request_headers()


def parse_retry_after(value: str | None) -> float | None:
    """Seconds from a ``Retry-After`` header (delta-seconds or HTTP date)."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    return max(0.0, when.timestamp() - time.time())


def _dns_failure(exc: BaseException) -> bool:
    """True when a connect error is a definite 'no such host' (not worth retrying)."""
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, socket.gaierror):
            return seen.errno in (socket.EAI_NONAME, getattr(socket, "EAI_NODATA", -5))
        seen = seen.__cause__ or seen.__context__
    return False


class _RejectAll(http.cookiejar.DefaultCookiePolicy):
    """A cookie policy that stores nothing: server cookies are never replayed."""

    def set_ok(self, cookie: http.cookiejar.Cookie, request: Any) -> bool:
        return False


class Downloader:
    """Downloads into a staging folder with every limit of :class:`Limits`.

    Create it inside the running loop; ``await close()`` when done.
    """

    def __init__(self, limits: Limits, staging_dir: str,
                 transport: httpx.AsyncBaseTransport | None = None,
                 on_bytes: Callable[[int], None] | None = None) -> None:
        self.limits = limits
        self.staging_dir = staging_dir
        self.on_bytes = on_bytes
        conc = max(1, limits.concurrency)
        sizes = [SHARD_SIZE] * (conc // SHARD_SIZE) + ([conc % SHARD_SIZE] if conc % SHARD_SIZE
                                                       else [])
        self._transport = transport
        # Each shard's client is made when the shard is first used, and all of them
        # share one SSL context: loading the CA bundle costs ~30 ms of the event loop
        # per context, and a run may need one client, or none.
        self._ssl: ssl.SSLContext | None = None
        self._shards: list[tuple[asyncio.Semaphore, int]] = [
            (asyncio.Semaphore(size), size) for size in sizes]
        self._clients: dict[int, httpx.AsyncClient] = {}
        self._closed = False
        self._global = asyncio.Semaphore(conc)
        self._hosts: dict[str, asyncio.Semaphore] = {}

    def _client(self, index: int) -> httpx.AsyncClient:
        """Shard ``index``'s client, made on first use (never after :meth:`close`)."""
        client = self._clients.get(index)
        if client is None:
            if self._closed:
                raise DownloadError("the downloader was closed")
            size = self._shards[index][1]
            if self._transport is None and self._ssl is None:
                self._ssl = httpx.create_ssl_context(trust_env=False)
            client = self._clients[index] = httpx.AsyncClient(
                trust_env=False, follow_redirects=False, transport=self._transport,
                verify=self._ssl if self._ssl is not None else True,
                cookies=http.cookiejar.CookieJar(policy=_RejectAll()),
                limits=httpx.Limits(max_connections=size, max_keepalive_connections=size),
                timeout=httpx.Timeout(self.limits.idle_timeout, pool=None),
                headers={"User-Agent": "zexport (+https://github.com/mlshv/OwnYourChat)"},
            )
        return client

    async def close(self) -> None:
        """Close every pooled connection (of the clients that were made); no new ones."""
        self._closed = True
        clients, self._clients = list(self._clients.values()), {}
        for client in clients:
            await client.aclose()

    def _pick_shard(self) -> tuple[httpx.AsyncClient, asyncio.Semaphore]:
        """The shard with the most free slots (one always has one: global <= sum)."""
        index = max(range(len(self._shards)), key=lambda i: _free(self._shards[i][0]))
        return self._client(index), self._shards[index][0]

    def _host_sem(self, url: str) -> asyncio.Semaphore:
        key = host_label(url)
        sem = self._hosts.get(key)
        if sem is None:
            sem = self._hosts[key] = asyncio.Semaphore(max(1, self.limits.per_host))
        return sem

    # -- public ---------------------------------------------------------------
    async def get_json(self, url: str, creds: Credentials | None) -> Any:
        """GET a small JSON document (capped at ``max_json_bytes``)."""
        async def body(resp: httpx.Response) -> Any:
            buf = bytearray()
            async for chunk in resp.aiter_bytes(CHUNK):
                buf += chunk
                if len(buf) > self.limits.max_json_bytes:
                    raise DownloadError(f"metadata from {host_label(url)} is too large")
            try:
                return orjson.loads(bytes(buf))
            except orjson.JSONDecodeError:
                raise DownloadError(f"metadata from {host_label(url)} is not JSON") from None

        return await self._with_retries(url, creds, body)

    async def get_file(self, url: str, creds: Credentials | None) -> Received:
        """GET a file into the staging folder; the caller owns (and must move) the file."""
        async def body(resp: httpx.Response) -> Received:
            declared = resp.headers.get("content-length")
            encoded = resp.headers.get("content-encoding", "identity") != "identity"
            if declared and declared.isdigit() and not encoded and \
                    int(declared) > self.limits.max_bytes:
                raise DownloadError(self._too_large())
            os.makedirs(self.staging_dir, mode=0o700, exist_ok=True)
            fd, path = _mkstemp(self.staging_dir)
            size = 0
            try:
                with os.fdopen(fd, "wb") as fh:
                    async for chunk in resp.aiter_bytes(CHUNK):  # decoded bytes
                        size += len(chunk)
                        if size > self.limits.max_bytes:
                            raise DownloadError(self._too_large())
                        fh.write(chunk)
                        if self.on_bytes:
                            self.on_bytes(len(chunk))
            except BaseException:
                _unlink(path)
                raise
            return Received(path, size, resp.headers.get("content-type"),
                            resp.headers.get("content-disposition"), str(resp.url))

        return await self._with_retries(url, creds, body)

    def _too_large(self) -> str:
        return f"larger than the {human_size(self.limits.max_bytes)} size limit"

    # -- machinery --------------------------------------------------------------
    async def _with_retries(self, url: str, creds: Credentials | None,
                            body: Callable[[httpx.Response], Awaitable[T]]) -> T:
        """Attempts, backoff and the total deadline around :meth:`_attempt`."""
        lim = self.limits
        budget = lim.deadline
        last = "download failed"
        wait: float | None = None
        for attempt in range(1, max(1, lim.attempts) + 1):
            # Per-host first, so a busy host's queue never holds global permits;
            # the deadline clock runs only once both are held (not while queued).
            async with self._host_sem(url), self._global:
                started = time.monotonic()
                try:
                    return await asyncio.wait_for(self._attempt(url, creds, body),
                                                  max(0.001, budget))
                except asyncio.TimeoutError:
                    raise DownloadError(
                        f"took longer than the {lim.deadline:g} s download deadline "
                        f"({host_label(url)})") from None
                except DownloadError as exc:
                    if not exc.retryable:
                        raise
                    last, wait = exc.reason, exc.retry_after
                finally:
                    budget -= time.monotonic() - started
            if attempt >= lim.attempts:
                break
            if wait is not None:
                if wait > lim.max_retry_after:
                    raise DownloadError(f"{last}; server asks to retry after {wait:.0f} s, "
                                        f"more than the {lim.max_retry_after:g} s allowed")
            else:
                wait = min(lim.max_backoff, lim.backoff * 2 ** (attempt - 1))
                wait *= random.uniform(0.8, 1.2)  # spread retries out
            await asyncio.sleep(wait)
        raise DownloadError(f"{last} (gave up after {lim.attempts} attempts)")

    async def _attempt(self, url: str, creds: Credentials | None,
                       body: Callable[[httpx.Response], Awaitable[T]]) -> T:
        """One attempt: follow redirects by hand, then hand a 200 to ``body``."""
        current = url
        carry_creds = creds
        for _hop in range(self.limits.max_redirects + 1):
            if origin_of(current) is None:
                raise DownloadError("not an http(s) URL")
            check_resolvable(current)  # every hop: a redirect may point at .invalid too
            if carry_creds is not None and origin_of(current) != carry_creds.origin:
                carry_creds = None  # left the origin: never send them again in this chain
            headers = credentials_for(current, carry_creds)
            # Waiting for the host and the global permit is done (in _with_retries):
            # a free shard slot exists and nothing can take it before we do.
            client, slot = self._pick_shard()
            async with slot:
                try:
                    async with client.stream("GET", current, headers=headers) as resp:
                        status = resp.status_code
                        if status in REDIRECT_CODES:
                            location = resp.headers.get("location")
                            if not location:
                                raise DownloadError(f"HTTP {status} without Location "
                                                    f"from {host_label(current)}")
                            current = redirect_target(current, location)
                            continue
                        _check_status(resp, current)
                        return await body(resp)
                except httpx.TimeoutException:
                    raise DownloadError(f"{host_label(current)} stopped responding "
                                        f"(no data for {self.limits.idle_timeout:g} s)",
                                        retryable=True) from None
                except httpx.ConnectError as exc:
                    if _dns_failure(exc):
                        raise DownloadError(
                            f"cannot resolve host {host_label(current)}") from None
                    raise DownloadError(f"cannot connect to {host_label(current)}",
                                        retryable=True) from None
                except httpx.DecodingError:
                    raise DownloadError(
                        f"undecodable response body from {host_label(current)}") from None
                except (httpx.RemoteProtocolError, httpx.ReadError, httpx.WriteError):
                    raise DownloadError(f"connection to {host_label(current)} broke "
                                        "off mid-response", retryable=True) from None
                except httpx.HTTPError as exc:
                    raise DownloadError(f"HTTP error from {host_label(current)}: "
                                        f"{type(exc).__name__}") from None
        raise DownloadError(f"too many redirects (more than {self.limits.max_redirects})")


def _free(sem: asyncio.Semaphore) -> int:
    """Free slots of a semaphore (asyncio has no public accessor)."""
    return int(getattr(sem, "_value", 0))


def _check_status(resp: httpx.Response, url: str) -> None:
    status = resp.status_code
    if 200 <= status < 300:
        return
    host = host_label(url)
    if status in FAIL_FAST:
        raise DownloadError(f"HTTP {status} ({FAIL_FAST[status]}) from {host}")
    if status == 429 or status >= 500:
        raise DownloadError(f"HTTP {status} from {host}", retryable=True,
                            retry_after=parse_retry_after(resp.headers.get("retry-after")))
    raise DownloadError(f"HTTP {status} from {host}")


def _mkstemp(folder: str) -> tuple[int, str]:
    import tempfile

    from zexport.core.output import TEMP_PREFIX

    return tempfile.mkstemp(prefix=f"{TEMP_PREFIX}dl-", dir=folder)


def _unlink(path: str) -> None:
    try:
        os.unlink(path)
    except OSError:
        pass
