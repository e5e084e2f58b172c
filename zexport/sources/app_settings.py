"""The user's own export defaults, as the app saved them in the archive.

OwnYourChat's export dialog stores its last choices in
``user_preferences.export_settings``, a JSON object ``{format,
includeAttachments, prefixTimestamp, outputPath}`` (BRIEF §3, §4). A user who
exported from the app once expects ``zexport run`` to do the same without
repeating it: the format (``markdown`` or ``json``), the output folder and
the date prefix are taken from there when the command line does not give
them, and the run says so in its first line.

Anything unreadable (no such table or column, NULL, not JSON, a wrong type)
is simply not a setting: the archive itself is checked, with clear errors, by
:func:`zexport.sources.archive.open_archive` right after.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import orjson

#: zexport's own defaults, used when neither the command line nor the app says.
DEFAULT_FORMAT = "markdown"
DEFAULT_OUT = "zexport-out"
DEFAULT_DATE_PREFIX = True

#: The formats the app's dialog offers (both built into zexport).
APP_FORMATS = ("markdown", "json")


@dataclass(frozen=True)
class AppExportSettings:
    """What the app's saved export settings say (``None``: nothing usable)."""

    format: str | None = None
    output_path: str | None = None
    date_prefix: bool | None = None


@dataclass(frozen=True)
class ExportChoice:
    """The run's format, output folder and date prefix, and which came from the app."""

    format: str
    out: str
    date_prefix: bool
    from_app: tuple[str, ...] = ()  # "format json", "output folder /x", "date prefix off"
    out_from_app: bool = False

    def note(self) -> str:
        """The clause the run's first line ends with ("" when the app decided nothing)."""
        if not self.from_app:
            return ""
        return f" (from the app's export settings: {', '.join(self.from_app)})"


def read_export_settings(db_path: str) -> AppExportSettings:
    """Read ``user_preferences.export_settings`` of the archive at ``db_path``, read-only."""
    raw = _read_raw(db_path)
    if not isinstance(raw, (str, bytes)):
        return AppExportSettings()
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return AppExportSettings()
    if not isinstance(data, dict):
        return AppExportSettings()
    fmt = data.get("format")
    out = data.get("outputPath")
    prefix = data.get("prefixTimestamp")
    return AppExportSettings(
        format=fmt if isinstance(fmt, str) and fmt in APP_FORMATS else None,
        output_path=out if isinstance(out, str) and out.strip() else None,
        date_prefix=prefix if isinstance(prefix, bool) else None,
    )


def choose(db_path: str, format_name: str | None, out: str | None,
           date_prefix: bool | None) -> ExportChoice:
    """The command line's choices, else the app's saved ones, else zexport's defaults.

    The archive is read only when the command line leaves something open.
    """
    app = (read_export_settings(db_path) if None in (format_name, out, date_prefix)
           else AppExportSettings())
    from_app: list[str] = []
    if format_name is None and app.format is not None:
        from_app.append(f"format {app.format}")
    if out is None and app.output_path is not None:
        from_app.append(f"output folder {app.output_path}")
    if date_prefix is None and app.date_prefix is not None:
        from_app.append(f"date prefix {'on' if app.date_prefix else 'off'}")
    return ExportChoice(
        format=_first(format_name, app.format, DEFAULT_FORMAT),
        out=_first(out, app.output_path, DEFAULT_OUT),
        date_prefix=_first(date_prefix, app.date_prefix, DEFAULT_DATE_PREFIX),
        from_app=tuple(from_app),
        out_from_app=out is None and app.output_path is not None,
    )


def _first(*values: Any) -> Any:
    return next(v for v in values if v is not None)


def _read_raw(db_path: str) -> object:
    """The column's value, or None when the archive has none to give."""
    if not os.path.isfile(db_path):
        return None
    import apsw

    try:
        conn = apsw.Connection(db_path, flags=apsw.SQLITE_OPEN_READONLY)
    except apsw.Error:
        return None
    try:
        conn.setbusytimeout(2_000)
        rows = conn.execute(
            "SELECT export_settings FROM user_preferences"
            " ORDER BY id IS NOT 'default', rowid LIMIT 1").fetchall()
    except apsw.Error:  # not a database, an older schema, locked for too long
        return None
    finally:
        conn.close()
    return rows[0][0] if rows else None
