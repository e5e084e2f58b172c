"""What ``zexport run`` was asked to do: one frozen value, built by the CLI.

The controller plans from it (:mod:`zexport.run.planning`), resolves it
once (:class:`zexport.run.setup.RunSetup`) and derives the workers'
settings from it (:class:`zexport.core.settings.WorkerSettings`): no
option is spelled again between click and the worker. Frozen, so no part of
the run can change what another part was told.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from zexport.net.options import DownloadOptions
from zexport.sources.archive import Selection


def env_seconds(name: str, default: float) -> float:
    """A positive number of seconds from the environment (test and tuning knobs)."""
    try:
        value = float(os.environ.get(name, ""))
    except ValueError:
        return default
    return value if value > 0 else default


@dataclass(frozen=True)
class RunSpec:
    """Everything ``zexport run`` was asked to do."""

    db: str
    out: str
    format: str = "markdown"
    format_options: Mapping[str, str] = field(default_factory=dict)
    workers: int = 2
    selection: Selection = field(default_factory=Selection)
    branches: str = "active"
    tz: str = "local"
    date_prefix: bool = True  # folder names start with the creation day
    attachments: str = "copy"  # copy | link | off
    attachment_roots: tuple[str, ...] = ()  # --attachment-root: more folders to copy from
    batch_size: int | None = None
    # ZEXPORT_HB_INTERVAL / ZEXPORT_HB_TIMEOUT: tests shorten them to provoke faults fast.
    hb_interval: float = field(default_factory=lambda: env_seconds("ZEXPORT_HB_INTERVAL", 0.5))
    hb_timeout: float = field(default_factory=lambda: env_seconds("ZEXPORT_HB_TIMEOUT", 10.0))
    force: bool = False
    render_timeout: float = 60.0  # per conversation, in the worker; 0 = none
    layout: str = "folder"  # --layout: folder, note or a template (zexport.core.layouts)
    downloads: DownloadOptions = field(default_factory=DownloadOptions)
    notes: tuple[str, ...] = ()  # for the report: what reading the input found (sources)
    input_errors: tuple[str, ...] = ()  # what could not be read from the input (exit 1)
    overwrite_edited: bool = False  # replace files that are not what zexport wrote
    retry_attachments: bool = False  # render again every conversation missing an attachment
    strict: bool = False  # attachment problems and conflicts make the exit status 1

    @property
    def downloads_on(self) -> bool:
        """Whether missing attachments are asked of the providers this run."""
        return self.attachments != "off" and self.downloads.enabled

    def public(self) -> dict[str, Any]:
        """The options as recorded in the report (no secrets live here)."""
        sel = self.selection
        return {
            "db": self.db, "out": self.out, "format": self.format,
            "format_options": dict(self.format_options), "workers": self.workers,
            "providers": list(sel.providers), "since": sel.since, "until": sel.until,
            "ids": list(sel.ids), "title": sel.title, "branches": self.branches, "tz": self.tz,
            "date_prefix": self.date_prefix, "attachments": self.attachments,
            "attachment_roots": list(self.attachment_roots),
            "render_timeout": self.render_timeout, "layout": self.layout,
            "overwrite_edited": self.overwrite_edited,
            "retry_attachments": self.retry_attachments, "strict": self.strict,
            **self.downloads.public(),
        }
