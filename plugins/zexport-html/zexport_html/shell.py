"""What every page shares: the head (stylesheet, Content-Security-Policy), escaping, times.

Kept apart from the Markdown engine so that the index (written by the
controller's finish step) and zexport's plugin discovery, which imports every
format's package in every run, do not load markdown-it and its plugins.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import html
from datetime import datetime, tzinfo
from importlib.resources import files

CSS = files(__package__).joinpath("style.css").read_text("utf-8")


def escape(text: str) -> str:
    """HTML-escape text for element content and double-quoted attributes."""
    return html.escape(text, quote=True)


def _sha(text: str) -> str:
    return "'sha256-" + base64.b64encode(hashlib.sha256(text.encode()).digest()).decode() + "'"


@functools.lru_cache(maxsize=4)  # the same for every page: hashing the CSS once is enough
def csp(script: str | None) -> str:
    """The page's Content-Security-Policy: its own inline style, ``script`` (by hash) or
    no script at all, local images, nothing else."""
    # 'strict-dynamic': the index's own script (trusted by hash) may add the
    # search shards' <script> elements; nothing parser-inserted runs.
    scripts = f"{_sha(script)} 'strict-dynamic'" if script else "'none'"
    return (f"default-src 'none'; style-src {_sha(CSS)}; script-src {scripts}; "
            "img-src 'self' file: data:; media-src 'self' file:; base-uri 'none'; "
            "form-action 'none'")


def head(title: str, theme: str, script: str | None = None) -> str:
    """A page's doctype and ``<head>``: the stylesheet inline, so it opens offline."""
    cls = f' class="{theme}"' if theme in ("light", "dark") else ""
    return (
        f'<!DOCTYPE html>\n<html lang="en"{cls}>\n<head>\n<meta charset="utf-8">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f'<meta http-equiv="Content-Security-Policy" content="{escape(csp(script))}">\n'
        '<meta name="referrer" content="no-referrer">\n'
        f"<title>{escape(title)}</title>\n<style>{CSS}</style>\n</head>\n"
    )


def time_text(ts: int | None, tz: tzinfo, full: bool = True) -> tuple[str, str]:
    """(machine ISO time, human text) for a Unix time, or ("", "")."""
    if ts is None:
        return "", ""
    try:
        dt = datetime.fromtimestamp(ts, tz)
    except (OverflowError, OSError, ValueError):
        return "", ""
    iso = dt.isoformat()  # YYYY-MM-DDTHH:MM:SS...
    if dt.year < 1000:  # (strftime's %Y has no leading zeros there)
        return iso, dt.strftime("%Y-%m-%d %H:%M" if full else "%Y-%m-%d")
    return iso, f"{iso[:10]} {iso[11:16]}" if full else iso[:10]
