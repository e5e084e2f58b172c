"""The format contract: what a format plugin implements and what it is given.

A format subclasses :class:`Format` and is returned from the
``zexport_formats`` hook. zexport calls :meth:`Format.render` in a worker
process once per conversation; :meth:`Format.start` and :meth:`Format.finish`
run once in the controller, before the first and after the last
conversation, for formats that write a whole-export file or an index.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, tzinfo
from typing import Any, ClassVar

from ..errors import UsageError
from ..model import Conversation
from ..output import atomic_write, ensure_dir, inside


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


@dataclass
class RenderContext:
    """What :meth:`Format.render` is given besides the conversation.

    ``folder`` is the absolute path of the conversation's folder (it exists);
    write extra files with :meth:`write`, which refuses anything outside it.
    """

    out_dir: str
    folder: str
    options: Mapping[str, Any]
    tz: tzinfo
    branches: str
    exported_at: str
    batch: int = 0

    def write(self, relative: str, data: bytes | str) -> str:
        """Atomically write a file inside the conversation folder; return its path."""
        target = inside(self.folder, relative)
        parent = os.path.dirname(target)
        if parent != self.folder:
            os.makedirs(parent, exist_ok=True)
        atomic_write(target, data.encode() if isinstance(data, str) else data)
        return target

    def time(self, ts: int | None) -> str | None:
        """A Unix time as ISO 8601 with its offset in the run's zone (None stays None)."""
        return iso_time(ts, self.tz)


@dataclass
class RunContext:
    """What :meth:`Format.start` and :meth:`Format.finish` are given (in the controller)."""

    out_dir: str
    options: Mapping[str, Any]
    tz: tzinfo
    branches: str
    exported_at: str
    folders: dict[str, str] = field(default_factory=dict)

    def write(self, relative: str, data: bytes | str) -> str:
        """Atomically write a file inside the output folder; return its path."""
        target = inside(self.out_dir, relative)
        parent = os.path.dirname(target)
        if parent != self.out_dir:
            os.makedirs(parent, exist_ok=True)
            ensure_dir(parent)
        atomic_write(target, data.encode() if isinstance(data, str) else data)
        return target


class Format:
    """Base class of an output format.

    Class attributes describe it: ``name`` (selected by ``--format``),
    ``extension`` (of ``conversation.<extension>``), ``version`` (bump it when
    output changes so incremental runs re-render), ``description`` and
    ``options``.
    """

    name: ClassVar[str] = ""
    extension: ClassVar[str] = ""
    version: ClassVar[str] = "1"
    description: ClassVar[str] = ""
    options: ClassVar[dict[str, Option]] = {}

    def render(self, conversation: Conversation, ctx: RenderContext) -> bytes | str | None:
        """Render one conversation.

        Return the body of ``conversation.<extension>`` (zexport writes it
        atomically), or None when the format wrote its files itself through
        ``ctx.write`` or writes nothing per conversation.
        """
        raise NotImplementedError

    def start(self, run: RunContext) -> None:
        """Called once in the controller before any conversation is rendered."""

    def finish(self, run: RunContext) -> None:
        """Called once in the controller after every conversation was rendered."""

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


def iso_time(ts: int | None, tz: tzinfo) -> str | None:
    """Unix seconds as ISO 8601 with offset, or None."""
    if ts is None:
        return None
    try:
        return datetime.fromtimestamp(ts, tz).isoformat()
    except (OverflowError, OSError, ValueError):
        return None
