"""A run's spec resolved: its format, time zone, layout, output folder and downloads.

Resolved once, before anything is created on disk, so that a wrong format,
zone, layout or output path is refused without a trace, and so that planning,
the dry run, the workers' settings and the report all see the same values.
"""

from __future__ import annotations

import os
import sys
import time
from dataclasses import dataclass, field
from datetime import datetime, tzinfo
from typing import TYPE_CHECKING, Any

from zexport import __version__
from zexport.core.attachment_files import AttachmentSources
from zexport.core.edits import CONFLICTS_DIR
from zexport.core.layouts import Layout
from zexport.core.locations import cache_dir
from zexport.core.settings import WorkerSettings
from zexport.core.statedir import MANIFEST_NAME, STATE_DIR
from zexport.core.timezones import resolve_tz
from zexport.errors import OutputError, UsageError
from zexport.net.auth import auth_file_warning, load_auth
from zexport.net.cache import AttachmentCache
from zexport.plugins import load_registry
from zexport.run.manifest import check_layout, options_fingerprint, tz_identity
from zexport.run.spec import RunSpec
from zexport.sources.archive import open_archive, part_path

if TYPE_CHECKING:
    import apsw

    from zexport.formats.base import Format
    from zexport.net.auth import Credentials
    from zexport.providers.base import AttachmentProvider


def checked_out(shown: str) -> str:
    """The absolute output folder, refused before anything is created on disk."""
    if not shown.strip():
        raise UsageError("--out is empty (an unset variable?); give the output folder")
    out = os.path.abspath(shown)
    if os.path.exists(out) and not os.path.isdir(out):
        raise OutputError(f"output path exists and is not a folder: {shown}")
    if os.path.islink(out):
        raise OutputError(f"output path is a symlink; give the real folder: {shown}")
    parent = os.path.dirname(out)
    if not os.path.isdir(parent):
        raise OutputError(f"parent folder of the output does not exist: {parent}")
    return out


@dataclass
class RunSetup:
    """What a :class:`RunSpec` resolves to (format, zone, layout, credentials)."""

    spec: RunSpec
    fmt: Format
    plugin: str  # who provides the format, for messages: 'plugin "x" (pkg 1.0)'
    providers: dict[str, AttachmentProvider]
    credentials: dict[str, Credentials]  # read here, in the controller, and kept here
    auth_warning: str | None
    format_options: dict[str, Any]
    tz: tzinfo
    layout: Layout
    out: str
    started: float
    exported_at: str
    _refused: dict[str, str] | None = field(default=None, repr=False)

    @classmethod
    def resolve(cls, spec: RunSpec) -> RunSetup:
        """Load the plugins and check every option; raise before touching the disk."""
        registry = load_registry()
        fmt = registry.get_format(spec.format)
        credentials = load_auth(spec.downloads.auth_file)
        warning = auth_file_warning(spec.downloads.auth_file)
        options = fmt.parse_options(dict(spec.format_options))
        tz = resolve_tz(spec.tz)
        layout = Layout.parse(spec.layout, dated=spec.date_prefix)
        started = time.time()
        return cls(
            spec=spec, fmt=fmt, plugin=registry.format_plugin[fmt.name].label,
            providers=registry.providers, credentials=credentials, auth_warning=warning,
            format_options=options, tz=tz, layout=layout, out="", started=started,
            exported_at=datetime.fromtimestamp(int(started), tz).isoformat())

    @classmethod
    def prepare(cls, spec: RunSpec) -> tuple[RunSetup, apsw.Connection]:
        """The resolved spec and the open archive, checked in the order errors are told:
        plugins and options, the archive, then the output folder."""
        setup = cls.resolve(spec)
        conn = open_archive(spec.db)
        try:
            setup.check_output()
        except BaseException:
            conn.close()
            raise
        return setup, conn

    def check_output(self) -> None:
        """The output folder, checked (after the archive: its errors come first)."""
        self.out = checked_out(self.spec.out)
        # Before anything is created: one output folder holds one layout.
        check_layout(os.path.join(self.state_dir, MANIFEST_NAME), self.layout, self.spec.out)
        if self.auth_warning:  # on stderr even with -q: a credential is exposed
            sys.stderr.write(f"zexport: warning: {self.auth_warning}\n")

    @property
    def state_dir(self) -> str:
        return os.path.join(self.out, STATE_DIR)

    @property
    def db(self) -> str:
        return os.path.abspath(self.spec.db)

    @property
    def renderer(self) -> str:
        """Who renders, for the manifest: a new version renders everything again."""
        return f"zexport {__version__}; {self.fmt.name} {self.fmt.version}"

    @property
    def index_parts(self) -> int:
        """How many parts the side indexes are cut into: one per worker, so each
        builds one while the controller plans."""
        return max(1, self.spec.workers)

    def worker_log(self, wid: int) -> str:
        return os.path.join(self.state_dir, f"worker-{wid}.log")

    def options_fingerprint(self) -> str:
        """A digest of the options that decide what a conversation's files hold."""
        spec = self.spec
        return options_fingerprint({
            "format": self.fmt.name, "format_version": self.fmt.version,
            "format_options": self.format_options, "branches": spec.branches,
            "tz": [spec.tz, tz_identity(self.tz)], "attachments": spec.attachments,
        })

    def attachment_cache(self) -> AttachmentCache:
        dl = self.spec.downloads
        return AttachmentCache(dl.cache_dir or os.path.join(cache_dir(), "attachments"))

    def attachment_sources(self) -> AttachmentSources:
        """The folders attachment files may be copied from, for this run's archive."""
        return AttachmentSources.for_archive(
            os.path.dirname(self.db), self.attachment_cache().root, self.spec.attachment_roots)

    def attachment_context(self) -> str:
        """A digest of what decides whether missing attachments can be had this run:
        conversations exported with one missing are rendered again only when it changes
        (zexport.run.manifest). Credentials enter it only as part of one digest."""
        spec = self.spec
        enabled = spec.downloads.enabled
        if not spec.downloads_on:
            return options_fingerprint([spec.attachments, enabled])
        cache = self.attachment_cache()
        return options_fingerprint([
            spec.attachments, enabled, cache.root,
            {name: cache.version(name) for name in sorted(self.providers)},
            options_fingerprint({name: [c.base_url, c.headers, c.cookies]
                                 for name, c in self.credentials.items()}),
        ])

    def refused_providers(self) -> dict[str, str]:
        """Providers whose downloads workers refuse themselves (computed once per run)."""
        if self._refused is None:
            self._refused = {}
            if self.spec.downloads_on:
                from zexport.net.service import refused_providers

                self._refused = refused_providers(self.providers, self.credentials,
                                                  self.attachment_cache())
        return self._refused

    def worker_settings(self, run_dir: str) -> WorkerSettings:
        """What every worker is told (``config``); credentials never go in it.

        The side index parts are named before they exist: workers build them
        (``index``) before the first batch is sent (:meth:`index_parts`).
        """
        spec = self.spec
        sources = self.attachment_sources()
        return WorkerSettings(
            db=self.db, out=self.out, format=self.fmt.name, tz=spec.tz,
            branches=spec.branches, exported_at=self.exported_at,
            format_options=dict(spec.format_options), attachments=spec.attachments,
            layout=self.layout.spec, overwrite_edited=spec.overwrite_edited,
            conflicts_exist=os.path.isdir(os.path.join(self.state_dir, CONFLICTS_DIR)),
            render_timeout=spec.render_timeout,
            index_parts=tuple(part_path(run_dir, i) for i in range(self.index_parts)),
            downloads=spec.downloads_on,
            refused_providers=self.refused_providers(), attachment_roots=tuple(sources.roots),
            app_attachments=tuple(sources.app_dirs), attachment_cache=sources.cache,
            hb_interval=spec.hb_interval, hb_timeout=spec.hb_timeout / 2,
            controller_pid=os.getpid())

    def registration(self, control: str) -> dict[str, Any]:
        """What ``zexport status``/``cancel`` find in the runtime folder (docs/protocol.md)."""
        from zexport import protocol

        return {
            "protocol": protocol.VERSION, "pid": os.getpid(), "control": control,
            "out": self.out, "db": self.db, "format": self.fmt.name,
            "workers": self.spec.workers, "started_at": self.started, "zexport": __version__,
        }
