"""Peak memory of a worker exporting one very long conversation (BRIEF §8: < 300 MB
for 100,000 messages), and what holds it.

Two measures:

- ``run``: real ``zexport run`` processes, one worker, each format asked; the
  worker's kernel high-water mark (VmHWM), polled from outside;
- ``parts``: in this process, the resident memory after each step of a
  worker's work on the conversation (read the rows, build the model, render,
  encode), so the step that holds memory shows.

Usage: ``python benchmarks/bench_long_memory.py [--messages 100000] [--repeat 3]
[--formats markdown,json]``. Archives are made on tmpfs and kept for re-runs.
"""

from __future__ import annotations

import argparse
import gc
import os
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _harness as h  # noqa: E402


def rss_mib() -> float:
    """This process's resident memory now (VmRSS), MiB."""
    with open("/proc/self/status", "rb") as fh:
        for line in fh:
            if line.startswith(b"VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def hwm_mib() -> float:
    """This process's resident high-water mark (VmHWM), MiB."""
    with open("/proc/self/status", "rb") as fh:
        for line in fh:
            if line.startswith(b"VmHWM:"):
                return int(line.split()[1]) / 1024
    return 0.0


def measure_runs(db: Path, formats: list[str], repeat: int) -> None:
    for fmt in formats:
        peaks, seconds = [], []
        for _ in range(repeat):
            with tempfile.TemporaryDirectory(dir=h.TMPFS_ROOT) as tmp:
                m = h.run_with_memory(h.run_args(db, Path(tmp) / "out", fmt, 1))
            peaks += m.workers_mib
            seconds.append(m.seconds)
        print(f"run {fmt}: worker peak {', '.join(f'{p:.0f}' for p in peaks)} MiB;"
              f" {', '.join(f'{s:.2f}' for s in seconds)} s", flush=True)


def measure_parts(db: Path, fmt_name: str) -> None:
    """What each step of one worker's work keeps resident."""
    from zexport.core.timezones import resolve_tz
    from zexport.plugins import load_registry
    from zexport.sources.archive import BatchReader

    registry = load_registry()
    fmt = registry.get_format(fmt_name)
    import apsw

    conn = apsw.Connection(f"file:{db}?mode=ro", flags=apsw.SQLITE_OPEN_READONLY
                           | apsw.SQLITE_OPEN_URI)
    cid = conn.execute("SELECT id FROM conversations").fetchone()[0]
    conn.close()
    gc.collect()
    steps = [("start (interpreter, plugins)", rss_mib())]
    reader = BatchReader(str(db))
    convs = reader.read([(cid, "folder")])
    gc.collect()
    steps.append(("conversation read and built (model objects)", rss_mib()))
    from zexport.formats.base import RenderContext

    with tempfile.TemporaryDirectory(dir=h.TMPFS_ROOT) as tmp:
        ctx = RenderContext(out_dir=tmp, folder=tmp, options=fmt.parse_options({}),
                            tz=resolve_tz("UTC"), branches="active",
                            exported_at="2024-01-01T00:00:00+00:00", batch=0,
                            format_name=fmt.name)
        body = fmt.render(convs[0], ctx)
        steps.append((f"rendered ({len(body) / 2**20:.0f} MiB of text)", rss_mib()))
        data = body.encode() if isinstance(body, str) else body
        steps.append(("encoded to bytes", rss_mib()))
        del body, data
        gc.collect()
        steps.append(("text dropped", rss_mib()))
    del convs
    gc.collect()
    steps.append(("conversation dropped", rss_mib()))
    reader.close()
    base = steps[0][1]
    for label, value in steps:
        print(f"parts {fmt_name}: {value:7.1f} MiB ({value - base:+7.1f})  {label}")
    print(f"parts {fmt_name}: peak {hwm_mib():.1f} MiB")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--messages", type=int, default=100_000)
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--formats", default="markdown,json")
    p.add_argument("--only", choices=("run", "parts"))
    a = p.parse_args()
    h.init()
    db = h.ensure_long_conversation(h.TMPFS_ROOT, a.messages)
    formats = a.formats.split(",")
    print(f"one conversation of {a.messages:,} messages ({db}); pid {os.getpid()}")
    if a.only != "parts":
        measure_runs(db, formats, a.repeat)
    if a.only != "run":
        for fmt in formats:  # each in a fresh process: the peaks must not mix
            os.system(f"{sys.executable} {__file__} --messages {a.messages} --formats {fmt}"
                      " --only parts-one")  # noqa: S605


if __name__ == "__main__":
    if "parts-one" in sys.argv:
        args = sys.argv[1:]
        n = int(args[args.index("--messages") + 1])
        fmt = args[args.index("--formats") + 1]
        measure_parts(h.ensure_long_conversation(h.TMPFS_ROOT, n), fmt)
    else:
        main()
