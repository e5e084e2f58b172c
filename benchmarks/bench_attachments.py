"""Benchmark: 1,000 attachment downloads from a server adding 50 ms to every response.

BRIEF §8: "1,000 attachment downloads from a server with 50 ms latency
finish in under 5 s". Loopback only. The server runs in its own process
(an asyncio HTTP/1.1 server with keep-alive that sleeps 50 ms before every
response), so it does not share the benchmark's GIL or event loop.

Two measurements:

- ``service``: the controller's real download path (AttachmentService →
  perplexity provider → Downloader → cache) on 1,000 distinct files, for
  each ``--download-concurrency`` in ``--levels`` (1 is the serial figure).
- ``run``: ``zexport run`` end to end on an archive of 1,000 conversations
  with one missing attachment each (workers ask, the controller downloads,
  workers copy), against the same archive with ``--no-attachments``.

Usage::

    python benchmarks/bench_attachments.py                  # levels 1 4 8 16 32, run at 8 16
    python benchmarks/bench_attachments.py --levels 8 16 --run-levels 8
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

LATENCY = 0.05
BODY = b"x" * 2048


# -- the server (runs in a child process) ---------------------------------------------

async def _serve_conn(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while True:
            head = await reader.readuntil(b"\r\n\r\n")
            if not head:
                return
            await asyncio.sleep(LATENCY)
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n"
                         b"Content-Length: %d\r\n\r\n" % len(BODY) + BODY)
            await writer.drain()
    except (asyncio.IncompleteReadError, ConnectionError):
        pass
    finally:
        writer.close()


async def _serve(port_file: str) -> None:
    server = await asyncio.start_server(_serve_conn, "127.0.0.1", 0, backlog=1024)
    port = server.sockets[0].getsockname()[1]
    Path(port_file).write_text(str(port))
    async with server:
        await server.serve_forever()


def start_server(tmp: Path) -> tuple[subprocess.Popen[bytes], int]:
    port_file = tmp / "port"
    proc = subprocess.Popen([sys.executable, __file__, "--serve", str(port_file)])
    deadline = time.monotonic() + 10
    while not port_file.exists() or not port_file.read_text():
        if time.monotonic() > deadline:
            proc.kill()
            raise RuntimeError("server did not start")
        time.sleep(0.02)
    return proc, int(port_file.read_text())


# -- measurements -------------------------------------------------------------------------

async def _service_run(port: int, n: int, concurrency: int, cache: str) -> tuple[float, int]:
    from zexport.net.cache import AttachmentCache
    from zexport.net.downloader import Limits
    from zexport.net.service import AttachmentService
    from zexport.providers.builtin import PerplexityProvider

    svc = AttachmentService({"perplexity": PerplexityProvider()}, {}, AttachmentCache(cache),
                            Limits(concurrency=concurrency, per_host=concurrency))
    started = time.perf_counter()
    results = await asyncio.gather(*(
        svc.fetch("perplexity", {"id": f"a{i}", "file_id": f"f{i}",
                                 "original_url": f"http://127.0.0.1:{port}/f/{i}.txt"})
        for i in range(n)))
    elapsed = time.perf_counter() - started
    await svc.close()
    return elapsed, sum(1 for r in results if r.path is None)


def make_archive(path: Path, port: int, n: int) -> None:
    import apsw

    from zexport.schema import DDL

    conn = apsw.Connection(str(path))
    conn.execute(DDL)
    with conn:
        for i in range(n):
            cid, mid = f"c{i:05d}", f"m{i:05d}"
            conn.execute("INSERT INTO conversations VALUES (?,?,?,?,?,?,?,?,?,?)",
                         (cid, f"Conversation {i}", "perplexity", 1_700_000_000 + i,
                          1_700_000_000 + i, None, 1, mid, None, 0))
            conn.execute("INSERT INTO messages VALUES (?,?,?,?,?,?,?,?,?,?)",
                         (mid, cid, "user", '[{"type":"text","text":"hi"}]',
                          1_700_000_000 + i, None, 0, None, None, None))
            conn.execute("INSERT INTO attachments VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)",
                         (f"a{i:05d}", mid, "file", f"file-{i}",
                          f"http://127.0.0.1:{port}/f/{i}.txt", None, f"{i}.txt",
                          "text/plain", len(BODY), None, None, None, None))
    conn.close()


def time_run(args: list[str], env: dict[str, str]) -> tuple[float, int]:
    started = time.perf_counter()
    res = subprocess.run([sys.executable, "-m", "zexport", "run", *args], env=env,
                         capture_output=True, text=True, timeout=600)
    return time.perf_counter() - started, res.returncode


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--serve", help=argparse.SUPPRESS)
    ap.add_argument("-n", type=int, default=1000, help="attachments (default 1000)")
    ap.add_argument("--levels", type=int, nargs="*", default=[1, 4, 8, 16, 32],
                    help="download concurrency levels for the service measurement")
    ap.add_argument("--run-levels", type=int, nargs="*", default=[8, 16],
                    help="download concurrency levels for the end-to-end zexport run")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--json", help="also write the results to this JSON file")
    opts = ap.parse_args()
    if opts.serve:
        asyncio.run(_serve(opts.serve))
        return 0
    results: dict[str, object] = {"n": opts.n, "latency_ms": LATENCY * 1000,
                                  "cpus": os.cpu_count(), "service": {}, "run": {}}
    with tempfile.TemporaryDirectory(prefix="zexport-bench-att-") as tmp_s:
        tmp = Path(tmp_s)
        server, port = start_server(tmp)
        try:
            print(f"{opts.n} attachments, server adds {LATENCY * 1000:.0f} ms per response "
                  f"(127.0.0.1:{port}); floor = n x 50 ms / concurrency")
            for level in opts.levels:
                cache = tmp / f"cache-svc-{level}"
                elapsed, failed = asyncio.run(_service_run(port, opts.n, level, str(cache)))
                floor = opts.n * LATENCY / level
                results["service"][str(level)] = {"seconds": round(elapsed, 3),  # type: ignore[index]
                                                  "failed": failed}
                print(f"  service  concurrency {level:3d}: {elapsed:7.2f} s "
                      f"({opts.n / elapsed:6.0f}/s, floor {floor:5.2f} s, failed {failed})")
            db = tmp / "archive.db"
            make_archive(db, port, opts.n)
            env = dict(os.environ, ZEXPORT_RUNTIME_DIR=str(tmp / "rt"))
            (tmp / "rt").mkdir(mode=0o700)
            base, code = time_run(["--db", str(db), "--out", str(tmp / "out-none"),
                                   "--workers", str(opts.workers), "--progress", "none",
                                   "--no-attachments"], env)
            results["run"]["no-attachments"] = round(base, 3)  # type: ignore[index]
            print(f"  zexport run --no-attachments:       {base:7.2f} s (status {code})")
            for level in opts.run_levels:
                cache = tmp / f"cache-run-{level}"
                elapsed, code = time_run([
                    "--db", str(db), "--out", str(tmp / f"out-{level}"), "--workers",
                    str(opts.workers), "--progress", "none", "--cache-dir", str(cache),
                    "--download-concurrency", str(level)], env)
                results["run"][str(level)] = round(elapsed, 3)  # type: ignore[index]
                print(f"  zexport run --download-concurrency {level:3d}: {elapsed:7.2f} s "
                      f"(status {code})")
            elapsed, code = time_run([
                "--db", str(db), "--out", str(tmp / "out-again"), "--workers",
                str(opts.workers), "--progress", "none", "--cache-dir",
                str(tmp / f"cache-run-{opts.run_levels[-1]}")], env) if opts.run_levels else (0, 0)
            results["run"]["cached"] = round(elapsed, 3)  # type: ignore[index]
            print(f"  zexport run again (all cached):     {elapsed:7.2f} s (status {code})")
        finally:
            server.kill()
            server.wait()
    if opts.json:
        Path(opts.json).write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
