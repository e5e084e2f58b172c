"""Converting an export's independent files (2026 shards) in several processes.

Conversion is CPU-bound Python (parsing, building parts), and a sharded
export's shards do not depend on each other, so with more than one CPU the
shards are cut into contiguous runs: this process converts the first run
into the archive while helper processes (``python -m zexport.sources.parallel``)
convert the others into archives of their own, which are then merged in
input order. Merging in order keeps every rule of the single-process writer
(the first of two equal conversation ids wins; a reused message id is
renamed in the later conversation), so the archive holds the same rows.
A helper that fails costs only time: its run is converted here instead.
"""

from __future__ import annotations

import importlib
import os
import subprocess
import sys
import tempfile
from typing import IO, Any

import orjson

from zexport.core.collector import fewer_collections
from zexport.sources.base import Conversion, Source
from zexport.sources.bundle import Bundle, open_bundle
from zexport.sources.writer import ArchiveWriter

MIN_FILES = 4  # files per process: fewer are not worth a process's start-up


def runs(files: list[str], processes: int) -> list[list[str]]:
    """``files`` cut into at most ``processes`` contiguous runs of similar length."""
    n = max(1, min(processes, len(files) // MIN_FILES))
    size, extra = divmod(len(files), n)
    out, at = [], 0
    for i in range(n):
        end = at + size + (1 if i < extra else 0)
        out.append(files[at:end])
        at = end
    return out


def convert_parts(source: Source, bundle: Bundle, into: Conversion, files: list[str]) -> None:
    """``source.convert_files`` over ``files``, in ``into.processes`` processes if worth it."""
    parts = runs(files, into.processes)
    if len(parts) == 1 or not _reopenable(bundle):
        source.convert_files(bundle, into, files)
        return
    folder = tempfile.mkdtemp(prefix="parts-", dir=os.path.dirname(into.writer.path))
    helpers: list[tuple[list[str], str, subprocess.Popen[bytes]]] = []
    try:
        for i, run in enumerate(parts[1:], start=1):
            db = os.path.join(folder, f"part-{i}.db")
            spec = {"source": f"{type(source).__module__}:{type(source).__qualname__}",
                    "input": bundle.path, "files": run, "db": db,
                    "files_dir": os.path.join(into.files_dir, f"part-{i}")}
            helpers.append((run, db, subprocess.Popen(
                [sys.executable, "-m", "zexport.sources.parallel", orjson.dumps(spec).decode()],
                stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE)))
        source.convert_files(bundle, into, parts[0])
        for run, db, proc in helpers:
            out, _err = proc.communicate()
            result = _result(out) if proc.returncode == 0 else None
            if result is None:  # the helper failed: convert its run here
                source.convert_files(bundle, into, run)
                continue
            for cid in into.writer.merge(db):
                into.notes.append(f"conversation {cid!r} appears twice in the input;"
                                  " the first was exported")
            into.notes += result["notes"]
            into.failures += result["failures"]
            into.missing.update(result["missing"])
            os.remove(db)
    finally:
        for _run, _db, proc in helpers:
            if proc.poll() is None:
                proc.kill()
                proc.communicate()
        for name in os.listdir(folder):
            os.remove(os.path.join(folder, name))
        os.rmdir(folder)


def _reopenable(bundle: Bundle) -> bool:
    """Whether a helper can open the same input from its path (not a ZIP inside a ZIP)."""
    return os.path.exists(bundle.path)


def _result(out: bytes) -> dict[str, Any] | None:
    try:
        result = orjson.loads(out)
    except orjson.JSONDecodeError:
        return None
    if not isinstance(result, dict) or not all(k in result for k in (
            "notes", "failures", "missing")):
        return None
    return result


def _load_source(path: str) -> Source:
    module, _, qualname = path.partition(":")
    obj: Any = importlib.import_module(module)
    for attr in qualname.split("."):
        obj = getattr(obj, attr)
    source = obj()
    if not isinstance(source, Source):
        raise TypeError(f"{path} is not a Source")
    return source


def main(argv: list[str] | None = None, stdout: IO[bytes] | None = None) -> int:
    """A helper: convert the files its spec names into its own archive; say what it noted."""
    spec = orjson.loads((argv if argv is not None else sys.argv[1:])[0])
    source = _load_source(spec["source"])
    bundle = open_bundle(spec["input"])
    writer = ArchiveWriter(spec["db"], indexes=False)
    into = Conversion(writer, spec["files_dir"])
    try:
        with fewer_collections():
            source.convert_files(bundle, into, spec["files"])
    except BaseException:
        writer.abort()
        raise
    finally:
        bundle.close()
    writer.close()
    out = stdout if stdout is not None else sys.stdout.buffer
    out.write(orjson.dumps({"notes": into.notes, "failures": into.failures,
                            "missing": into.missing}))
    out.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
