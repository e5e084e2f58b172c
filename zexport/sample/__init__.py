"""Synthetic OwnYourChat archives that are what the app writes, and as dirty as real ones.

zexport is measured (``benchmarks/``) and tested on archives made here, never
on a user's data, so a sample must be what the app really leaves on disk
(BRIEF §3): the app's own schema (:data:`zexport.schema.DDL`, with no index
on ``messages.conversation_id``), its per-provider conventions (Claude's
all-zero root parent, Perplexity's missing tree, ``''`` for missing paths,
inline citations; see :mod:`.generator`), its attachment layout
(:mod:`.attachments`) and its ``user_preferences.export_settings`` row; and
it must reproduce what real archives do to an exporter: heavy-tailed
conversation lengths, markdown with code fences, tables and LaTeX, branched
message trees, attachments that are cached, missing or deleted, thousands of
"New chat" titles, titles no file system accepts, unparseable ``parts`` JSON,
orphaned messages, NULL timestamps and wrong counters.

Two properties matter as much as the dirt:

- **Deterministic.** The same ``seed``, ``conversations`` and ``path`` give a
  byte-identical database (and identical attachment files), so a benchmark or
  a test failure can be reproduced exactly. Everything is drawn from one
  ``random.Random(seed)``, timestamps count from the fixed ``BASE_TS``, rows
  are inserted in generation order and the file is left in rollback-journal
  mode (no WAL). The absolute paths of downloaded attachments are stored in
  the archive (as the app does), so the bytes depend on where it is written.
- **Fast.** 10,000 conversations (~200,000 messages) take a few seconds:
  message text is assembled from pools of markdown blocks built once per run,
  rows go in with ``executemany`` in batches inside one transaction.

The dirty and hostile cases are placed in the first conversations (see
:mod:`.specials`), so even a 50-conversation sample holds every one of them;
later conversations get the same kinds of dirt at random, at rates
resembling real archives.

The result appears atomically: the database is built as ``<path>.tmp-<pid>``
and the attachment folder as ``<folder>.tmp-<pid>``; both are renamed into
place only when complete, and removed if anything fails.
"""

from __future__ import annotations

import os
import random
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from zexport.sample.generator import BASE_TS, DEFAULT_EXPORT_SETTINGS, Generator

__all__ = ["BASE_TS", "DEFAULT_EXPORT_SETTINGS", "SAMPLE_CONVERSATIONS", "SAMPLE_VERSION",
           "SampleStats", "attachment_dir", "builtin_sample", "make_sample"]

#: Changes whenever the same seed would give other bytes: caches of samples (the
#: built-in one, the benchmarks') put it in their file names, so none is stale.
SAMPLE_VERSION = 2

#: The app's own archive name: a sample written under it gets the app's folder layout.
APP_ARCHIVE_NAME = "ownyourchat.db"


@dataclass(frozen=True)
class SampleStats:
    """What ``make_sample`` wrote, for the CLI to print and tests to check."""

    conversations: int
    messages: int
    attachments: int
    attachment_files: int


def attachment_dir(path: str | os.PathLike[str]) -> Path:
    """Return the attachments folder that belongs to archive ``path`` (absolute).

    Inside it files are laid out as the app lays them out,
    ``<conversationId>/<fileId>_<name>``. For an archive named like the app's
    (``ownyourchat.db``) it is the app's own ``attachments`` folder beside it,
    so the sample is a complete user-data folder; any other name gets
    ``<stem>-files`` beside it, so several samples can share a folder and a
    sample and its files can be deleted together.
    """
    p = Path(os.path.abspath(os.fspath(path)))
    if p.name == APP_ARCHIVE_NAME:
        return p.parent / "attachments"
    return p.parent / f"{p.stem}-files"


def make_sample(
    path: str | os.PathLike[str], conversations: int = 1000, seed: int = 0,
    export_settings: dict[str, Any] | None = DEFAULT_EXPORT_SETTINGS,
) -> SampleStats:
    """Write a new synthetic OwnYourChat archive at ``path`` and return its counts.

    ``export_settings`` is the JSON the app saves in
    ``user_preferences.export_settings`` (``None``: a user who never opened
    the export dialog, a NULL column). Refuses (``FileExistsError``) if
    ``path`` or its attachment folder (``attachment_dir(path)``) already
    exists: a sample must never overwrite a real archive. The same ``path``,
    ``conversations`` and ``seed`` always give the same bytes.
    """
    if conversations < 0:
        raise ValueError(f"conversations must be >= 0, not {conversations}")
    final_db = os.path.abspath(os.fspath(path))
    final_dir = str(attachment_dir(final_db))
    for existing in (final_db, final_dir):
        if os.path.lexists(existing):
            raise FileExistsError(f"refusing to overwrite existing {existing!r}")
    pid = os.getpid()
    tmp_db = f"{final_db}.tmp-{pid}"
    tmp_dir = f"{final_dir}.tmp-{pid}"
    try:
        os.mkdir(tmp_dir)
        gen = Generator(random.Random(seed), final_dir, tmp_dir)
        gen.write(tmp_db, conversations, export_settings)
        with open(tmp_db, "rb+") as fh:  # durable before it becomes visible
            os.fsync(fh.fileno())
        for existing in (final_db, final_dir):  # something may have appeared meanwhile
            if os.path.lexists(existing):
                raise FileExistsError(f"refusing to overwrite existing {existing!r}")
        os.rename(tmp_dir, final_dir)
        try:
            os.replace(tmp_db, final_db)
        except BaseException:
            shutil.rmtree(final_dir, ignore_errors=True)
            raise
    except BaseException:
        for leftover in (tmp_db, tmp_db + "-journal"):
            if os.path.lexists(leftover):
                os.unlink(leftover)
        shutil.rmtree(tmp_dir, ignore_errors=True)
        raise
    return SampleStats(gen.n_conversations, gen.n_messages, gen.files.count, gen.files.files)


SAMPLE_CONVERSATIONS = 500


def builtin_sample() -> str:
    """The built-in sample archive, made once into the cache folder."""
    from zexport.core.locations import cache_dir

    folder = os.path.join(cache_dir(), "sample")
    path = os.path.join(folder, f"sample-{SAMPLE_CONVERSATIONS}-v{SAMPLE_VERSION}.db")
    if not os.path.exists(path):
        os.makedirs(folder, exist_ok=True)
        try:
            make_sample(path, conversations=SAMPLE_CONVERSATIONS, seed=0)
        except FileExistsError:
            pass  # made concurrently by another run
    return path
