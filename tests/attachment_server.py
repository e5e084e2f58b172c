"""A real HTTP server on 127.0.0.1 for attachment tests, misbehaving on demand.

Routes (GET only):

- ``/backend-api/files/download/<file_id>``: the ChatGPT files API. Needs
  ``Authorization: Bearer <token>``; answers ``{"status": "success",
  "download_url": ...}``. ``file_id`` picks the download URL:
  ``cross-*`` points at ``http://localhost:<port>`` (another origin),
  ``deny-*`` gets a 403, anything else points at ``/blob/ok/<file_id>.bin``.
- ``/blob/<behaviour>/<name>``: ``ok``, ``noext`` (no extension, a
  Content-Disposition name), ``401``, ``404``, ``429`` (Retry-After 1 the
  first time), ``429long`` (Retry-After 3600), ``500once``, ``503``,
  ``drip`` (never ends), ``big`` (honest Content-Length over any cap),
  ``bigchunked`` (no Content-Length), ``gzipbomb``, ``lyingcl`` (claims more
  than it sends), ``redirect-cross`` (302 to localhost), ``redirect-same``,
  ``redirect-loop``, ``cookie`` (needs the Claude session cookie), ``slow``
  (waits for :attr:`AttachmentServer.slow_gate` first).

Every request is recorded (path, Host, headers) so tests can count requests
and check which credentials reached which origin.
"""

from __future__ import annotations

import gzip
import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

TOKEN = "Bearer sk-SECRET-token-7f3a9c"
CUSTOM = "SECRET-custom-header-55e1"
COOKIE = "SECRET-session-cookie-b0d4"
SECRETS = ("sk-SECRET-token-7f3a9c", CUSTOM, COOKIE)


@dataclass
class Seen:
    """One request as the server saw it."""

    path: str
    host: str
    headers: dict[str, str]
    at: float


def body_for(name: str) -> bytes:
    """The bytes served for ``name`` (deterministic, so outputs can be compared)."""
    return f"attachment body of {name}\n".encode() * 8


class _Server(ThreadingHTTPServer):
    """http.server listens with a backlog of 5: tests open dozens of connections at once,
    and a dropped SYN is retried only after a second, past the tests' download deadlines."""

    request_queue_size = 128


class AttachmentServer:
    """Start with :meth:`start`; ``url(path)`` gives ``http://127.0.0.1:<port>/path``."""

    def __init__(self) -> None:
        self.requests: list[Seen] = []
        self.lock = threading.Lock()
        self.hits: dict[str, int] = {}
        self.stopping = threading.Event()
        self.slow_gate: Callable[[], bool] | None = None
        self.slow_gate_result: bool | None = None
        self.extra_delay = 0.0
        outer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_GET(self) -> None:  # noqa: N802 - http.server's naming
                outer._handle(self)

        self.httpd = _Server(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, args=(0.05,),
                                       daemon=True)

    def start(self) -> AttachmentServer:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.stopping.set()
        self.httpd.shutdown()
        self.httpd.server_close()

    def url(self, path: str, host: str = "127.0.0.1") -> str:
        return f"http://{host}:{self.port}{path}"

    def count(self, prefix: str = "") -> int:
        with self.lock:
            return sum(1 for r in self.requests if r.path.startswith(prefix))

    def paths(self) -> list[str]:
        with self.lock:
            return [r.path for r in self.requests]

    # -- handling -----------------------------------------------------------------
    def _handle(self, h: BaseHTTPRequestHandler) -> None:
        headers = {k.lower(): v for k, v in h.headers.items()}
        with self.lock:
            self.requests.append(Seen(h.path, headers.get("host", ""), headers, time.time()))
            self.hits[h.path] = self.hits.get(h.path, 0) + 1
            hits = self.hits[h.path]
        if self.extra_delay:
            self.stopping.wait(self.extra_delay)  # the latency this server adds
        path = h.path.split("?", 1)[0]
        parts = path.strip("/").split("/")
        if path.startswith("/backend-api/files/download/"):
            self._chatgpt(h, headers, parts[-1])
        elif parts[0] == "blob" and len(parts) == 3:
            self._blob(h, headers, parts[1], parts[2], hits)
        else:
            self._send(h, 404, b"no such route\n")

    def _send(self, h: BaseHTTPRequestHandler, status: int, body: bytes,
              headers: dict[str, str] | None = None) -> None:
        h.send_response(status)
        merged = {"Content-Type": "application/octet-stream", "Content-Length": str(len(body))}
        merged.update(headers or {})
        for k, v in merged.items():
            h.send_header(k, v)
        h.end_headers()
        try:
            h.wfile.write(body)
        except OSError:
            pass

    def _chatgpt(self, h: BaseHTTPRequestHandler, headers: dict[str, str], file_id: str) -> None:
        if headers.get("authorization") != TOKEN or headers.get("x-custom-token") != CUSTOM:
            self._send(h, 401, b'{"detail":"unauthorized"}')
            return
        if file_id.startswith("deny-"):
            self._send(h, 403, b'{"detail":"forbidden"}')
            return
        host = "localhost" if file_id.startswith("cross-") else "127.0.0.1"
        doc = {"status": "success", "download_url": self.url(f"/blob/ok/{file_id}.bin", host),
               "file_name": f"{file_id}.bin"}
        self._send(h, 200, json.dumps(doc).encode(), {"Content-Type": "application/json"})

    def _blob(self, h: BaseHTTPRequestHandler, headers: dict[str, str], kind: str, name: str,
              hits: int) -> None:
        ok = body_for(name)
        if kind == "ok":
            self._send(h, 200, ok)
        elif kind == "noext":
            self._send(h, 200, ok, {"Content-Type": "image/png",
                                    "Content-Disposition": 'attachment; filename="chart"'})
        elif kind in ("401", "404"):
            self._send(h, int(kind), b"nope\n")
        elif kind == "429":
            if hits == 1:
                self._send(h, 429, b"slow down\n", {"Retry-After": "1"})
            else:
                self._send(h, 200, ok)
        elif kind == "429long":
            self._send(h, 429, b"slow down\n", {"Retry-After": "3600"})
        elif kind == "500once":
            self._send(h, 500 if hits == 1 else 200, b"oops\n" if hits == 1 else ok)
        elif kind == "503":
            self._send(h, 503, b"unavailable\n")
        elif kind == "cookie":
            if f"sessionKey={COOKIE}" in headers.get("cookie", ""):
                self._send(h, 200, ok)
            else:
                self._send(h, 403, b"no session\n")
        elif kind == "drip":
            h.send_response(200)
            h.send_header("Content-Length", "1000000")
            h.end_headers()
            try:
                while not self.stopping.is_set():
                    h.wfile.write(b"x")
                    h.wfile.flush()
                    self.stopping.wait(0.1)  # a byte every 0.1 s until the server stops
            except OSError:
                pass
        elif kind == "big":
            self._stream(h, 4 * 1024 * 1024, {"Content-Length": str(4 * 1024 * 1024)})
        elif kind == "bigchunked":
            self._stream(h, 4 * 1024 * 1024, {"Connection": "close"})
        elif kind == "gzipbomb":
            bomb = gzip.compress(b"\0" * (32 * 1024 * 1024), compresslevel=9)
            self._send(h, 200, bomb, {"Content-Encoding": "gzip"})
        elif kind == "lyingcl":
            h.send_response(200)
            h.send_header("Content-Length", "100000")
            h.send_header("Connection", "close")
            h.end_headers()
            h.wfile.write(b"only a little")
            h.close_connection = True
        elif kind == "redirect-cross":
            self._send(h, 302, b"", {"Location": self.url(f"/blob/ok/{name}", "localhost")})
        elif kind == "redirect-same":
            self._send(h, 302, b"", {"Location": f"/blob/ok/{name}"})
        elif kind == "redirect-loop":
            self._send(h, 302, b"", {"Location": f"/blob/redirect-loop/{name}"})
        elif kind == "slow":
            gate = self.slow_gate
            deadline = time.time() + 10
            result = False
            while gate is not None and time.time() < deadline:
                if gate():
                    result = True
                    break
                if self.stopping.wait(0.05):  # look again, unless the server is stopping
                    break
            self.slow_gate_result = result
            self._send(h, 200, ok)
        else:
            self._send(h, 404, b"unknown behaviour\n")

    def _stream(self, h: BaseHTTPRequestHandler, size: int, headers: dict[str, str]) -> None:
        h.send_response(200)
        for k, v in headers.items():
            h.send_header(k, v)
        h.end_headers()
        chunk = b"z" * 65536
        try:
            sent = 0
            while sent < size and not self.stopping.is_set():
                h.wfile.write(chunk)
                sent += len(chunk)
        except OSError:
            pass
        h.close_connection = True
