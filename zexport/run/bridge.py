"""The attachment bridge: workers' ``fetch`` frames in, the download service's answers out.

Workers never download (BRIEF §5): they ask on their control channel, one
``fetch`` or a ``fetch_many`` per batch, and the bridge asks
:class:`~zexport.net.service.AttachmentService`. Each request that must wait
(a download) runs in its own task, so a slow one never stalls the channel.
Answers ready in the same turn of the loop (cache hits, known failures: most
of them) are queued per worker and leave together in one ``fetched_many``.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Any, Protocol

from zexport import protocol

if TYPE_CHECKING:
    from collections.abc import Callable

    import zmq.asyncio

    from zexport.net.service import AttachmentService, FetchResult, Stats
    from zexport.run.setup import RunSetup

log = logging.getLogger("zexport.run.bridge")

# Answers per fetched_many frame: far below the frame size limit with long paths.
FETCHED_PER_FRAME = 2000
UNAVAILABLE = {"path": None, "error": "downloads are not available"}


class Service(Protocol):
    """What the bridge needs of :class:`~zexport.net.service.AttachmentService`."""

    def fetch_now(self, provider_name: str, data: dict[str, Any]) -> FetchResult | None: ...

    async def fetch(self, provider_name: str, data: dict[str, Any]) -> FetchResult: ...


class Peer(Protocol):
    """A worker as the bridge sees it (:class:`~zexport.run.pool.WorkerHandle`)."""

    id: int
    alive: bool
    control: zmq.asyncio.Socket
    outbox: list[dict[str, Any]]


def download_service(setup: RunSetup,
                     on_change: Callable[[Stats], None]) -> AttachmentService:
    """The run's download service, inside the running loop (httpx shares it with zmq);
    imported only here: a run without downloads never pays for httpx."""
    from zexport.net.limits import Limits
    from zexport.net.service import AttachmentService

    dl = setup.spec.downloads
    return AttachmentService(
        setup.providers, setup.credentials, setup.attachment_cache(), Limits.from_options(dl),
        archive=setup.db if dl.update_archive else None, on_change=on_change)


def _open(w: Peer) -> bool:
    return w.alive and not w.control.closed


class AttachmentBridge:
    """Answers workers' attachment requests; :meth:`abort` stops it for good."""

    def __init__(self, service: Service | None = None) -> None:
        self.service = service  # None: downloads are off (every request is refused)
        self.tasks: set[asyncio.Task[None]] = set()
        self.aborted = False

    def handle(self, w: Peer, msg: dict[str, Any]) -> None:
        """Start answering a ``fetch`` or every request of a ``fetch_many``; return at once.

        Malformed ``fetch_many`` items are dropped (and logged) one by one, like bad frames.
        """
        if msg["t"] == "fetch":
            self._start(w, msg, batched=False)
            return
        for item in msg["items"]:
            if (isinstance(item, dict) and type(item.get("req")) is int
                    and isinstance(item.get("conversation_id"), str)
                    and isinstance(item.get("attachment"), dict)):
                self._start(w, item, batched=True)
            else:
                log.warning("worker %d: dropped a malformed fetch_many item", w.id)

    def _start(self, w: Peer, msg: dict[str, Any], batched: bool) -> None:
        if batched and self.service is not None and not self.aborted:
            provider = msg["attachment"].get("provider")
            if isinstance(provider, str):
                try:
                    known = self.service.fetch_now(provider, msg["attachment"])
                except Exception:  # e.g. an unreadable cache folder: the slow path reports it
                    log.debug("fetch_now failed", exc_info=True)
                    known = None
                if known is not None:  # no waiting needed: straight into the outbox
                    self._queue(w, {"req": msg["req"], **known.wire()})
                    return
        self._task(self._answer(w, msg, batched))

    def _task(self, coro: Any) -> None:
        task = asyncio.ensure_future(coro)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def _answer(self, w: Peer, msg: dict[str, Any], batched: bool) -> None:
        """Download (or find in the cache) one attachment and answer it: ``fetched``,
        or an item of the next ``fetched_many`` for requests that came batched."""
        att = msg["attachment"]
        provider = att.get("provider")
        if self.service is None or self.aborted or not isinstance(provider, str):
            fields: dict[str, Any] = dict(UNAVAILABLE)
        else:
            fields = (await self.service.fetch(provider, att)).wire()
        if not _open(w):
            return
        if not batched:
            await w.control.send(protocol.encode("fetched", req=msg["req"], **fields))
            return
        self._queue(w, {"req": msg["req"], **fields})

    def _queue(self, w: Peer, answer: dict[str, Any]) -> None:
        """Answers that are ready in the same turn of the loop leave in one
        ``fetched_many``; a download that finishes later leaves in its own."""
        if not _open(w):
            return
        if not w.outbox:
            asyncio.get_running_loop().call_soon(self._flush, w)
        w.outbox.append(answer)

    def _flush(self, w: Peer) -> None:
        items, w.outbox = w.outbox, []
        if items and _open(w):
            self._task(self._send(w, items))

    async def _send(self, w: Peer, items: list[dict[str, Any]]) -> None:
        for start in range(0, len(items), FETCHED_PER_FRAME):
            if not _open(w):
                return
            await w.control.send(protocol.encode(
                "fetched_many", items=items[start:start + FETCHED_PER_FRAME]))

    def abort(self) -> None:
        """Cancel: abort downloads in flight; answer no more requests with a download."""
        self.aborted = True
        for task in list(self.tasks):
            task.cancel()

    async def close(self) -> None:
        """Wait until no task is left (each cancelled first)."""
        for task in list(self.tasks):
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)
