"""zexport's exception hierarchy.

::

    ZexportError                 base; the CLI turns it into one clear line
    ├── UsageError               bad options or arguments (exit 2)
    ├── ArchiveError             --db missing, not SQLite, or not an OwnYourChat archive (exit 2)
    ├── OutputError              --out unusable, or held by another running export (exit 2)
    ├── PluginError              a plugin failed to load or does not match the hook spec
    ├── ProtocolError            a frame on a socket is malformed, oversized or of another version
    └── ControlError             status/cancel: no run, or its controller did not answer (exit 1)

Library code raises these; only ``cli.py`` maps them to exit statuses, all of
which are the one :class:`ExitStatus`.
"""

from __future__ import annotations

import enum


class ExitStatus(enum.IntEnum):
    """Every exit status of the ``zexport`` command (README, "Exit status")."""

    OK = 0  # everything exported (attachment warnings and edit conflicts included)
    FAILED = 1  # some conversations failed (the rest exported); status/cancel: no run
    USAGE = 2  # bad options, archive or output folder: nothing was created
    REFUSED = 3  # status/cancel: the controller refused the request
    CANCELLED = 130  # cancel, Ctrl-C, SIGTERM or SIGHUP


class ZexportError(Exception):
    """Base class: an error zexport explains to the user in one line."""

    exit_code: int = ExitStatus.USAGE


class UsageError(ZexportError):
    """The options or arguments given cannot be honoured."""


class ArchiveError(ZexportError):
    """The archive path is missing, not SQLite, or lacks the OwnYourChat tables."""


class OutputError(ZexportError):
    """The output folder cannot be used (not a folder, not writable, or locked by a run)."""


class PluginError(ZexportError):
    """A plugin could not be loaded, or does not implement the hooks as specified."""


class ProtocolError(ZexportError):
    """A frame could not be decoded: garbage, truncated, oversized or a foreign version."""


class ControlError(ZexportError):
    """``zexport status``/``cancel`` could not reach a run (none running, or no answer)."""

    exit_code = ExitStatus.FAILED
