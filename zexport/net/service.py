"""The controller's attachment service: answers workers' ``fetch`` requests.

For each request it: checks the cache (keyed by provider and file id), joins
an identical download already in flight (two conversations may share a
file), or downloads through the conversation's provider. Results, failures
included, are remembered for the run, so a file is asked for at most once.
Every answer is a path inside the cache or a reason that is safe to show.

With ``--update-archive`` the new ``local_path`` of each attachment that got
a file is written back to the archive, as the app does, in short ``BEGIN
IMMEDIATE`` transactions with a busy timeout, only where the row still holds
the path the worker saw (so a path the app stored meanwhile is never
overwritten, and a failed download never erases anything). Journal mode and
every other column are left alone. Without the option the archive is never
opened for writing.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import apsw

from zexport.net.auth import Credentials
from zexport.net.cache import AttachmentCache, cache_key
from zexport.net.limits import DownloadError, Limits
from zexport.net.session import ScopedSession
from zexport.providers.base import AttachmentProvider, AttachmentRef, ProviderError

if TYPE_CHECKING:
    from zexport.net.downloader import Downloader

log = logging.getLogger("zexport.attachments")

ARCHIVE_BUSY_MS = 10_000
ARCHIVE_FLUSH_EVERY = 200


@dataclass
class FetchResult:
    """The answer to one ``fetch``: a cached file, or a reason."""

    path: str | None = None
    name: str | None = None
    error: str | None = None

    def wire(self) -> dict[str, Any]:
        """Fields of the ``fetched`` frame (see docs/attachments.md)."""
        if self.path is not None:
            return {"path": self.path, "name": self.name, "error": None}
        return {"path": None, "error": self.error or "download failed"}


@dataclass
class Stats:
    """What the service did this run (shown in progress and in the report)."""

    requested: int = 0
    downloaded: int = 0
    cached: int = 0
    failed: int = 0
    bytes: int = 0
    archive_updates: int = 0
    archive_errors: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """The report's ``downloads`` section."""
        return dataclasses.asdict(self)


def lacks_credentials(provider: AttachmentProvider, creds: Credentials | None) -> bool:
    """Whether ``provider`` cannot download at all with ``creds``."""
    return provider.needs_credentials and (creds is None or not creds.has_secrets)


def no_credentials_reason(provider_name: str) -> str:
    """The failure reason of every download refused for want of credentials."""
    return (f"no credentials for {provider_name} (add a [{provider_name}] table to the "
            "--auth file)")


def refused_providers(providers: dict[str, AttachmentProvider],
                      credentials: dict[str, Credentials],
                      cache: AttachmentCache) -> dict[str, str]:
    """``{provider: reason}`` for providers whose every request would be refused: no
    credentials, and nothing of theirs in the cache.

    Workers get this in ``config`` and answer those requests themselves: on an
    archive without an auth file, nearly every missing attachment is one, and a
    round trip to the controller each cost ~10% of a default run at 10,000
    conversations. A provider with anything cached still goes through the
    controller, which may find the file.
    """
    return {name: no_credentials_reason(name) for name, provider in sorted(providers.items())
            if lacks_credentials(provider, credentials.get(name))
            and not cache.holds_any(name)}


class AttachmentService:
    """Serves ``fetch`` requests in the controller's event loop."""

    def __init__(self, providers: dict[str, AttachmentProvider],
                 credentials: dict[str, Credentials], cache: AttachmentCache,
                 limits: Limits, archive: str | None = None,
                 on_change: Callable[[Stats], None] | None = None) -> None:
        self.providers = providers
        self.cache = cache
        self.limits = limits
        self.archive = archive
        self.on_change = on_change or (lambda stats: None)
        self.stats = Stats()
        self.credentials: dict[str, Credentials] = {}
        for name, creds in credentials.items():
            provider = providers.get(name)
            base = creds.base_url or (provider.default_base_url if provider else None)
            self.credentials[name] = dataclasses.replace(creds, base_url=base)
        self._results: dict[tuple[str, str], asyncio.Future[FetchResult]] = {}
        self._downloader: Downloader | None = None
        self._updates: list[tuple[str, str, str | None]] = []
        self._flushing: asyncio.Task[None] | None = None

    @property
    def downloader(self) -> Downloader:
        """The shared downloader, created on first use inside the running loop.

        Its module (and httpx with it) is imported only then: see
        :mod:`zexport.net.limits`.
        """
        if self._downloader is None:
            from zexport.net.downloader import Downloader

            self._downloader = Downloader(self.limits, self.cache.run_staging(),
                                          on_bytes=self._count_bytes)
        return self._downloader

    def _count_bytes(self, n: int) -> None:
        self.stats.bytes += n

    def fetch_now(self, provider_name: str, data: dict[str, Any]) -> FetchResult | None:
        """The answer to a request when no waiting is needed, else None: the download
        has then started, and :meth:`fetch` with the same request awaits it.

        A cache hit, a result already known this run, a provider that is not
        installed or has no credentials: most requests on an archive full of
        missing files. Answering them here spares a task and its scheduling
        per request in the controller's loop.
        """
        ref = AttachmentRef.from_wire(provider_name, data)
        fut = self._future(ref)
        if isinstance(fut, FetchResult):
            return fut
        if not fut.done() or fut.cancelled():
            return None
        result = fut.result()
        self._note(ref, result)
        return result

    async def fetch(self, provider_name: str, data: dict[str, Any]) -> FetchResult:
        """Answer one request (never raises, except on cancellation)."""
        ref = AttachmentRef.from_wire(provider_name, data)
        fut = self._future(ref)
        if isinstance(fut, FetchResult):
            return fut
        result = await asyncio.shield(fut)
        self._note(ref, result)
        return result

    def _future(self, ref: AttachmentRef) -> asyncio.Future[FetchResult] | FetchResult:
        """The run's one future for this file: done at once when no download is needed,
        else the download (started here). A request naming no file gets its answer."""
        key = cache_key(ref.file_id, ref.original_url)
        if key is None:
            return FetchResult(error="no file_id or original_url to download it from")
        fut = self._results.get((ref.provider, key))
        if fut is None:
            result = self._decide_now(ref, key)
            if result is None:
                fut = asyncio.ensure_future(self._obtain(ref, key))
            else:
                fut = asyncio.get_running_loop().create_future()
                fut.set_result(result)
            self._results[(ref.provider, key)] = fut
        return fut

    def _note(self, ref: AttachmentRef, result: FetchResult) -> None:
        """Queue the archive update a result calls for (``--update-archive``)."""
        if result.path is not None and self.archive and ref.id:
            self._updates.append((ref.id, result.path, ref.local_path))
            if len(self._updates) >= ARCHIVE_FLUSH_EVERY and self._flushing is None:
                self._flushing = asyncio.ensure_future(self._flush_soon())

    def _decide_now(self, ref: AttachmentRef, key: str) -> FetchResult | None:
        """Count a new request; answer it if that needs no download (cache hit or
        refusal), else return None and leave it to :meth:`_obtain`."""
        self.stats.requested += 1
        cached = self.cache.lookup(ref.provider, key)
        if cached is not None:
            self.stats.cached += 1
            self.on_change(self.stats)
            return FetchResult(path=cached, name=os.path.basename(cached))
        refusal = self._refusal(ref)
        if refusal is not None:
            self.stats.failed += 1
            self.on_change(self.stats)
        return refusal

    def _refusal(self, ref: AttachmentRef) -> FetchResult | None:
        """Why this request cannot be downloaded at all, if it cannot."""
        provider = self.providers.get(ref.provider)
        if provider is None:
            known = ", ".join(sorted(self.providers)) or "none"
            return FetchResult(error=f"no attachment provider for {ref.provider!r} "
                                     f"(installed: {known})")
        if lacks_credentials(provider, self.credentials.get(ref.provider)):
            return FetchResult(error=no_credentials_reason(ref.provider))
        return None

    async def _obtain(self, ref: AttachmentRef, key: str) -> FetchResult:
        """Download (after :meth:`_decide_now` found no quicker answer); count it."""
        try:
            result = await self._download(ref, key)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # a provider plugin may raise anything
            log.warning("attachment %s: provider %s failed: %s", ref.id, ref.provider,
                        type(exc).__name__)
            result = FetchResult(error=f"provider {ref.provider!r} failed: "
                                       f"{type(exc).__name__}")
        if result.path is None:
            self.stats.failed += 1
        else:
            self.stats.downloaded += 1
        self.on_change(self.stats)
        return result

    async def _download(self, ref: AttachmentRef, key: str) -> FetchResult:
        provider = self.providers[ref.provider]  # _refusal checked it is there
        creds = self.credentials.get(ref.provider)
        base = creds.base_url if creds else provider.default_base_url
        session = ScopedSession(lambda: self.downloader, creds, base)
        try:
            got = await provider.download(ref, session)
        except (DownloadError, ProviderError) as exc:
            reason = exc.reason if isinstance(exc, DownloadError) else str(exc)
            return FetchResult(error=reason)
        try:
            path = self.cache.store(ref.provider, key, got.path, got.name)
        except OSError as exc:
            try:
                os.unlink(got.path)
            except OSError:
                pass
            return FetchResult(error=f"cannot store download in cache: {exc.strerror}")
        return FetchResult(path=path, name=os.path.basename(path))

    # -- archive update -----------------------------------------------------------
    async def _flush_soon(self) -> None:
        try:
            await self.flush_archive()
        finally:
            self._flushing = None

    async def flush_archive(self) -> None:
        """Write pending ``local_path`` updates (in a thread: a busy archive may wait)."""
        if not self.archive or not self._updates:
            return
        pending, self._updates = self._updates, []
        try:
            done = await asyncio.to_thread(_write_local_paths, self.archive, pending)
        except apsw.Error as exc:
            self.stats.archive_errors.append(f"archive update failed: {exc}")
            return
        self.stats.archive_updates += done

    async def close(self) -> None:
        """Abort downloads in flight, flush archive updates, close the client."""
        for fut in self._results.values():
            if not fut.done():
                fut.cancel()
        await asyncio.gather(*self._results.values(), return_exceptions=True)
        if self._flushing is not None:
            await asyncio.gather(self._flushing, return_exceptions=True)
        await self.flush_archive()
        if self._downloader is not None:
            await self._downloader.close()
            staging = self._downloader.staging_dir
            self._downloader = None
            _remove_tree(staging)


def _write_local_paths(archive: str, updates: list[tuple[str, str, str | None]]) -> int:
    """One short write transaction; returns how many rows changed."""
    conn = apsw.Connection(archive, flags=apsw.SQLITE_OPEN_READWRITE)
    try:
        conn.setbusytimeout(ARCHIVE_BUSY_MS)
        before = conn.total_changes()
        conn.execute("BEGIN IMMEDIATE")
        try:
            for att_id, path, old in updates:
                conn.execute(
                    "UPDATE attachments SET local_path = ? WHERE id = ?"
                    " AND local_path IS ? AND local_path IS NOT ?", (path, att_id, old, path))
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        return int(conn.total_changes() - before)
    finally:
        conn.close()


def _remove_tree(path: str) -> None:
    import shutil

    shutil.rmtree(path, ignore_errors=True)
