"""A worker's settings: the part of a run's spec that goes over the wire, in ``config``.

Defined once, here, for both ends: the controller derives it from the run's
spec (:meth:`zexport.run.setup.RunSetup.worker_settings`) and sends
:meth:`WorkerSettings.to_wire`; the worker reads it back with
:meth:`WorkerSettings.from_wire` after :func:`zexport.protocol.decode` has
checked every key (``protocol.CONFIG``; tests keep the two key sets equal).
The worker's exporter and each conversation's ``RenderContext`` take their
fields from it (:mod:`zexport.work.exporter`). docs/protocol.md, ``config``,
says what each key means.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from typing import Any


@dataclass(frozen=True)
class WorkerSettings:
    """What every worker of a run is told (docs/protocol.md, ``config`` keys)."""

    db: str  # the archive, absolute
    out: str  # the output folder, absolute
    format: str
    tz: str  # as given (--tz): each process resolves it
    branches: str  # active | all
    exported_at: str  # ISO 8601, the same for every conversation of the run
    format_options: Mapping[str, str] = field(default_factory=dict)  # as given (-o)
    attachments: str = "copy"  # copy | link | off
    layout: str = "folder"  # --layout's spec (zexport.core.layouts)
    overwrite_edited: bool = False
    conflicts_exist: bool = False  # .zexport/conflicts exists: tidy what is resolved
    render_timeout: float = 0.0  # seconds per conversation, 0 for none
    # The side index parts (zexport.sources.archive.index_parts), by part number: each
    # built by a worker told ``index`` before the first batch is sent.
    index_parts: tuple[str, ...] = ()
    downloads: bool = False  # missing attachments may be asked of the controller
    refused_providers: Mapping[str, str] = field(default_factory=dict)
    attachment_roots: tuple[str, ...] = ()
    app_attachments: tuple[str, ...] = ()
    attachment_cache: str | None = None
    hb_interval: float = 0.5
    hb_timeout: float = 5.0
    controller_pid: int = 0
    log: str | None = None  # the worker's log in the output folder

    def for_worker(self, log: str) -> WorkerSettings:
        """The same settings for one worker, with its own log."""
        return replace(self, log=log)

    def to_wire(self) -> dict[str, Any]:
        """The ``config`` map (msgpack has no tuples; an absent log is no key)."""
        wire: dict[str, Any] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, tuple):
                value = list(value)
            elif isinstance(value, Mapping):
                value = dict(value)
            if value is not None or f.name != "log":
                wire[f.name] = value
        return wire

    @classmethod
    def from_wire(cls, config: Mapping[str, Any]) -> WorkerSettings:
        """Settings from a ``config`` map that :func:`zexport.protocol.decode` accepted:
        absent keys take their defaults, unknown keys are ignored."""
        known = {f.name for f in fields(cls)}
        values: dict[str, Any] = {k: tuple(v) if isinstance(v, list) else v
                                  for k, v in config.items() if k in known}
        return cls(**values)
