"""The attachment bridge in-process: a fake download service, a fake worker channel.

What leaves in which frame (one ``fetched`` per ``fetch``; answers ready in
the same turn together in one ``fetched_many``, later ones in their own),
what a cancel does to downloads in flight, and that a dead worker is sent
nothing. tests/test_attachments.py runs the same path against a real HTTP
server with real workers.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import msgpack
import pytest

from zexport import protocol
from zexport.net.service import FetchResult
from zexport.run.bridge import FETCHED_PER_FRAME, AttachmentBridge

pytestmark = pytest.mark.timeout(30)


class Channel:
    """A worker's PAIR socket, as far as the bridge uses it."""

    def __init__(self) -> None:
        self.closed = False
        self.frames: list[dict[str, Any]] = []

    async def send(self, frame: bytes) -> None:
        self.frames.append(protocol.decode(frame))


class Peer:
    def __init__(self) -> None:
        self.id = 3
        self.alive = True
        self.control = Channel()
        self.outbox: list[dict[str, Any]] = []


class Service:
    """Files ``cached-*`` are known at once; others wait until ``release`` is set."""

    def __init__(self) -> None:
        self.release = asyncio.Event()
        self.downloads = 0
        self.waiting = 0  # downloads blocked on ``release`` right now

    def fetch_now(self, provider_name: str, data: dict[str, Any]) -> FetchResult | None:
        if data["id"].startswith("cached"):
            return FetchResult(path=f"/cache/{data['id']}", name=data["id"])
        return None

    async def fetch(self, provider_name: str, data: dict[str, Any]) -> FetchResult:
        self.downloads += 1
        self.waiting += 1
        try:
            await self.release.wait()
        finally:
            self.waiting -= 1
        return FetchResult(error=f"HTTP 404 for {data['id']}")


def request(req: int, att_id: str, provider: Any = "chatgpt") -> dict[str, Any]:
    return {"req": req, "conversation_id": "c1",
            "attachment": {"id": att_id, "provider": provider}}


def fetch_many(*items: Any) -> dict[str, Any]:
    return protocol.decode(protocol.encode("fetch_many", items=list(items)))


async def settle(bridge: AttachmentBridge, w: Peer, timeout: float = 5.0) -> None:
    """Until the bridge has nothing left to do: no answer queued for ``w``, and every
    task it runs is a download blocked on the fake service's ``release``."""
    service = bridge.service

    def settled() -> bool:
        # Blocked: on a release not given yet, and not being cancelled.
        blocked = (service.waiting if isinstance(service, Service)
                   and not service.release.is_set() else 0)
        return (not w.outbox and len(bridge.tasks) == blocked
                and not any(task.cancelling() for task in bridge.tasks))

    deadline = time.monotonic() + timeout
    while not settled():
        assert time.monotonic() < deadline, "the bridge never settled"
        await asyncio.sleep(0)  # let the loop run what is ready


def test_answers_ready_together_leave_in_one_frame_and_a_download_in_its_own() -> None:
    async def main() -> list[dict[str, Any]]:
        service, w = Service(), Peer()
        bridge = AttachmentBridge(service)
        bridge.handle(w, fetch_many(request(1, "cached-a"), request(2, "slow-b"),
                                    request(3, "cached-c")))
        await settle(bridge, w)
        assert service.downloads == 1
        service.release.set()
        await settle(bridge, w)
        await bridge.close()
        return w.control.frames

    frames = asyncio.run(main())
    assert frames == [
        {"v": 1, "t": "fetched_many", "items": [
            {"req": 1, "path": "/cache/cached-a", "name": "cached-a", "error": None},
            {"req": 3, "path": "/cache/cached-c", "name": "cached-c", "error": None}]},
        {"v": 1, "t": "fetched_many", "items": [
            {"req": 2, "path": None, "error": "HTTP 404 for slow-b"}]},
    ]


def test_a_single_fetch_is_answered_with_fetched() -> None:
    async def main() -> list[dict[str, Any]]:
        service, w = Service(), Peer()
        service.release.set()
        bridge = AttachmentBridge(service)
        bridge.handle(w, protocol.decode(protocol.encode("fetch", **request(9, "x"))))
        await settle(bridge, w)
        await bridge.close()
        return w.control.frames

    assert asyncio.run(main()) == [
        {"v": 1, "t": "fetched", "req": 9, "path": None, "error": "HTTP 404 for x"}]


def test_without_downloads_or_a_provider_each_request_is_refused() -> None:
    async def main(service: Service | None) -> list[dict[str, Any]]:
        w = Peer()
        bridge = AttachmentBridge(service)
        bridge.handle(w, fetch_many(request(1, "cached-a", provider=None)))
        await settle(bridge, w)
        await bridge.close()
        return w.control.frames

    refused = [{"v": 1, "t": "fetched_many", "items": [
        {"req": 1, "path": None, "error": "downloads are not available"}]}]
    assert asyncio.run(main(None)) == refused
    assert asyncio.run(main(Service())) == refused  # a provider that is not a name


def test_malformed_items_are_dropped_one_by_one() -> None:
    async def main() -> list[dict[str, Any]]:
        w = Peer()
        bridge = AttachmentBridge(Service())
        msg = {"t": "fetch_many", "items": [
            {"req": "1", "conversation_id": "c", "attachment": {}},  # req not an int
            {"req": 2, "conversation_id": "c"},  # no attachment
            request(3, "cached-ok")]}
        bridge.handle(w, msg)
        await settle(bridge, w)
        await bridge.close()
        return w.control.frames

    frames = asyncio.run(main())
    assert [item["req"] for f in frames for item in f["items"]] == [3]


def test_cancel_aborts_downloads_in_flight_and_refuses_new_ones() -> None:
    async def main() -> tuple[list[dict[str, Any]], int]:
        service, w = Service(), Peer()
        bridge = AttachmentBridge(service)
        bridge.handle(w, fetch_many(request(1, "slow")))
        await settle(bridge, w)
        bridge.abort()
        await settle(bridge, w)
        assert not bridge.tasks  # the download's task was cancelled, not left waiting
        bridge.handle(w, fetch_many(request(2, "cached-now"), request(3, "slow-2")))
        await settle(bridge, w)
        await bridge.close()
        return w.control.frames, service.downloads

    frames, downloads = asyncio.run(main())
    assert downloads == 1  # nothing started after the cancel
    assert frames == [{"v": 1, "t": "fetched_many", "items": [
        {"req": 2, "path": None, "error": "downloads are not available"},
        {"req": 3, "path": None, "error": "downloads are not available"}]}]


def test_a_dead_worker_is_sent_nothing() -> None:
    async def main() -> list[dict[str, Any]]:
        service, w = Service(), Peer()
        bridge = AttachmentBridge(service)
        bridge.handle(w, fetch_many(request(1, "slow"), request(2, "cached")))
        w.alive = False  # died in the same turn: the queued answer is not sent
        service.release.set()
        await settle(bridge, w)
        await bridge.close()
        return w.control.frames

    assert asyncio.run(main()) == []


def test_many_answers_are_cut_into_frames_of_at_most_fetched_per_frame() -> None:
    count = FETCHED_PER_FRAME + 5

    async def main() -> list[dict[str, Any]]:
        w = Peer()
        bridge = AttachmentBridge(Service())
        bridge.handle(w, fetch_many(*(request(i, f"cached-{i}") for i in range(count))))
        await settle(bridge, w)
        await bridge.close()
        return w.control.frames

    frames = asyncio.run(main())
    assert [len(f["items"]) for f in frames] == [FETCHED_PER_FRAME, 5]
    assert [item["req"] for f in frames for item in f["items"]] == list(range(count))
    assert len(msgpack.packb(frames[0])) < protocol.MAX_FRAME_BYTES
