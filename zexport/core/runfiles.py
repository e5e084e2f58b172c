"""On-disk lists a run keeps for its formats' start and finish steps.

A format that writes an index (HTML) or one file for the whole export
(JSONL) needs, at the end of the run, every conversation in export order,
and sometimes one record per conversation produced in the workers. Holding
100k of either in the controller's memory would break the "memory flat in
archive size" goal (BRIEF §8), so both live in files and are read back as
iterators:

- the **plan** (``<run dir>/plan.jsonl``): one JSON line per selected
  conversation, written by the controller while it names them;
- **record shards** (``<out>/.zexport/shards/<format>/<batch>.msgpack``):
  the records a worker's conversations emitted during one batch, written
  atomically when the batch ends. Only shards of batches the controller
  accepted are read, in export order, so the result is the same bytes
  whatever ``--workers`` is and however batches were retried or split.
"""

from __future__ import annotations

import os
import shutil
import stat
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import IO, Any

import msgpack
import orjson

from zexport.core.output import atomic_write, ensure_dir, open_read
from zexport.core.statedir import STATE_DIR

SHARDS_DIR = "shards"


@dataclass(frozen=True, slots=True)
class ConversationEntry:
    """One selected conversation as the start and finish steps see it.

    ``folder`` is the conversation's place, relative to the output folder (its
    folder in the default layout; a note's path without its extension with
    ``--layout note``, see :mod:`zexport.core.layouts`); ``path`` is the conversation's
    file, relative to the output folder: link to it (an index) with ``path``.
    ``error`` is None for a conversation that was exported (or skipped as already
    exported), else the reason it failed; during ``start`` every ``error`` is None.
    """

    id: str
    title: str
    provider: str
    created_at: int | None
    updated_at: int | None
    message_count: int | None
    folder: str
    error: str | None = None
    path: str = ""

    @property
    def exported(self) -> bool:
        """True when the conversation's output exists."""
        return self.error is None


@dataclass(frozen=True, slots=True)
class Record:
    """One record a format emitted for a conversation in a worker (see RenderContext.emit)."""

    conversation_id: str
    data: bytes


class PlanWriter:
    """Appends plan lines; used by the controller while it names conversations."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._fh: IO[bytes] = open(path, "wb")  # closed in close()

    def add(self, cid: str, title: str | None, provider: str | None, created_at: int | None,
            updated_at: int | None, message_count: int | None, folder: str,
            path: str = "") -> None:
        """Add one conversation, in export order (``path``: its file)."""
        self._fh.write(orjson.dumps(
            [cid, title or "", provider or "", created_at, updated_at, message_count, folder,
             path]))
        self._fh.write(b"\n")

    def close(self) -> None:
        """Flush and close the file."""
        self._fh.close()


def iter_plan(path: str, failures: Mapping[str, str]) -> Iterator[ConversationEntry]:
    """Read the plan back, one entry at a time, marking failed conversations."""
    if not path or not os.path.exists(path):
        return
    with open(path, "rb") as fh:
        for line in fh:
            item: list[Any] = orjson.loads(line)
            cid = str(item[0])
            yield ConversationEntry(cid, item[1], item[2], item[3], item[4], item[5], item[6],
                                    failures.get(cid), str(item[7]) if len(item) > 7 else "")


def shard_dir(out_dir: str, format_name: str) -> str:
    """Where a format's record shards live."""
    return os.path.join(out_dir, STATE_DIR, SHARDS_DIR, format_name)


def shard_path(out_dir: str, format_name: str, batch: int) -> str:
    """The shard file of one batch."""
    return os.path.join(shard_dir(out_dir, format_name), f"{batch:08d}.msgpack")


def clear_shards(out_dir: str, format_name: str) -> None:
    """Remove an earlier run's shards (batch numbers differ per run); recreate the folder.

    Whatever is at either folder's name but a real folder (a planted symlink, a
    file) is removed, the name only, so shards are never written through a link.
    """
    path = shard_dir(out_dir, format_name)
    for folder in (os.path.join(out_dir, STATE_DIR, SHARDS_DIR), path):
        try:
            st = os.lstat(folder)
        except FileNotFoundError:
            pass
        else:
            if not stat.S_ISDIR(st.st_mode):
                os.unlink(folder)
            elif folder == path:
                shutil.rmtree(path)
        ensure_dir(folder)


def write_shard(path: str, records: Iterable[tuple[str, bytes]]) -> None:
    """Write one batch's records atomically (a msgpack stream of ``[id, data]`` pairs)."""
    packer = msgpack.Packer(use_bin_type=True)
    atomic_write(path, b"".join(packer.pack([cid, data]) for cid, data in records))


def iter_records(paths: Iterable[str]) -> Iterator[Record]:
    """Stream the records of the given shards, in the order given."""
    for path in paths:
        fh = open_read(path)  # a symlink planted among the shards is refused, not read
        if fh is None:
            continue  # the batch emitted nothing
        with fh:
            for cid, data in msgpack.Unpacker(fh, raw=False, max_buffer_size=1 << 30):
                yield Record(str(cid), bytes(data))
