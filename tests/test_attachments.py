"""Attachment downloads (issue 3): against a real, misbehaving HTTP server on 127.0.0.1.

Unit level: the downloader's limits, retries and redirect rules; the auth
file; the provider registry. End to end (real controller, workers, sockets):
files arrive, failures are visible but not fatal, credentials never reach a
worker (environment, argv, frames) or any file, a second run downloads
nothing, ``--update-archive`` writes only ``local_path``, and the tree is the
same with 1 and 3 workers.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import apsw
import msgpack
import pytest
from attachment_server import COOKIE, CUSTOM, SECRETS, TOKEN, AttachmentServer, body_for
from conftest import tree_digest
from controlkit import wait_for

from zexport.core.attachment_files import AttachmentSources
from zexport.errors import UsageError
from zexport.model import Attachment, Conversation, Message
from zexport.net.auth import Credentials, parse_auth
from zexport.net.cache import AttachmentCache
from zexport.net.downloader import (
    Downloader,
    DownloadError,
    Limits,
    credentials_for,
    redirect_target,
)
from zexport.net.service import AttachmentService
from zexport.net.session import ScopedSession
from zexport.providers.base import AttachmentProvider, AttachmentRef
from zexport.sample import make_sample
from zexport.schema import DDL
from zexport.work.fetch import FetchPipeline

pytestmark = pytest.mark.timeout(60)

KB = 1024


@pytest.fixture
def server() -> Iterator[AttachmentServer]:
    srv = AttachmentServer().start()
    yield srv
    srv.stop()


# -- unit: downloader ---------------------------------------------------------------

def _limits(**kw: Any) -> Limits:
    base: dict[str, Any] = {"max_bytes": 1024 * KB, "deadline": 1.5, "backoff": 0.05,
                            "attempts": 3, "max_retry_after": 5.0, "idle_timeout": 5.0}
    base.update(kw)
    return Limits(**base)


def _get(server: AttachmentServer, tmp_path: Path, path: str, creds: Credentials | None = None,
         **kw: Any) -> tuple[bytes | None, str | None]:
    """Download ``path`` from the server; return (bytes, None) or (None, reason)."""
    staging = tmp_path / "staging"

    async def go() -> tuple[bytes | None, str | None]:
        dl = Downloader(_limits(**kw), str(staging))
        try:
            got = await dl.get_file(server.url(path), creds)
        except DownloadError as exc:
            return None, exc.reason
        finally:
            await dl.close()
        data = Path(got.path).read_bytes()
        os.unlink(got.path)
        return data, None

    result = asyncio.run(go())
    leftovers = list(staging.iterdir()) if staging.exists() else []
    assert leftovers == [], "a partial download was left behind"
    return result


def _creds(server: AttachmentServer) -> Credentials:
    return Credentials("chatgpt", server.url(""), {"Authorization": TOKEN,
                                                   "X-Custom-Token": CUSTOM},
                       {"sessionKey": COOKIE})


def test_ok_and_same_origin_redirect(server: AttachmentServer, tmp_path: Path) -> None:
    assert _get(server, tmp_path, "/blob/ok/a.txt") == (body_for("a.txt"), None)
    assert _get(server, tmp_path, "/blob/redirect-same/b.txt") == (body_for("b.txt"), None)


@pytest.mark.parametrize("code", ["401", "404"])
def test_401_and_404_fail_fast(server: AttachmentServer, tmp_path: Path, code: str) -> None:
    data, reason = _get(server, tmp_path, f"/blob/{code}/x")
    assert data is None and reason is not None and reason.startswith(f"HTTP {code}")
    assert server.count(f"/blob/{code}/") == 1  # no retry


def test_429_honours_retry_after(server: AttachmentServer, tmp_path: Path) -> None:
    started = time.monotonic()
    assert _get(server, tmp_path, "/blob/429/r.txt") == (body_for("r.txt"), None)
    assert time.monotonic() - started >= 0.9  # waited the second Retry-After asked for
    assert server.count("/blob/429/") == 2


def test_429_with_unreasonable_retry_after_fails(server: AttachmentServer,
                                                 tmp_path: Path) -> None:
    data, reason = _get(server, tmp_path, "/blob/429long/r.txt")
    assert data is None and reason and "retry after 3600" in reason
    assert server.count("/blob/429long/") == 1


def test_500_then_success_and_503_gives_up(server: AttachmentServer, tmp_path: Path) -> None:
    assert _get(server, tmp_path, "/blob/500once/s.txt") == (body_for("s.txt"), None)
    assert server.count("/blob/500once/") == 2
    data, reason = _get(server, tmp_path, "/blob/503/s.txt")
    assert data is None and reason and "HTTP 503" in reason and "3 attempts" in reason
    assert server.count("/blob/503/") == 3


def test_endless_drip_hits_the_total_deadline(server: AttachmentServer, tmp_path: Path) -> None:
    started = time.monotonic()
    data, reason = _get(server, tmp_path, "/blob/drip/d", deadline=1.0)
    assert data is None and reason and "deadline" in reason
    assert time.monotonic() - started < 4


@pytest.mark.parametrize("kind", ["big", "bigchunked", "gzipbomb"])
def test_size_cap_on_decoded_bytes(server: AttachmentServer, tmp_path: Path, kind: str) -> None:
    data, reason = _get(server, tmp_path, f"/blob/{kind}/b", max_bytes=1024 * KB)
    assert data is None and reason == "larger than the 1 MB size limit"


def test_lying_content_length_is_an_error_not_a_file(server: AttachmentServer,
                                                     tmp_path: Path) -> None:
    data, reason = _get(server, tmp_path, "/blob/lyingcl/l", attempts=2)
    assert data is None and reason and "broke off" in reason


def test_redirect_loop_is_bounded(server: AttachmentServer, tmp_path: Path) -> None:
    data, reason = _get(server, tmp_path, "/blob/redirect-loop/x")
    assert data is None and reason == "too many redirects (more than 5)"
    assert server.count("/blob/redirect-loop/") == 6


def test_cross_origin_redirect_drops_every_credential(server: AttachmentServer,
                                                      tmp_path: Path) -> None:
    data, _ = _get(server, tmp_path, "/blob/redirect-cross/c.txt", _creds(server))
    assert data == body_for("c.txt")
    first, second = server.requests
    assert first.host == f"127.0.0.1:{server.port}"
    assert first.headers["authorization"] == TOKEN and COOKIE in first.headers["cookie"]
    assert second.host == f"localhost:{server.port}"
    leaked = [v for v in second.headers.values() if any(s in v for s in SECRETS)]
    assert leaked == [] and "authorization" not in second.headers
    assert "cookie" not in second.headers and "x-custom-token" not in second.headers


def test_credentials_only_go_to_their_own_origin(server: AttachmentServer,
                                                 tmp_path: Path) -> None:
    # An archive URL on another origin never gets the credentials, even at first hop.
    data, reason = _get(server, tmp_path, f"//localhost:{server.port}/blob/cookie/x",
                        _creds(server))
    assert data is None
    creds = _creds(server)
    assert credentials_for(server.url("/a"), creds)
    assert credentials_for(server.url("/a", "localhost"), creds) == {}
    assert credentials_for("https://evil.example/a", creds) == {}
    remote_http = Credentials("x", "http://example.com", {"Authorization": "t"})
    assert credentials_for("http://example.com/a", remote_http) == {}  # never in the clear


def test_reserved_invalid_hosts_fail_without_a_lookup(tmp_path: Path) -> None:
    async def go() -> str:
        dl = Downloader(_limits(), str(tmp_path / "staging"))
        try:
            await dl.get_file("https://files.example.invalid/a/b?sig=x", None)
        except DownloadError as exc:
            return exc.reason
        finally:
            await dl.close()
        return "downloaded?"

    assert asyncio.run(go()) == "cannot resolve host files.example.invalid"


def test_clients_are_made_on_first_use_and_share_one_ssl_context(
        server: AttachmentServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Loading the CA bundle costs ~30 ms of the controller's loop per SSL context:
    a downloader that fetched nothing made no client, and its shards share one."""
    import httpx

    made_contexts = []
    real = httpx.create_ssl_context

    def counting(*args: Any, **kwargs: Any) -> Any:
        made_contexts.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(httpx, "create_ssl_context", counting)

    async def go() -> tuple[int, int]:
        dl = Downloader(_limits(concurrency=32, per_host=32), str(tmp_path / "staging"))
        before = len(dl._clients)
        server.extra_delay = 0.05  # enough requests at once to use several shards
        got = await asyncio.gather(*(dl.get_file(server.url(f"/blob/ok/{i}"), None)
                                     for i in range(24)))
        assert all(Path(g.path).read_bytes() == body_for(str(i)) for i, g in enumerate(got))
        made = len(dl._clients)
        await dl.close()
        return before, made

    before, made = asyncio.run(go())
    assert before == 0
    assert made >= 2  # 24 requests at once do not fit in one shard of 8
    assert len(made_contexts) == 1


def test_a_closed_downloader_makes_no_new_client(tmp_path: Path) -> None:
    async def go() -> str:
        dl = Downloader(_limits(), str(tmp_path / "staging"))
        await dl.close()  # before any client exists: nothing to close, no error
        try:
            await dl.get_file("http://127.0.0.1:9/x", None)
        except DownloadError as exc:
            return exc.reason
        return "downloaded?"

    assert asyncio.run(go()) == "the downloader was closed"


def test_the_provider_session_refuses_invalid_hosts_without_making_a_downloader(
        tmp_path: Path) -> None:
    made: list[Downloader] = []

    def factory() -> Downloader:
        made.append(Downloader(_limits(), str(tmp_path / "staging")))
        return made[-1]

    ref = AttachmentRef.from_wire("custom", {"id": "a1", "file_id": "f"})

    async def go() -> list[str]:
        reasons = []
        session = ScopedSession(factory, None, None)
        for call in (session.get_json("https://x.example.invalid/j"),
                     session.get_file("https://files.example.invalid/a?sig=s", ref)):
            try:
                await call
            except DownloadError as exc:
                reasons.append(exc.reason)
        # A Downloader itself is still accepted (the constructor's old form).
        dl = Downloader(_limits(), str(tmp_path / "staging2"))
        try:
            await ScopedSession(dl, None, None).get_json("https://y.example.invalid/")
        except DownloadError as exc:
            reasons.append(exc.reason)
        await dl.close()
        return reasons

    assert asyncio.run(go()) == ["cannot resolve host x.example.invalid",
                                 "cannot resolve host files.example.invalid",
                                 "cannot resolve host y.example.invalid"]
    assert made == []


def test_a_run_that_can_download_nothing_never_imports_httpx(
        isolated_env: dict[str, str], tmp_path: Path) -> None:
    """The sample's missing files belong to providers without credentials or to hosts
    under .invalid: nothing can be downloaded, so httpx (0.2 s of the controller's
    loop, with its SSL contexts) must not be imported; the failures are still reported."""
    db = tmp_path / "a.db"
    make_sample(db, conversations=40, seed=3)
    out = tmp_path / "out"
    code = (
        "import sys\n"
        "import zexport.cli.app as cli\n"
        "def leave(status):\n"
        "    print('httpx imported:', 'httpx' in sys.modules, flush=True)\n"
        "    raise SystemExit(status)\n"
        "cli._exit_now = leave\n"
        f"sys.argv = ['zexport', 'run', '--db', {str(db)!r}, '--out', {str(out)!r},"
        " '--workers', '1', '--progress', 'none', '-q']\n"
        "cli.cli()\n"
    )
    res = subprocess.run([sys.executable, "-c", code], env=isolated_env, timeout=120,
                         capture_output=True, text=True, stdin=subprocess.DEVNULL)
    assert res.returncode == 0, res.stderr  # the attachments that could not be had are warnings
    assert "httpx imported: False" in res.stdout
    report = json.loads((out / ".zexport" / "report.json").read_text())
    reasons = {f["reason"] for f in report["attachment_failures"]}
    assert "cannot resolve host files.example.invalid" in reasons
    assert any(r.startswith("no credentials for ") for r in reasons)


def test_https_to_http_downgrade_refused_except_loopback() -> None:
    with pytest.raises(DownloadError, match="refused redirect from https to plain http"):
        redirect_target("https://files.example.com/a", "http://files.example.com/b")
    with pytest.raises(DownloadError, match="non-http"):
        redirect_target("https://files.example.com/a", "file:///etc/passwd")
    assert redirect_target("https://127.0.0.1:8/a", "http://127.0.0.1:9/b") == \
        "http://127.0.0.1:9/b"
    assert redirect_target("https://h.example/a/b", "c") == "https://h.example/a/c"


def test_concurrency_is_bounded(server: AttachmentServer, tmp_path: Path) -> None:
    server.extra_delay = 0.05
    staging = tmp_path / "staging"

    async def go() -> float:
        dl = Downloader(_limits(concurrency=4, per_host=2), str(staging))
        started = time.monotonic()
        got = await asyncio.gather(*(dl.get_file(server.url(f"/blob/ok/{i}"), None)
                                     for i in range(20)))
        await dl.close()
        assert all(Path(g.path).read_bytes() == body_for(str(i)) for i, g in enumerate(got))
        return time.monotonic() - started

    elapsed = asyncio.run(go())
    assert elapsed >= 20 / 2 * 0.05 * 0.9  # the per-host limit of 2 held


# -- unit: auth file, registry, service ------------------------------------------------

def test_auth_file_parses_and_errors_never_show_secrets() -> None:
    creds = parse_auth('[chatgpt]\nbase_url = "https://chatgpt.com"\n'
                       'headers = { Authorization = "Bearer s3cr3t" }\n'
                       '[claude]\ncookies = { sessionKey = "c00kie" }\n')
    assert creds["chatgpt"].headers == {"Authorization": "Bearer s3cr3t"}
    assert creds["claude"].request_headers() == {"Cookie": "sessionKey=c00kie"}
    assert "s3cr3t" not in repr(creds) and "c00kie" not in repr(creds)
    for bad in ('[chatgpt]\nheaders = { Authorization = 5 }\n',
                '[chatgpt]\nheaders = { Authorization = "Bearer s3cr3t\\nX: y" }\n',
                '[chatgpt]\nbase_url = "ftp://x"\nheaders = { A = "s3cr3t" }\n',
                '[chatgpt]\ntoken = "s3cr3t"\n',
                '[chatgpt\nheaders = { A = "s3cr3t" }\n'):
        with pytest.raises(UsageError) as info:
            parse_auth(bad)
        assert "s3cr3t" not in str(info.value)


def test_builtin_providers_register_through_the_hook() -> None:
    from zexport.plugins import load_registry

    registry = load_registry()
    assert set(registry.providers) >= {"chatgpt", "claude", "perplexity"}
    info = next(p for p in registry.plugins if p.name == "providers")
    assert sorted(info.providers) == ["chatgpt", "claude", "perplexity"]


class _Custom(AttachmentProvider):
    name = "custom"

    def __init__(self, url: str) -> None:
        self.base = url
        self.calls = 0

    async def download(self, ref: AttachmentRef, session: Any) -> Any:
        self.calls += 1
        return await session.get_file(f"{self.base}/blob/noext/{ref.file_id}", ref)


def test_service_dedupes_caches_and_names_from_metadata(server: AttachmentServer,
                                                        tmp_path: Path) -> None:
    provider = _Custom(server.url(""))
    cache = AttachmentCache(str(tmp_path / "cache"))

    async def go() -> list[Any]:
        svc = AttachmentService({"custom": provider}, {}, cache, _limits())
        wire = {"id": "a1", "file_id": "f-1", "filename": None}
        results = await asyncio.gather(svc.fetch("custom", wire),
                                       svc.fetch("custom", {**wire, "id": "a2"}))
        missing = await svc.fetch("nobody", wire)
        await svc.close()
        return [*results, missing, svc.stats]

    first, second, missing, stats = asyncio.run(go())
    assert first.path == second.path and provider.calls == 1
    assert os.path.basename(first.path) == "chart.png"  # Content-Disposition + content type
    assert missing.error == "no attachment provider for 'nobody' (installed: custom)"
    assert (stats.downloaded, stats.failed) == (1, 1)
    again = asyncio.run(_fetch_once(provider, cache))
    assert again.path == first.path and provider.calls == 1 and server.count() == 1


def test_service_answers_without_waiting_when_no_download_is_needed(
        server: AttachmentServer, tmp_path: Path) -> None:
    """fetch_now: a refusal or a cache hit is answered at once (counted once per file),
    a download is not (None: fetch awaits it), and then it is known."""
    provider = _Custom(server.url(""))
    cache = AttachmentCache(str(tmp_path / "cache"))

    async def go() -> list[Any]:
        svc = AttachmentService({"custom": provider}, {}, cache, _limits())
        wire = {"id": "a1", "file_id": "f-1", "filename": None}
        refused = [svc.fetch_now("nobody", wire), svc.fetch_now("nobody", {**wire, "id": "b"})]
        pending = svc.fetch_now("custom", wire)
        downloaded = await svc.fetch("custom", wire)
        known = svc.fetch_now("custom", {**wire, "id": "a2"})
        await svc.close()
        svc2 = AttachmentService({"custom": provider}, {}, cache, _limits())
        hit = svc2.fetch_now("custom", wire)  # a new run: straight from the cache
        await svc2.close()
        return [refused, pending, downloaded, known, hit, svc.stats, svc2.stats]

    refused, pending, downloaded, known, hit, stats, stats2 = asyncio.run(go())
    assert [r.error for r in refused] == [
        "no attachment provider for 'nobody' (installed: custom)"] * 2
    assert pending is None and downloaded.path is not None
    assert known is not None and known.path == downloaded.path
    assert hit is not None and hit.path == downloaded.path and provider.calls == 1
    assert (stats.requested, stats.downloaded, stats.failed) == (2, 1, 1)
    assert (stats2.requested, stats2.cached) == (1, 1)


def test_cache_skips_the_file_system_for_a_provider_it_has_nothing_of(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A run without credentials asks the cache about every missing attachment; when the
    provider's folder does not exist, one check answers them all. What this run stores
    is found at once; what another run stores, by the next run."""
    cache = AttachmentCache(str(tmp_path / "cache"))
    listed: list[str] = []
    real_listdir = os.listdir
    monkeypatch.setattr(os, "listdir", lambda p: (listed.append(str(p)), real_listdir(p))[1])
    assert [cache.lookup("chatgpt", f"file-{i}") for i in range(50)] == [None] * 50
    assert listed == []
    other = AttachmentCache(str(tmp_path / "cache"))  # another run, same cache
    staged = tmp_path / "staged.bin"
    staged.write_bytes(b"x")
    stored = other.store("chatgpt", "file-7", str(staged), "a.bin")
    assert cache.lookup("chatgpt", "file-7") is None  # this run decided: nothing there
    assert AttachmentCache(str(tmp_path / "cache")).lookup("chatgpt", "file-7") == stored
    # This run downloads the same key too: the other run's file wins, one file per key
    # (store looks on disk, whatever lookup decided).
    staged.write_bytes(b"z")
    assert cache.store("chatgpt", "file-7", str(staged), "c.bin") == stored
    assert not staged.exists()
    assert sorted(p.name for p in Path(stored).parent.iterdir()) == ["a.bin"]
    staged.write_bytes(b"y")
    mine = cache.store("chatgpt", "file-8", str(staged), "b.bin")
    assert cache.lookup("chatgpt", "file-8") == mine  # its own store clears the mark


def _conversation_with_files(cid: str, files: int) -> Conversation:
    atts = [Attachment(f"{cid}-a{i}", f"{cid}-m", "file", f"f-{cid}-{i}", None, None,
                       f"{i}.txt", "text/plain", None, None, None, None) for i in range(files)]
    msg = Message(f"{cid}-m", "user", [], b"[]", None, None, None, 0, None, None, None, atts)
    return Conversation(cid, cid, "chatgpt", None, None, 1, None, [msg], cid)


def test_pipeline_renders_ready_conversations_first_and_forgets_everything() -> None:
    """Conversations without missing files come first, in batch order; the others as
    their last answer arrives; a cancel yields none of the waiting ones; and nothing
    about a finished (or abandoned) conversation is kept."""
    sent: list[list[dict[str, Any]]] = []
    pipe = FetchPipeline(lambda t, items: sent.append(items),
                         AttachmentSources("/nonexistent", ["/nonexistent"]))
    convs = [_conversation_with_files("c0", 2), _conversation_with_files("c1", 0),
             _conversation_with_files("c2", 1), _conversation_with_files("c3", 0)]
    reqs = {}  # (conversation, attachment) -> req
    answers = [("c2", "c2-a0"), ("c0", "c0-a0"), ("c0", "c0-a1")]  # one per wait()

    def wait() -> bool:
        cid, aid = answers.pop(0)
        pipe.deliver({"req": reqs[(cid, aid)], "path": f"/cache/{aid}", "name": aid})
        return True

    order = []
    gen = pipe.schedule(convs, wait)
    for conv in gen:
        if not reqs:
            reqs.update({(i["conversation_id"], i["attachment"]["id"]): i["req"]
                         for i in sent[0]})
        order.append(conv.id)
        for msg in conv.messages:
            for att in msg.attachments:
                assert pipe.result(conv, att) == (f"/cache/{att.id}", None)
        pipe.forget(conv)
    assert order == ["c1", "c3", "c2", "c0"]
    assert len(sent) == 1 and len(sent[0]) == 3  # one fetch_many frame for the batch
    assert not pipe.pending and not pipe.answers and not pipe.waiting and not pipe.requests_of

    # Cancelled while waiting: the waiting conversation is not yielded, and is forgotten.
    pipe2 = FetchPipeline(lambda t, items: None,
                          AttachmentSources("/nonexistent", ["/nonexistent"]))
    got = [c.id for c in pipe2.schedule([_conversation_with_files("d0", 1),
                                         _conversation_with_files("d1", 0)], lambda: False)]
    assert got == ["d1"]
    assert not pipe2.pending and not pipe2.waiting and not pipe2.requests_of


async def _fetch_once(provider: AttachmentProvider, cache: AttachmentCache) -> Any:
    svc = AttachmentService({"custom": provider}, {}, cache, _limits())
    try:
        return await svc.fetch("custom", {"id": "a3", "file_id": "f-1"})
    finally:
        await svc.close()


# -- end to end ----------------------------------------------------------------------------

def make_archive(path: Path, server: AttachmentServer, local_dir: Path) -> dict[str, str]:
    """An archive whose attachments point at ``server``; returns {attachment id: case}."""
    local_dir.mkdir(exist_ok=True)
    (local_dir / "here.txt").write_bytes(b"already on disk\n")
    cases: dict[str, tuple[str, str, dict[str, Any]]] = {
        # attachment id: (conversation id, provider, row fields)
        "cg-ok": ("c1", "chatgpt", {"file_id": "file-ok", "filename": "report.pdf"}),
        "cg-cross": ("c1", "chatgpt", {"file_id": "cross-1", "filename": "cross.bin"}),
        "cg-noname": ("c1", "chatgpt", {"file_id": "noname-1", "filename": None}),
        "cg-deny": ("c1", "chatgpt", {"file_id": "deny-1", "filename": "denied.png"}),
        "cl-ok": ("c2", "claude", {"original_url": server.url("/blob/cookie/photo.jpg"),
                                   "filename": "photo.jpg"}),
        "cl-404": ("c2", "claude", {"original_url": server.url("/blob/404/gone.jpg"),
                                    "filename": "gone.jpg",
                                    "local_path": str(local_dir / "deleted.jpg")}),
        "px-ok": ("c3", "perplexity", {"original_url": server.url("/blob/ok/p.txt?sig=SIGNED"),
                                       "filename": "p.txt"}),
        "px-500": ("c3", "perplexity", {"original_url": server.url("/blob/500once/q.txt"),
                                        "filename": "q.txt"}),
        "px-here": ("c4", "perplexity", {"original_url": server.url("/blob/404/never"),
                                         "filename": "here.txt",
                                         "local_path": str(local_dir / "here.txt")}),
    }
    conn = apsw.Connection(str(path))
    conn.execute(DDL)
    titles = {"c1": "ChatGPT files", "c2": "Claude files", "c3": "Perplexity files",
              "c4": "Local only"}
    for n, (cid, title) in enumerate(titles.items()):
        provider = next((p for c, p, _ in cases.values() if c == cid), "perplexity")
        conn.execute("INSERT INTO conversations VALUES (?,?,?,?,?,?,?,?,?,?)",
                     (cid, title, provider, 1_700_000_000 + n, 1_700_000_000 + n, None, 1,
                      f"m-{cid}", None, 0))
        conn.execute("INSERT INTO messages VALUES (?,?,?,?,?,?,?,?,?,?)",
                     (f"m-{cid}", cid, "user", json.dumps([{"type": "text", "text": title}]),
                      1_700_000_000 + n, None, 0, None, None, None))
    for aid, (cid, _, row) in cases.items():
        conn.execute("INSERT INTO attachments VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)",
                     (aid, f"m-{cid}", "file", row.get("file_id"), row.get("original_url"),
                      row.get("local_path"), row.get("filename"), None, 100, None, None,
                      1_700_000_000, 1_700_000_000))
    conn.close()
    return {aid: cid for aid, (cid, _, _) in cases.items()}


def write_auth(path: Path, server: AttachmentServer) -> Path:
    path.write_text(
        f'[chatgpt]\nbase_url = "{server.url("")}"\n'
        f'headers = {{ Authorization = "{TOKEN}", X-Custom-Token = "{CUSTOM}" }}\n'
        f'[claude]\nbase_url = "{server.url("")}"\ncookies = {{ sessionKey = "{COOKIE}" }}\n')
    return path


EXPECTED_FAILURES = {
    "cg-deny": "HTTP 403 (forbidden) from 127.0.0.1:{port}",
    "cl-404": "HTTP 404 (not found) from 127.0.0.1:{port}",
}

FRAME_SPY = """
import sys, zmq.asyncio
log = open(sys.argv[1], "ab")
orig = zmq.asyncio.Socket.send
def send(self, data, *args, **kwargs):
    log.write(len(bytes(data)).to_bytes(4, "big") + bytes(data)); log.flush()
    return orig(self, data, *args, **kwargs)
zmq.asyncio.Socket.send = send
from zexport.cli.app import cli
cli(sys.argv[2:], prog_name="zexport")
"""


def _db_snapshot(db: Path) -> dict[str, list[Any]]:
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    tables = [r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type='table'")]
    snap = {t: con.execute(f"SELECT * FROM {t} ORDER BY rowid").fetchall() for t in tables}
    snap["journal_mode"] = con.execute("PRAGMA journal_mode").fetchall()
    con.close()
    return snap


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _workers_of(controller_pid: int) -> list[int]:
    from controlkit import worker_processes

    return [pid for pid, ppid, _ in worker_processes() if ppid == controller_pid]


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_end_to_end_secrets_cache_tree_and_archive(cli: Any, isolated_env: dict[str, str],
                                                   server: AttachmentServer,
                                                   tmp_path: Path) -> None:
    db = tmp_path / "archive.db"
    cases = make_archive(db, server, tmp_path / "files")
    auth = write_auth(tmp_path / "auth.toml", server)
    cache = tmp_path / "cache"
    db_sha = _sha(db)
    common = ["--db", str(db), "--tz", "UTC", "--cache-dir", str(cache)]

    # Run 1: one worker, credentials through the environment variable, frames spied on.
    # One slow file keeps the run alive while we look at the worker processes.
    con = apsw.Connection(str(db))
    con.execute("UPDATE attachments SET original_url = ? WHERE id = 'px-500'",
                (server.url("/blob/slow/q.txt"),))
    con.close()
    db_sha = _sha(db)
    seen_workers: set[int] = set()
    server.slow_gate = lambda: bool(seen_workers)  # hold the answer until a worker was seen
    out1 = tmp_path / "out1"
    frames = tmp_path / "frames.bin"
    env = dict(isolated_env, ZEXPORT_AUTH_FILE=str(auth))
    proc = subprocess.Popen(
        [sys.executable, "-c", FRAME_SPY, str(frames), "run", *common, "--out", str(out1),
         "--workers", "1", "--progress", "json"],
        env=env, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 30
    while proc.poll() is None and time.monotonic() < deadline:
        for pid in _workers_of(proc.pid):
            try:
                environ = Path(f"/proc/{pid}/environ").read_bytes()
                cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
            except OSError:
                continue
            seen_workers.add(pid)
            for secret in (*SECRETS, str(auth)):
                assert secret.encode() not in environ and secret.encode() not in cmdline
            assert b"ZEXPORT_AUTH_FILE" not in environ
        try:
            proc.wait(timeout=0.02)  # until the run ends, looking again every 20 ms
        except subprocess.TimeoutExpired:
            pass
    stdout, stderr = proc.communicate(timeout=30)
    assert proc.returncode == 0, stderr.decode()
    assert seen_workers, "never saw a worker process"

    # Frames the controller sent: decoded, none carries a secret; answers name cache paths.
    blob, sent = frames.read_bytes(), []
    while blob:
        n = int.from_bytes(blob[:4], "big")
        sent.append(msgpack.unpackb(blob[4:4 + n], raw=False))
        blob = blob[4 + n:]
    # Answers travel in fetched_many frames (each item a fetched answer).
    fetched = [item for m in sent if m.get("t") == "fetched_many" for item in m["items"]]
    assert any(m.get("t") == "config" for m in sent) and len(fetched) == 8
    assert not any(m.get("t") == "fetched" for m in sent)  # workers ask in fetch_many
    assert all(m["path"] is None or m["path"].startswith(str(cache)) for m in fetched)
    for secret in SECRETS:
        assert secret.encode() not in frames.read_bytes()

    # Outputs: files where downloads worked, placeholders with reasons where not.
    report = json.loads((out1 / ".zexport" / "report.json").read_text())
    failed = {f["attachment_id"]: f["reason"] for f in report["attachment_failures"]}
    assert failed == {k: v.format(port=server.port) for k, v in EXPECTED_FAILURES.items()}
    assert {f["conversation_id"] for f in report["attachment_failures"]} == {"c1", "c2"}
    assert report["counts"]["attachments_exported"] == len(cases) - 2
    assert report["downloads"]["downloaded"] == 6 and report["downloads"]["bytes"] > 0
    md = (out1 / "2023-11-14 ChatGPT files" / "conversation.md").read_text()
    assert f"denied.png: HTTP 403 (forbidden) from 127.0.0.1:{server.port}" in md
    attached = out1 / "2023-11-14 ChatGPT files" / "attachments"
    assert sorted(p.name for p in attached.iterdir()) == [
        "cross.bin", "noname-1.bin", "report.pdf"]
    assert (attached / "report.pdf").read_bytes() == body_for("file-ok.bin")
    assert (out1 / "2023-11-14 Local only" / "attachments" / "here.txt").read_bytes() == \
        b"already on disk\n"
    # The chatgpt download_url on another origin got no credentials; the API did.
    for r in server.requests:
        if r.host.startswith("localhost"):
            assert not any(s in v for v in r.headers.values() for s in SECRETS)
    assert all(r.headers.get("authorization") == TOKEN for r in server.requests
               if r.path.startswith("/backend-api/"))
    assert server.count("/blob/404/never") == 0  # on disk: never requested
    # Progress shows downloads.
    progress = [json.loads(line) for line in stdout.decode().splitlines()]
    downloading = [p for p in progress if p["phase"] == "downloading"]
    assert downloading and {"done", "failed", "bytes"} <= set(downloading[-1])
    assert downloading[-1]["failed"] == 2 and downloading[-1]["done"] == 6
    assert _sha(db) == db_sha  # without --update-archive the archive is never written

    # Run 2: three workers, same cache: only the failures are asked for again.
    before = len(server.requests)
    out3 = tmp_path / "out3"
    res = cli("run", *common, "--out", str(out3), "--workers", "3", "--progress", "none",
              "--auth", str(auth))
    assert res.returncode == 0, res.stderr
    again = server.paths()[before:]
    assert sorted(again) == sorted(["/backend-api/files/download/deny-1?post_id=&inline=false",
                                    "/blob/404/gone.jpg"])
    assert tree_digest(out1) == tree_digest(out3)

    # Nothing secret in any file we made (outputs, reports, worker logs, cache) or in output.
    for path in tmp_path.rglob("*"):
        if path.is_file() and path != auth:
            data = path.read_bytes()
            assert not any(s.encode() in data for s in SECRETS), path
            if path != db:  # the signed URL is in the archive, and nowhere we wrote
                assert b"SIGNED" not in data, path
    for text in (stdout, stderr):
        assert not any(s.encode() in text for s in SECRETS)
    assert not any(s in res.stdout + res.stderr for s in SECRETS)
    report_text = (out3 / ".zexport" / "report.json").read_text()
    assert "SIGNED" not in report_text

    # Run 3: --update-archive writes local_path for the files it had, nothing else.
    snap = _db_snapshot(db)
    out4 = tmp_path / "out4"
    res = cli("run", *common, "--out", str(out4), "--workers", "2", "--progress", "none",
              "--auth", str(auth), "--update-archive")
    assert res.returncode == 0, res.stderr
    after = _db_snapshot(db)
    assert {k: v for k, v in after.items() if k != "attachments"} == \
        {k: v for k, v in snap.items() if k != "attachments"}
    local_col = 5
    for old, new in zip(snap["attachments"], after["attachments"], strict=True):
        assert old[:local_col] + old[local_col + 1:] == new[:local_col] + new[local_col + 1:]
        if old[0] in ("cg-deny", "cl-404", "px-here"):
            assert new[local_col] == old[local_col]  # a failure never erases a stored path
        else:
            assert new[local_col] != old[local_col]
            assert new[local_col].startswith(str(cache)) and os.path.isfile(new[local_col])


def test_worker_renders_ready_conversations_while_downloads_wait(
        cli: Any, server: AttachmentServer, tmp_path: Path) -> None:
    db = tmp_path / "archive.db"
    make_archive(db, server, tmp_path / "files")
    con = apsw.Connection(str(db))
    # c1 (first in the batch) now waits on a slow file; c4 has its file on disk.
    con.execute("UPDATE attachments SET original_url = ?, file_id = NULL WHERE id = 'px-500'",
                (server.url("/blob/slow/q.txt"),))
    con.execute("UPDATE conversations SET created_at = 1600000000 WHERE id = 'c3'")
    con.close()
    out = tmp_path / "out"
    ready = out / "2023-11-14 Local only" / "conversation.md"
    server.slow_gate = ready.exists  # answer only once the ready conversation is written
    res = cli("run", "--db", str(db), "--out", str(out), "--workers", "1", "--batch-size",
              "10", "--provider", "perplexity", "--progress", "none", "--tz", "UTC")
    assert res.returncode == 0, res.stderr
    assert server.slow_gate_result is True, "the worker sat idle while its download waited"
    assert (out / "2020-09-13 Perplexity files" / "attachments" / "q.txt").exists()


def test_missing_credentials_fail_clearly_and_no_attachments_fetches_nothing(
        cli: Any, server: AttachmentServer, tmp_path: Path) -> None:
    db = tmp_path / "archive.db"
    make_archive(db, server, tmp_path / "files")
    out = tmp_path / "out"
    res = cli("run", "--db", str(db), "--out", str(out), "--provider", "chatgpt",
              "--progress", "none", "--cache-dir", str(tmp_path / "cache"))
    assert res.returncode == 0, res.stderr
    report = json.loads((out / ".zexport" / "report.json").read_text())
    reasons = {f["reason"] for f in report["attachment_failures"]}
    assert reasons == {"no credentials for chatgpt (add a [chatgpt] table to the --auth file)"}
    assert server.count() == 0
    res = cli("run", "--db", str(db), "--out", str(tmp_path / "out2"), "--no-attachments",
              "--progress", "none")
    assert res.returncode == 0 and server.count() == 0
    bad = cli("run", "--db", str(db), "--out", str(tmp_path / "never"), "--auth",
              str(tmp_path / "missing.toml"))
    assert bad.returncode == 2 and "cannot read auth file" in bad.stderr
    assert not (tmp_path / "never").exists()


def test_ctrl_c_aborts_downloads_in_flight(isolated_env: dict[str, str],
                                           server: AttachmentServer, tmp_path: Path) -> None:
    import signal

    db = tmp_path / "archive.db"
    make_archive(db, server, tmp_path / "files")
    con = apsw.Connection(str(db))
    con.execute("UPDATE attachments SET original_url = ? WHERE id = 'px-ok'",
                (server.url("/blob/drip/never-ends"),))
    con.close()
    cache = tmp_path / "cache"
    proc = subprocess.Popen(
        [sys.executable, "-m", "zexport", "run", "--db", str(db), "--out", str(tmp_path / "o"),
         "--progress", "none", "--cache-dir", str(cache), "--download-timeout", "60"],
        env=isolated_env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    wait_for(lambda: server.count("/blob/drip/") > 0, 20, "the drip download to start")
    assert server.count("/blob/drip/") == 1
    started = time.monotonic()
    proc.send_signal(signal.SIGINT)
    proc.communicate(timeout=20)
    assert proc.returncode == 130
    assert time.monotonic() - started < 3
    assert [p for p in cache.rglob("*") if p.is_file()] == []  # the partial file is gone


def test_auth_file_readable_by_others_is_warned_about(cli: Any, sample_db: Path,
                                                      tmp_path: Path) -> None:
    """Like ssh with keys: a credentials file other users can read gets a warning
    (stderr, even with -q, and the report), and a private one does not."""
    auth = tmp_path / "auth.toml"
    auth.write_text('[chatgpt]\nheaders = { Authorization = "Bearer not-a-real-token" }\n')
    for mode, warned in ((0o644, True), (0o600, False)):
        auth.chmod(mode)
        out = tmp_path / f"out-{mode:o}"
        res = cli("run", "--db", str(sample_db), "--out", str(out), "--auth", str(auth),
                  "--no-downloads", "--workers", "1", "-q", timeout=120)
        assert res.returncode == 0, res.stderr
        notes = json.loads((out / ".zexport" / "report.json").read_text())["notes"]
        assert ("can be read by other users" in res.stderr) is warned, res.stderr
        assert any("chmod 600" in n for n in notes) is warned
        assert "not-a-real-token" not in res.stderr + json.dumps(notes)


def test_download_progress_is_throttled_and_ends_with_the_final_counts(
        cli: Any, tmp_path: Path) -> None:
    """The sample's missing files all fail at once (no credentials, .invalid hosts):
    a JSON progress line each would flood a GUI; the last line still has every count."""

    db = tmp_path / "sample.db"
    make_sample(db, conversations=400, seed=3)
    out = tmp_path / "out"
    for provider in ("chatgpt", "claude"):  # something "cached": the controller answers
        (tmp_path / "cache" / provider).mkdir(parents=True)
    started = time.monotonic()
    res = cli("run", "--db", str(db), "--out", str(out), "--progress", "json",
              "--workers", "2", "--cache-dir", str(tmp_path / "cache"), timeout=120)
    seconds = time.monotonic() - started
    assert res.returncode == 0, res.stderr  # missing attachments are warnings
    lines = [json.loads(line) for line in res.stdout.splitlines() if line.startswith("{")]
    downloading = [p for p in lines if p["phase"] == "downloading"]
    stats = json.loads((out / ".zexport" / "report.json").read_text())["downloads"]
    assert stats["requested"] > 150  # enough requests for the throttle to matter
    assert 0 < len(downloading) <= min(seconds / 0.1 + 2, stats["requested"] / 3)
    assert downloading[-1]["current"] == downloading[-1]["total"] == stats["requested"]
    assert downloading[-1]["failed"] == stats["failed"]


def test_workers_refuse_providers_without_credentials_themselves_with_the_same_result(
        cli: Any, tmp_path: Path) -> None:
    """With no credentials and nothing cached for a provider, workers answer its missing
    files themselves (config refused_providers) instead of asking the controller for
    each: the report must list exactly the failures the controller would have given."""
    db = tmp_path / "sample.db"
    make_sample(db, conversations=120, seed=5)

    def run(name: str, cached: bool) -> tuple[set[tuple[str, str]], dict[str, Any]]:
        cache = tmp_path / f"cache-{name}"
        if cached:  # a provider folder exists: every request goes to the controller
            for provider in ("chatgpt", "claude", "perplexity"):
                (cache / provider).mkdir(parents=True)
        out = tmp_path / name
        res = cli("run", "--db", str(db), "--out", str(out), "--progress", "none",
                  "--workers", "2", "--cache-dir", str(cache), timeout=120)
        assert res.returncode == 0, res.stderr
        report = json.loads((out / ".zexport" / "report.json").read_text())
        return ({(f["attachment_id"], f["reason"]) for f in report["attachment_failures"]},
                report["downloads"])

    local, local_stats = run("local", cached=False)
    remote, remote_stats = run("remote", cached=True)
    assert local == remote and any(r.startswith("no credentials for ") for _, r in local)
    refused = sum(r.startswith("no credentials for ") for _, r in remote)
    assert refused > 20
    assert remote_stats["requested"] == local_stats["requested"] + refused
