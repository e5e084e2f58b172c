"""A Grok export (``--input``, the ``zexport-grok`` source plugin) to Markdown.

Generates a synthetic Grok export ZIP as xAI lays it out
(``ttl/30d/export_data/<uuid>/prod-grok-backend.json``, one JSON object whose
``conversations`` list holds every conversation, and an asset per 50
conversations at ``prod-mc-asset-server//<id>/content``), each conversation
with 10 responses, a regenerated answer, reasoning, a search result, an
artifact and both Mongo ``$date`` forms. Then, like ``bench_sources.py``:
the conversion alone (peak memory of the one process that streams the JSON)
or ``input-cold`` / ``input-warm`` exports with the controller's and workers'
peaks and CPU time. Flat memory means the peak does not grow with the size.

Usage: ``python benchmarks/bench_grok.py 10000 100000 [--repeat 2] [--convert-only]``
(needs ``pip install ./plugins/zexport-grok`` and the ``bench`` extra).
"""

from __future__ import annotations

import json
import sys
import time
import zipfile
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_sources import PNG, sweep  # noqa: E402

USER_DIR = "ttl/30d/export_data/00000000-0000-4000-8000-0000000be000"
TEXT = ("Here is a fairly ordinary answer with a few sentences of text. " * 6).strip()


def _response(rid: str, sender: str, text: str, ms: int, parent: str | None,
              **extra: Any) -> dict[str, Any]:
    when: Any = ({"$date": {"$numberLong": str(ms)}} if ms % 2 else
                 {"$date": time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime(ms / 1000))})
    response = {"_id": rid, "sender": sender, "model": "grok-4", "message": text,
                "create_time": when, **extra}
    if parent:
        response["parent_response_id"] = parent
    return {"response": response, "share_link": None}


def conversation(i: int) -> dict[str, Any]:
    """One synthetic conversation: 10 responses, 9 on the latest branch."""
    ms = 1_767_225_600_000 + i * 60_000
    cid = f"{i:08x}-0000-4000-8000-00000000g0k0"
    responses = [_response(f"{cid}-u1", "human", f"Question number {i}?", ms + 1, None,
                           **({"file_attachments": [f"asset-{i:08d}"]} if i % 50 == 0 else {})),
                 _response(f"{cid}-a1", "ASSISTANT", "An answer replaced later.", ms + 2,
                           f"{cid}-u1"),
                 _response(f"{cid}-a2", "assistant", f"{TEXT} <xaiArtifact artifact_id=\"a\""
                           f" artifact_version_id=\"v\" title=\"plan.md\" contentType="
                           f"\"text/markdown\">\n# Plan {i}\n</xaiArtifact>", ms + 3, f"{cid}-u1",
                           thinking_trace="Some reasoning.",
                           web_search_results=[{"url": f"https://example.com/{i}",
                                                "title": "Example"}])]
    parent = f"{cid}-a2"
    for n in range(7):
        rid = f"{cid}-t{n}"
        responses.append(_response(rid, "human" if n % 2 else "ASSISTANT", TEXT,
                                   ms + 4 + n, parent))
        parent = rid
    return {"conversation": {"id": cid, "title": f"Chat {i}", "summary": "",
                             "create_time": time.strftime("%Y-%m-%dT%H:%M:%SZ",
                                                          time.gmtime(ms / 1000))},
            "responses": responses}


def make_export(path: Path, count: int) -> Path:
    if path.exists():
        return path
    tmp = path.with_suffix(".tmp")
    with zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED, compresslevel=1) as zf:
        with zf.open(f"{USER_DIR}/prod-grok-backend.json", "w", force_zip64=True) as f:
            f.write(b'{"conversations": [')
            for i in range(count):
                f.write((b"," if i else b"") + json.dumps(conversation(i)).encode())
            f.write(b'], "projects": [], "tasks": [], "media_posts": []}')
        for i in range(0, count, 50):
            zf.writestr(zipfile.ZipInfo(f"{USER_DIR}/prod-mc-asset-server//asset-{i:08d}/content"),
                        PNG)
    tmp.rename(path)
    return path


def main() -> None:
    sweep(__doc__, make_export, "grok", Path("/var/tmp/zexport-bench-grok"), False)

if __name__ == "__main__":
    main()
