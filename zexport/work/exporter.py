"""Exporting one conversation: its folder, its attachments, its rendered file.

This is what a worker does per conversation, kept apart from the worker's
socket loop so it can be read, and tested, on its own. It never raises for a
bad conversation: the outcome says what went wrong, and the run goes on.
"""

from __future__ import annotations

import contextlib
import mimetypes
import os
from collections.abc import Callable, Mapping
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from datetime import tzinfo
from typing import Any

from zexport.core.attachment_files import AttachmentSources, Located, open_checked
from zexport.core.edits import FileKeeper, fd_digest
from zexport.core.layouts import ATTACHMENTS_DIR as ATTACHMENTS_DIR  # re-exported
from zexport.core.layouts import Files, Layout
from zexport.core.naming import sanitize_component, unique_names
from zexport.core.output import UnsafePathError, atomic_copy, atomic_link, ensure_dirs, inside
from zexport.core.runfiles import shard_path, write_shard
from zexport.core.settings import WorkerSettings
from zexport.core.timezones import resolve_tz
from zexport.formats.base import Format, RefusedWrite, RenderContext
from zexport.model import Attachment, Conversation

_FOLDERS = Layout.parse("folder")

# Asks the controller for a missing attachment; returns (local path, None) or (None, reason).
Fetcher = Callable[[Conversation, Attachment], tuple[str | None, str | None]]


@dataclass
class Outcome:
    """What happened to one conversation, as sent back to the controller."""

    id: str
    ok: bool
    title: str = ""
    error: str | None = None
    warnings: list[str] = field(default_factory=list)
    attachments_ok: int = 0
    attachments_failed: list[tuple[str, str]] = field(default_factory=list)
    files: list[tuple[str, str]] = field(default_factory=list)  # (path, hash) to record
    conflicts: list[tuple[str, str]] = field(default_factory=list)  # (path, why) left alone

    def to_wire(self) -> dict[str, Any]:
        """The msgpack-able form (see docs/protocol.md, ``done``): ``id`` and ``ok``, and
        only the fields that say something (an empty list, 0, "" or nil is left out: the
        controller reads a result per conversation, most of them plain)."""
        wire: dict[str, Any] = {"id": self.id, "ok": self.ok}
        if self.title:
            wire["title"] = self.title
        if self.error is not None:
            wire["error"] = self.error
        if self.warnings:
            wire["warnings"] = self.warnings
        if self.attachments_ok:
            wire["attachments_ok"] = self.attachments_ok
        if self.attachments_failed:
            wire["attachments_failed"] = [list(x) for x in self.attachments_failed]
        if self.files:
            wire["files"] = [list(x) for x in self.files]
        if self.conflicts:
            wire["conflicts"] = [list(x) for x in self.conflicts]
        return wire


@dataclass(frozen=True)
class ExportSettings:
    """A worker's settings (``config``) resolved once: the format and its parsed
    options, the time zone and the layout every conversation is exported with."""

    settings: WorkerSettings
    fmt: Format
    options: Mapping[str, Any]
    tz: tzinfo
    layout: Layout = _FOLDERS  # where a conversation's place puts its files (--layout)
    plugin: str = ""  # who provides the format, for error messages: 'plugin "x" (pkg 1.0)'

    @classmethod
    def resolve(cls, settings: WorkerSettings, fmt: Format, plugin: str = "") -> ExportSettings:
        """Parse what ``settings`` holds as text (options, zone, layout) for ``fmt``."""
        return cls(settings, fmt, fmt.parse_options(dict(settings.format_options)),
                   resolve_tz(settings.tz), Layout.parse(settings.layout or "folder"), plugin)

    @property
    def out_dir(self) -> str:
        return self.settings.out

    @property
    def archive_dir(self) -> str:
        return os.path.dirname(self.settings.db)

    def render_context(self, folder: str, file: str, batch: int,
                       keeper: FileKeeper | None) -> RenderContext:
        """What the format's ``render`` is given for one conversation."""
        s = self.settings
        return RenderContext(
            out_dir=s.out, folder=folder, options=self.options, tz=self.tz,
            branches=s.branches, exported_at=s.exported_at, batch=batch,
            format_name=self.fmt.name, keeper=keeper, file=file)


# Wraps plugin code: the worker's render timeout and heartbeats (see watchdog.py).
Guard = Callable[[], AbstractContextManager[None]]


class ConversationExporter:
    """Exports conversations one at a time with fixed settings.

    Records a format emits (``ctx.emit``, or the return value of a format
    without per-conversation files) are kept for the current batch and
    written as one shard by :meth:`flush_records` when the batch ends.
    """

    def __init__(self, settings: ExportSettings, fetch: Fetcher | None = None,
                 guard: Guard | None = None, sources: AttachmentSources | None = None) -> None:
        self.s = settings
        self.fetch = fetch
        # Where attachment files may be copied from (the fetch pipeline shares it).
        self.sources = sources or AttachmentSources(settings.archive_dir, [settings.archive_dir])
        self.guard: Guard = guard or contextlib.nullcontext
        self.current: Conversation | None = None
        self.current_batch = 0
        self.records: list[tuple[str, bytes]] = []

    def _who(self) -> str:
        fmt = f"format {self.s.fmt.name!r}"
        return f"{fmt} of {self.s.plugin}" if self.s.plugin else fmt

    def export(self, conv: Conversation, batch: int = 0,
               known: Mapping[str, str] | None = None) -> Outcome:
        """Export ``conv``; never raises for a problem with the conversation itself.

        ``known``: the hash of what zexport last wrote at each of the
        conversation's paths (from the manifest), so that no other file is replaced.
        """
        outcome = Outcome(id=conv.id, ok=False, title=conv.title, warnings=conv.warnings)
        fmt = self.s.fmt
        ctx: RenderContext | None = None
        keeper = FileKeeper(self.s.out_dir, known or {}, self.s.settings.overwrite_edited,
                            self.s.settings.conflicts_exist)
        try:
            files = self.s.layout.files(conv.folder, fmt.extension)
            folder = inside(self.s.out_dir, files.own_dir)
            main = inside(self.s.out_dir, files.main)
            if fmt.files_per_conversation:
                # The folder of the file (and, in a folder layout, the conversation's own).
                ensure_dirs(self.s.out_dir, files.own_dir if self.s.layout.folders
                            else os.path.dirname(files.main))
                if self.s.settings.attachments != "off":
                    self._attachments(conv, files, outcome, keeper)
            ctx = self.s.render_context(folder, main, batch, keeper)
            self.current, self.current_batch = conv, batch
            with self.guard():
                body = fmt.render(conv, ctx)
            self.current = None
            if ctx.refused:  # refused even if the plugin caught the error and went on
                raise RefusedWrite(ctx.refused[0])
            if body is not None:
                data = body.encode("utf-8") if isinstance(body, str) else body
                if fmt.files_per_conversation:
                    keeper.write(main, data)
                else:
                    ctx.emit(data)  # checked as any record
            self.records.extend((conv.id, r) for r in ctx.records)
            outcome.ok = True
            outcome.files, outcome.conflicts = keeper.files, keeper.conflicts
        except RefusedWrite as exc:
            outcome.error = f"{self._who()} tried to write outside its folder: {exc}"
        except UnsafePathError as exc:
            outcome.error = f"unsafe output path: {exc}"
        except OSError as exc:
            outcome.error = f"write failed: {exc.strerror or exc} ({exc.filename or ''})"
        except Exception as exc:  # a format plugin may raise anything
            outcome.error = f"{self._who()} failed: {type(exc).__name__}: {exc}"
        finally:
            self.current = None
            self.sources.forget(conv.id)
        return outcome

    def flush_records(self, batch: int, order: list[str]) -> str | None:
        """Write the batch's records as its shard (if any), in the batch's conversation
        ``order`` whatever order they were rendered in; return an error text on failure."""
        records, self.records = self.records, []
        if not records:
            return None
        position = {cid: i for i, cid in enumerate(order)}
        records.sort(key=lambda r: position.get(r[0], len(position)))  # stable within one
        try:
            write_shard(shard_path(self.s.out_dir, self.s.fmt.name, batch), records)
        except OSError as exc:
            return f"writing the batch's records failed: {exc.strerror or exc}"
        return None

    def _attachments(self, conv: Conversation, files: Files, outcome: Outcome,
                     keeper: FileKeeper) -> None:
        """Copy (or link) each attachment into the conversation's attachments folder; mark
        the missing ones. ``exported_path`` is the link from the conversation's file."""
        atts = [a for m in conv.messages for a in m.attachments]
        if not atts:
            return
        names = unique_names(_attachment_name(a) for a in atts)
        target_dir = inside(self.s.out_dir, files.attachments_dir)
        made_dir = False
        for att, name in zip(atts, names, strict=True):
            found = self._source(conv, att)
            if found.path is None:
                att.unavailable_reason = found.reason or "unavailable"
                outcome.attachments_failed.append((att.id, att.unavailable_reason))
                continue
            try:
                if not made_dir:
                    ensure_dirs(self.s.out_dir, files.attachments_dir)
                    made_dir = True
                _keep_placed(keeper, found, os.path.join(target_dir, name),
                             self.s.settings.attachments == "link")
            except OSError as exc:
                att.unavailable_reason = f"copy failed: {exc.strerror or exc}"
                outcome.attachments_failed.append((att.id, att.unavailable_reason))
                continue
            att.exported_path = f"{files.attachments_link}/{name}"
            outcome.attachments_ok += 1

    def _source(self, conv: Conversation, att: Attachment) -> Located:
        """Where the attachment's bytes are on this machine, or why there are none
        (decided once per attachment: the fetch pipeline asked the same question)."""
        found = self.sources.locate(conv.id, att)
        if not found.missing:
            return found
        if self.fetch is None:
            return Located(reason="file not on disk (downloads off)")
        path, reason = self.fetch(conv, att)
        if path is None:
            return Located(reason=reason or "download failed")
        return self.sources.accept(path)


def _keep_placed(keeper: FileKeeper, found: Located, target: str, link: bool) -> None:
    """Place the checked file at ``target`` unless what is there is not zexport's
    (:class:`~zexport.core.edits.FileKeeper`); its hash is read from the checked file."""
    fd = open_checked(found)
    try:
        digest = fd_digest(fd)
    finally:
        os.close(fd)
    keeper.place(target, digest, lambda where: _place(found, where, link and where == target),
                 same_as=found.ident if link else None)


def _place(found: Located, target: str, link: bool) -> None:
    """Put the checked file at ``target``: hard-linked when asked and it is the very
    file checked (and not executable), else copied from a descriptor on it."""
    assert found.path is not None
    if link and found.linkable and atomic_link(found.path, target, found.ident):
        return
    fd = open_checked(found)
    try:
        atomic_copy(fd, target, found.mode)
    finally:
        os.close(fd)


def _attachment_name(att: Attachment) -> str:
    """A safe file name for an attachment, with an extension from its type if it has none."""
    raw = att.filename or att.download_name or ""
    name = sanitize_component(os.path.basename(raw.replace("\\", "/")), 200)
    if not name:
        name = sanitize_component(att.id, 200) or "attachment"
    if "." not in name[1:] and att.mime_type:
        ext = mimetypes.guess_extension(att.mime_type.split(";")[0].strip())
        if ext:
            name += ext
    return name
