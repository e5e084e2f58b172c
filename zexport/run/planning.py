"""Planning a run: every selected conversation listed, named, checked against the
last run, and the rest cut into batches. A function of the resolved spec, so the
real run and ``--dry-run`` plan the same way (and tests can plan without a controller).

Everything per conversation lives in the on-disk :class:`~zexport.run.plan.Plan`;
what the controller keeps in memory is one small entry per batch.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass

import apsw

from zexport.core.runfiles import PlanWriter
from zexport.formats.base import Format
from zexport.run.batches import cut
from zexport.run.checkpoints import checked, checkpoint
from zexport.run.manifest import Resume, source_fingerprint
from zexport.run.plan import Plan
from zexport.run.report import RunReport
from zexport.run.setup import RunSetup
from zexport.run.spec import env_seconds
from zexport.sources.archive import (
    ConversationHead,
    list_conversations,
    unaddressable_conversations,
)

# Batches: at most this many conversations, and messages beyond the first one; a
# conversation of LONG_CONVERSATION messages or more is exported alone, first. Each
# batch costs the controller about a millisecond (its frames and wakeups, its lease,
# its rows) and a worker about two, whatever its size: at 64 conversations that was a
# quarter of the controller's CPU on 10,000. BATCH_MESSAGES bounds a worker's memory.
BATCH_CONVERSATIONS = 256
BATCH_MESSAGES = 4000
# Towards the end, no batch holds more than 1/(this x workers) of what is left (see
# batches.cut): the last batches are small, so no worker finishes a long one alone.
TAPER_PER_WORKER = 2
LONG_CONVERSATION = 2000


@dataclass
class Planned:
    """What planning decided, besides the plan file itself."""

    resume: Resume  # what a re-run skips, and the manifest the run records into
    total: int  # conversations selected, unexportable rows included
    done: int  # of which already settled: unchanged, or failed at once
    batches: list[tuple[int, int]]  # [first, end) positions in the plan's to-do list


def has_run_steps(fmt: Format) -> bool:
    """Whether a format overrides ``start`` or ``finish`` (the plan file is for them)."""
    return type(fmt).start is not Format.start or type(fmt).finish is not Format.finish


def _fingerprint(head: ConversationHead) -> str:
    return source_fingerprint(head.title, head.provider, head.created_at, head.updated_at,
                              head.message_count, head.current_node_id)


def plan_run(setup: RunSetup, conn: apsw.Connection, plan: Plan, report: RunReport,
             stop: Callable[[], bool], manifest_dir: str, plan_file: str | None = None,
             dry_run: bool = False) -> Planned:
    """List and name every selected conversation into ``plan``, decide what a re-run
    may skip, and cut the rest into batches.

    ``stop`` is checked every few thousand rows (:mod:`zexport.run.checkpoints`):
    a cancel needs no full plan. ``plan_file``: where the format's start and finish
    steps read the plan (None: it has none). ``dry_run`` moves no folder; the
    manifest is read from ``manifest_dir`` (a copy, for a dry run). What the report
    must say (skipped, unexportable rows, moves, folders left alone) goes into it.
    """
    spec, fmt, layout = setup.spec, setup.fmt, setup.layout
    # ZEXPORT_TEST_PLAN_DELAY (seconds, test-only): a plan as slow as a huge archive's.
    for _ in checked(range(int(env_seconds("ZEXPORT_TEST_PLAN_DELAY", 0.0) * 100)), stop,
                     every=1):
        time.sleep(0.01)
    rejected: list[tuple[str, str]] = []  # ids that are not valid UTF-8
    ext = fmt.extension
    total = plan.add(
        checked(list_conversations(conn, spec.selection, rejected), stop),
        setup.tz, fingerprint=_fingerprint, layout=layout, extension=ext,
        reserved=fmt.reserved_names)
    checkpoint(stop)
    plan.assign_folders(fmt.reserved_names, layout, ext)
    checkpoint(stop)
    if plan_file is not None:
        writer = PlanWriter(plan_file)
        try:
            for cid, title, provider, created, updated, count, folder, _ in checked(
                    plan.rows(), stop):
                writer.add(cid, title, provider, created, updated, count, folder,
                           layout.files(folder, ext).main)
        finally:
            writer.close()
    checkpoint(stop)
    # A format that gathers records for one whole-export file needs every
    # conversation rendered each run: skipping would leave holes in it.
    resume = Resume(
        manifest_dir, setup.out, ext, setup.options_fingerprint(), setup.renderer,
        spec.force or not fmt.files_per_conversation,
        attachment_context=setup.attachment_context(),
        retry_attachments=spec.retry_attachments, overwrite_edited=spec.overwrite_edited,
        layout=layout)
    try:
        report.notes.extend(resume.manifest.notes)
        resume.select(plan, dry_run=dry_run)
        # Rows whose id is NULL, a BLOB or not UTF-8: selected, never exportable (nothing
        # can address them), each a failure in the report instead of a stopped run.
        rejected += unaddressable_conversations(conn, spec.selection)
    except BaseException:
        resume.manifest.close()
        raise
    todo = plan.todo
    report.skipped = total - todo
    for quoted, title in rejected:
        report.failure(quoted, "", f"the conversation row's id ({quoted}) is not"
                       f" UTF-8 text: it cannot be exported (title {title!r})")
    if resume.moved:
        one = resume.moved == 1
        what = (("folder" if one else "folders") if layout.folders
                else "note (with its attachments)" if one else "notes (with their attachments)")
        whose = "a conversation whose title" if one else "conversations whose titles"
        report.notes.append(f"moved {resume.moved} {what} of {whose} changed")
    for cid, path, reason in resume.kept_folders:
        report.conflict(cid, path, reason, None)
    batches: list[tuple[int, int]] = []
    if not dry_run:
        workers = max(1, spec.workers)
        size = spec.batch_size or max(1, min(BATCH_CONVERSATIONS, todo // (workers * 8) or 1))
        batches = [(first, end) for first, end, _ in cut(
            plan.todo_sizes(), size, BATCH_MESSAGES, LONG_CONVERSATION,
            taper=0 if spec.batch_size else TAPER_PER_WORKER * workers)]
    return Planned(resume, total + len(rejected), total - todo + len(rejected), batches)


def manifest_copy(state_dir: str, into: str) -> str:
    """A copy of the output folder's manifest in ``into`` (a dry run changes nothing)."""
    import shutil

    from zexport.core.statedir import MANIFEST_NAME

    state = os.path.join(into, "state")
    os.mkdir(state)
    for suffix in ("", "-wal"):
        src = os.path.join(state_dir, MANIFEST_NAME + suffix)
        if os.path.isfile(src) and not os.path.islink(src):
            shutil.copyfile(src, os.path.join(state, MANIFEST_NAME + suffix))
    return state
