"""Corpora nobody here wrote, for tests of what zexport renders, and where they are.

The CommonMark spec examples come from markdown-it-py's source distribution
(its wheel does not ship them), kept in ``tests/data/`` with their source and
licence; the app's fixtures and the export fixtures live in ``shared/``.
"""

from __future__ import annotations

import functools
import json
import os
from pathlib import Path
from typing import Any

SPEC_FILE = Path(__file__).parent / "data" / "commonmark_spec_0.31.2.json"


def _shared() -> Path:
    """The project's ``shared/`` folder: beside the checkout (as CI lays it), or
    ``ZEXPORT_SHARED``, or the developers' ``/work/shared``."""
    given = os.environ.get("ZEXPORT_SHARED")
    candidates = [Path(given)] if given else []
    candidates += [Path(__file__).resolve().parents[2] / "shared", Path("/work/shared")]
    for path in candidates:
        if (path / "fixtures").is_dir():
            return path
    raise FileNotFoundError("no shared/ folder with fixtures: set ZEXPORT_SHARED")


SHARED = _shared()
# The app's own archives, kept in the repository (tests/fixtures/app, copies of
# shared/fixtures/app) so that no test depends on where shared/ is.
APP_FIXTURES = Path(__file__).parent / "fixtures" / "app"
EXPORT_FIXTURES = SHARED / "fixtures" / "exports"


def _cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "zexport-tests"


@functools.cache
def commonmark_examples() -> list[dict[str, Any]]:
    """The spec's examples: ``markdown``, ``html``, ``example`` (number), ``section``."""
    data = json.loads(SPEC_FILE.read_text(encoding="utf-8"))
    return list(data["examples"])
