"""Exporting a ChatGPT data export (``--input``) against the same data as an archive (``--db``).

Generates a synthetic ChatGPT export in the 2026 layout (``export_manifest.json``,
``conversations-NNN.json`` shards of 100 conversations, a ``.dat`` image per 50
conversations, hidden system nodes, thoughts, a regenerated answer and a cited
answer per conversation), then times three runs to Markdown, each with the peak
resident memory (VmHWM) of the controller and of each worker, and CPU time:

- ``input-cold``: ``--input export.zip`` with an empty cache (convert, then export);
- ``input-warm``: the same again (the cached archive is reused: export only);
- ``db``: ``--db`` on that converted archive copied out, i.e. the same
  conversations as an OwnYourChat database.

Usage: ``python benchmarks/bench_sources.py 10000 100000 [--repeat 2]``. Flat
memory means the controller's peak does not grow with the export's size.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import zipfile
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _harness import TIMEOUT, _vm_hwm_kb, zexport_cmd  # noqa: E402

SHARD = 100
PNG = bytes.fromhex("89504e470d0a1a0a0000000d4948445200000001000000010806000000"
                    "1f15c4890000000d49444154789c6360000002000154a24f5d0000000049454e44ae426082")


def _msg(mid: str, role: str, t: float, content: dict[str, object],
         **meta: object) -> dict[str, object]:
    return {"id": mid, "author": {"role": role, "name": None, "metadata": {}},
            "create_time": t, "content": content, "status": "finished_successfully",
            "weight": 1, "recipient": "all", "metadata": dict(meta)}


def conversation(i: int) -> dict[str, object]:
    """One synthetic conversation: 10 nodes, 7 turns, one branch, one citation."""
    t = 1_700_000_000.0 + i * 60
    cid = f"6b{i:06d}-0000-4000-8000-000000000000"
    text = ("Here is a fairly ordinary answer with a few sentences of text. " * 6).strip()
    nodes: list[tuple[str, str | None, dict[str, object] | None]] = [
        ("root", None, None),
        ("sys", "root", {**_msg("sys", "system", t, {"content_type": "text", "parts": [""]},
                                is_visually_hidden_from_conversation=True), "weight": 0}),
        ("u1", "sys", _msg("u1", "user", t + 1, {"content_type": "text",
                                                 "parts": [f"Question number {i}?"]})),
        ("th", "u1", _msg("th", "assistant", t + 2, {"content_type": "thoughts", "thoughts": [
            {"summary": "Thinking", "content": "Some reasoning.", "chunks": []}]})),
        ("a1", "th", _msg("a1", "assistant", t + 3, {"content_type": "text", "parts": [text]})),
        ("a2", "th", _msg("a2", "assistant", t + 4, {"content_type": "text", "parts": [
            text + " See \ue200cite\ue202turn0search0\ue201 for more."]}, content_references=[{
                "matched_text": "\ue200cite\ue202turn0search0\ue201", "start_idx": 0,
                "type": "grouped_webpages",
                "items": [{"title": "A source", "url": f"https://example.com/{i}"}]}])),
        ("u2", "a2", _msg("u2", "user", t + 5, {"content_type": "text", "parts": ["Thanks!"]})),
        ("a3", "u2", _msg("a3", "assistant", t + 6, {"content_type": "text", "parts": [text]})),
        ("u3", "a3", _msg("u3", "user", t + 7, {"content_type": "text", "parts": ["More?"]})),
        ("a4", "u3", _msg("a4", "assistant", t + 8, {"content_type": "text", "parts": [text]})),
    ]
    if i % 50 == 0:  # an image, present in the export as <id>.dat
        u1 = nodes[2][2]
        assert u1 is not None
        u1["content"] = {"content_type": "multimodal_text", "parts": [
            {"content_type": "image_asset_pointer", "asset_pointer": f"sediment://file_{i:032x}",
             "size_bytes": len(PNG), "width": 1, "height": 1}, f"Question number {i}?"]}
    mapping = {f"{cid[:8]}-{k}": {"id": f"{cid[:8]}-{k}",
                                  "parent": f"{cid[:8]}-{p}" if p else None,
                                  "message": ({**m, "id": f"{cid[:8]}-{k}"} if m else None)}
               for k, p, m in nodes}
    return {"id": cid, "conversation_id": cid, "title": f"Conversation {i}", "create_time": t,
            "update_time": t + 8, "current_node": f"{cid[:8]}-a4", "mapping": mapping}


def make_export(path: Path, count: int) -> Path:
    """The export ZIP, written shard by shard (never all in memory)."""
    if path.exists():
        return path
    tmp = path.with_suffix(".tmp")
    shards = [f"conversations-{n:03d}.json" for n in range((count + SHARD - 1) // SHARD)]
    with zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED, compresslevel=1) as zf:
        zf.writestr("export_manifest.json", json.dumps({"version": 1, "logical_files": {
            "conversations.json": {"files": shards, "sharded": True}}}))
        for n, shard in enumerate(shards):
            with zf.open(shard, "w") as f:
                convs = [conversation(i) for i in range(n * SHARD, min(count, (n + 1) * SHARD))]
                f.write(json.dumps(convs).encode())
        for i in range(0, count, 50):
            zf.writestr(f"file_{i:032x}.dat", PNG)
    tmp.rename(path)
    return path


def run_polled(cmd: list[str]) -> tuple[float, float, dict[str, list[float]]]:
    """(wall s, CPU s of the controller and workers, peak MiB by role) of one run.

    CPU comes from each process's last ``cpu_times`` seen (workers are not our
    children, so ``RUSAGE_CHILDREN`` would miss them); a shared, loaded machine
    makes wall time noisy, CPU time much less so.
    """
    import psutil

    start = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    top = psutil.Process(proc.pid)
    roles: dict[int, str] = {proc.pid: "controller"}
    peaks: dict[int, int] = {}
    cpu: dict[int, float] = {}
    handles: dict[int, psutil.Process] = {proc.pid: top}
    while proc.poll() is None:
        if time.perf_counter() - start > TIMEOUT:
            proc.kill()
            raise RuntimeError("timed out")
        try:
            for child in top.children(recursive=True):
                if child.pid not in roles:
                    try:
                        roles[child.pid] = ("worker" if "zexport.work.worker" in " ".join(
                            child.cmdline()) else "other")
                        handles[child.pid] = child
                    except psutil.Error:
                        continue
        except psutil.Error:
            pass
        for pid, handle in handles.items():
            hwm = _vm_hwm_kb(pid)
            if hwm is not None:
                peaks[pid] = max(peaks.get(pid, 0), hwm)
            try:
                t = handle.cpu_times()
                cpu[pid] = t.user + t.system
            except psutil.Error:
                pass
        time.sleep(0.02)
    wall = time.perf_counter() - start
    if proc.returncode not in (0, 1):
        err = proc.stderr.read().decode(errors="replace") if proc.stderr else ""
        raise RuntimeError(f"exited {proc.returncode}: {err[-2000:]}")
    by_role: dict[str, list[float]] = {}
    for pid, role in roles.items():
        by_role.setdefault(role, []).append(round(peaks.get(pid, 0) / 1024, 1))
    return wall, sum(v for p, v in cpu.items() if roles[p] != "other"), by_role


def measure(label: str, args: list[str], env_cache: Path, out: Path) -> dict[str, object]:
    shutil.rmtree(out, ignore_errors=True)
    os.environ["ZEXPORT_CACHE_DIR"] = str(env_cache)
    wall, cpu, peaks = run_polled(zexport_cmd(
        "run", *args, "--out", str(out), "--format", "markdown", "--workers", "2",
        "--progress", "none", "--tz", "UTC", "-q"))
    files = sum(1 for _ in out.glob("*/conversation.md"))
    row = {"run": label, "seconds": round(wall, 2), "cpu_seconds": round(cpu, 2),
           "controller_mib": peaks.get("controller", [0])[0],
           "workers_mib": sorted(peaks.get("worker", [])), "files": files,
           "load": os.getloadavg()[0]}
    print(json.dumps(row), flush=True)
    return row


CONVERT = """
import sys
from zexport.plugins import load_registry
from zexport.sources.resolve import prepare_input
print(prepare_input(sys.argv[1], None, load_registry().sources, sys.argv[2]).db)
"""


def convert_only(size: int, export: Path, cache: Path) -> None:
    """Conversion alone (what ``--input`` adds before the export), in a child process."""
    shutil.rmtree(cache, ignore_errors=True)
    wall, cpu, peaks = run_polled([sys.executable, "-c", CONVERT, str(export), str(cache)])
    print(json.dumps({"run": f"convert {size}", "seconds": round(wall, 2),
                      "cpu_seconds": round(cpu, 2), "peak_mib": peaks["controller"][0],
                      "load": os.getloadavg()[0]}), flush=True)


def sweep(doc: str, make: Callable[[Path, int], Path], stem: str, root: Path,
          same_db: bool) -> None:
    """The command line of this script and of its siblings for other providers: make an
    export of each size with ``make``, then time the runs (``same_db``: also ``db``)."""
    parser = argparse.ArgumentParser(description=doc.split("\n\n")[0])
    parser.add_argument("sizes", nargs="+", type=int)
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--convert-only", action="store_true",
                        help="time the conversion alone (the new part), not the export")
    parser.add_argument("--root", type=Path, default=root)
    opts = parser.parse_args()
    opts.root.mkdir(parents=True, exist_ok=True)
    for size in opts.sizes:
        start = time.perf_counter()
        export = make(opts.root / f"{stem}-{size}.zip", size)
        print(json.dumps({"size": size, "zip_mib": round(export.stat().st_size / 2**20, 1),
                          "generated_in": round(time.perf_counter() - start, 1)}), flush=True)
        with tempfile.TemporaryDirectory(dir=opts.root) as work:
            w = Path(work)
            for _ in range(opts.repeat if opts.convert_only else 0):
                convert_only(size, export, w / "cache")
            for _ in range(0 if opts.convert_only else opts.repeat):
                shutil.rmtree(w / "cache", ignore_errors=True)
                measure(f"input-cold {size}", ["--input", str(export)], w / "cache", w / "out")
                measure(f"input-warm {size}", ["--input", str(export)], w / "cache", w / "out")
                if not same_db:
                    continue
                (archive,) = (w / "cache" / "sources").glob("*/archive.db")
                db = w / "same-data.db"
                shutil.copyfile(archive, db)
                measure(f"db {size}", ["--db", str(db), "--no-downloads"], w / "cache",
                        w / "out")


def main() -> None:
    sweep(__doc__, make_export, "chatgpt", Path("/var/tmp/zexport-bench-sources"), True)

if __name__ == "__main__":
    main()
