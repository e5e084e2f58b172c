"""The format contract: what a format plugin implements and what it is given.

A format subclasses :class:`Format` and is returned from the
``zexport_formats`` hook. zexport calls :meth:`Format.render` in a worker
process once per conversation; :meth:`Format.start` and :meth:`Format.finish`
run once in the controller, before the first and after the last
conversation, for formats that write a whole-export file or an index.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import tzinfo
from typing import Any, BinaryIO, ClassVar
from urllib.parse import quote

from zexport.core.edits import FileKeeper, file_unless_same
from zexport.core.output import UnsafePathError, atomic_write, ensure_dir, ensure_dirs, inside
from zexport.core.records import iter_kept
from zexport.core.runfiles import ConversationEntry, Record, iter_plan, iter_records
from zexport.core.timezones import iso_time as iso_time  # re-exported for format plugins
from zexport.errors import UsageError
from zexport.model import Conversation


def _parse_bool(text: str) -> bool:
    value = text.strip().lower()
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off"):
        return False
    raise ValueError(f"expected true or false, got {text!r}")


@dataclass(frozen=True)
class Option:
    """One ``-o key=value`` option a format accepts.

    ``parse`` turns the text into a value and raises ValueError to reject it;
    ``choices``, when given, restricts the text.
    """

    help: str
    default: Any = None
    parse: Callable[[str], Any] = str
    choices: tuple[str, ...] = ()

    @staticmethod
    def flag(help: str, default: bool = False) -> Option:
        """A true/false option."""
        return Option(help=help, default=default, parse=_parse_bool)


class RefusedWrite(UnsafePathError):
    """A plugin asked to write outside the folder it may write in."""


class EmitError(TypeError):
    """A plugin emitted a record that is neither bytes nor str."""


@dataclass
class RenderContext:
    """What :meth:`Format.render` is given besides the conversation.

    ``folder`` is the absolute path of the conversation's own folder; write
    extra files with :meth:`write`, which refuses anything outside it. A
    refused write fails the conversation even if the plugin catches the error,
    so a plugin cannot half-succeed by swallowing it. ``file`` is the absolute
    path of the conversation's file (what :meth:`Format.render` returns is
    written there); its folder exists when the format has
    ``files_per_conversation``. In the default layout ``file`` is
    ``<folder>/conversation.<extension>``; with ``--layout note`` it is
    ``<title>.<extension>`` and ``folder`` is ``attachments/<title>/`` beside
    it, made when first written to. Link from the file to other files of the
    export with :meth:`link`.
    """

    out_dir: str
    folder: str
    options: Mapping[str, Any]
    tz: tzinfo
    branches: str
    exported_at: str
    batch: int = 0
    format_name: str = ""
    records: list[bytes] = field(default_factory=list)
    refused: list[str] = field(default_factory=list)
    # Writes only over what zexport wrote (zexport.core.edits); None: plain atomic writes.
    keeper: FileKeeper | None = field(default=None, repr=False)
    file: str = ""

    def link(self, relative: str) -> str:
        """A URL-encoded link from the conversation's file to ``relative`` (a path
        inside the output folder, ``/``-separated): ``../index.html`` from a
        folder's ``conversation.html``, ``index.html`` from a note beside it."""
        here = os.path.dirname(self.file) if self.file else self.folder
        target = os.path.join(self.out_dir, *relative.split("/"))
        return quote(os.path.relpath(target, here).replace(os.sep, "/"))

    def write(self, relative: str, data: bytes | str) -> str:
        """Atomically write a file inside the conversation folder; return its path."""
        try:
            target = inside(self.folder, relative)
        except UnsafePathError as exc:
            self.refused.append(str(exc))
            raise RefusedWrite(f"{exc} (a format writes only inside its conversation's "
                               "folder)") from None
        parent = os.path.dirname(target)
        if parent != self.folder or not os.path.isdir(parent):
            below = os.path.relpath(parent, self.out_dir)
            if below.startswith(".."):  # a context of no export (a plugin's own tests)
                os.makedirs(parent, exist_ok=True)
            else:  # one level at a time from the output folder: a symlink is refused
                ensure_dirs(self.out_dir, below)
        body = data.encode() if isinstance(data, str) else data
        if self.keeper is not None:
            self.keeper.write(target, body)
        else:
            atomic_write(target, body)
        return target

    def emit(self, data: bytes | str) -> None:
        """Hand zexport one record for this conversation, for the finish step.

        Records are stored by the worker (one shard file per batch, written
        atomically) and come back in :meth:`RunContext.records` in export
        order, whatever the number of workers: this is how a format writes
        one file for the whole export without workers racing on it.

        Checked here, at the call: anything but bytes or str raises
        :class:`EmitError`, which fails this conversation (naming the plugin
        and the type), instead of the worker dying later on a value that
        cannot be stored, with the innocent conversations of its batch.
        """
        if isinstance(data, str):
            data = data.encode()
        elif not isinstance(data, bytes):
            raise EmitError(f"ctx.emit() takes bytes or str, not {type(data).__name__}")
        self.records.append(bytes(data))

    def time(self, ts: int | None) -> str | None:
        """A Unix time as ISO 8601 with its offset in the run's zone (None stays None)."""
        return iso_time(ts, self.tz)


@dataclass
class RunContext:
    """What :meth:`Format.start` and :meth:`Format.finish` are given (in the controller).

    :meth:`conversations` and :meth:`records` read small on-disk lists one
    item at a time, so an index of 100k conversations costs the controller
    no more memory than one of ten.
    """

    out_dir: str
    options: Mapping[str, Any]
    tz: tzinfo
    branches: str
    exported_at: str
    format_name: str = ""
    total: int = 0
    plan_path: str = ""
    failures: Mapping[str, str] = field(default_factory=dict)
    shard_paths: Sequence[str] = ()
    record_store: str = ""  # kept records (zexport.core.records), for formats that can skip

    def conversations(self) -> Iterator[ConversationEntry]:
        """Every selected conversation in export order (failed ones have ``error`` set)."""
        return iter_plan(self.plan_path, self.failures)

    def records(self) -> Iterator[Record]:
        """Every record emitted by :meth:`RenderContext.emit` (or returned by a format
        without per-conversation files) for an exported conversation, in export order:
        those rendered by this run and those an incremental run skipped (their records
        from the run that rendered them). Not for use in ``start``."""
        if self.record_store:
            return iter_kept(self.record_store, self.plan_path, self.failures)
        return iter_records(self.shard_paths)

    def write(self, relative: str, data: bytes | str) -> str:
        """Atomically write a file inside the output folder; return its path."""
        with self.open(relative) as fh:
            fh.write(data.encode() if isinstance(data, str) else data)
        return inside(self.out_dir, relative)

    @contextlib.contextmanager
    def open(self, relative: str) -> Iterator[BinaryIO]:
        """A binary file inside the output folder, written atomically on success.

        For big outputs (a JSONL of every conversation): write in pieces; the
        file appears under its name only when the ``with`` block ends without
        an exception, and not at all otherwise.
        """
        target = inside(self.out_dir, relative)
        parent = os.path.dirname(target)
        if parent != self.out_dir:
            os.makedirs(parent, exist_ok=True)
            ensure_dir(parent)
        with file_unless_same(target) as fh:  # an unchanged index is not rewritten
            yield fh


class Format:
    """Base class of an output format.

    Class attributes describe it: ``name`` (selected by ``--format``),
    ``extension`` (of ``conversation.<extension>``), ``version`` (bump it when
    output changes so incremental runs re-render), ``description`` and
    ``options``.

    ``reserved_names`` are the top-level names :meth:`finish` writes (``index.html``):
    no conversation folder is given one of them, whatever its title.

    ``files_per_conversation`` is False for a format that writes only
    whole-export files (JSONL): zexport then creates no conversation folders
    and copies no attachments, and what :meth:`render` returns is stored as
    the conversation's record for :meth:`finish` instead of being written to
    ``conversation.<extension>``.

    One instance lives in each process: the controller's runs ``start`` and
    ``finish``, each worker's runs ``render``. They share nothing but files,
    so keep no state between ``render`` calls that ``finish`` needs: emit a
    record instead.
    """

    name: ClassVar[str] = ""
    extension: ClassVar[str] = ""
    version: ClassVar[str] = "1"
    description: ClassVar[str] = ""
    options: ClassVar[dict[str, Option]] = {}
    files_per_conversation: ClassVar[bool] = True
    reserved_names: ClassVar[tuple[str, ...]] = ()

    def render(self, conversation: Conversation, ctx: RenderContext) -> bytes | str | None:
        """Render one conversation (in a worker process, under a timeout).

        Return the body of ``conversation.<extension>`` (zexport writes it
        atomically), or None when the format wrote its files itself through
        ``ctx.write`` or writes nothing per conversation. Raising fails this
        conversation only; the run report names the format and the error.
        """
        raise NotImplementedError

    def start(self, run: RunContext) -> None:
        """Called once in the controller after planning, before any conversation is rendered.

        ``run.conversations()`` already lists the selection. Raising stops
        the run before any work is done.
        """

    def finish(self, run: RunContext) -> None:
        """Called once in the controller after every conversation was handled.

        Not called when the run is cancelled. Write the index or the
        whole-export file here with ``run.write``/``run.open``; raising marks
        the run as partly failed.
        """

    def parse_options(self, raw: Mapping[str, str]) -> dict[str, Any]:
        """Validate ``-o key=value`` pairs; unknown keys and bad values raise UsageError."""
        values = {key: opt.default for key, opt in self.options.items()}
        for key, text in raw.items():
            opt = self.options.get(key)
            if opt is None:
                known = ", ".join(sorted(self.options)) or "none"
                raise UsageError(
                    f"format {self.name!r} has no option {key!r} (options: {known})"
                )
            if opt.choices and text not in opt.choices:
                raise UsageError(
                    f"option {key!r} of format {self.name!r} must be one of "
                    f"{', '.join(opt.choices)}, not {text!r}"
                )
            try:
                values[key] = opt.parse(text)
            except (TypeError, ValueError) as exc:
                raise UsageError(f"option {key!r} of format {self.name!r}: {exc}") from None
        return values
