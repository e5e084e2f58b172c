"""Corpora nobody here wrote, for tests of what zexport renders.

The CommonMark spec examples ship in markdown-it-py's source distribution
(``tests/test_cmark_spec/commonmark.json``), not in its wheel: the first use
downloads that sdist (the version installed) with pip into a cache folder and
keeps the JSON there. ``ZEXPORT_COMMONMARK_JSON`` points at a copy instead.
"""

from __future__ import annotations

import functools
import json
import os
import subprocess
import sys
import tarfile
import tempfile
from importlib.metadata import version
from pathlib import Path
from typing import Any

SPEC_MEMBER = "tests/test_cmark_spec/commonmark.json"


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
APP_FIXTURES = SHARED / "fixtures" / "app"
EXPORT_FIXTURES = SHARED / "fixtures" / "exports"


def _cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "zexport-tests"


@functools.cache
def commonmark_examples() -> list[dict[str, Any]]:
    """The spec's examples: ``markdown``, ``html``, ``example`` (number), ``section``."""
    given = os.environ.get("ZEXPORT_COMMONMARK_JSON")
    if given:
        return list(json.loads(Path(given).read_text(encoding="utf-8")))
    ver = version("markdown-it-py")
    cached = _cache_dir() / f"commonmark-{ver}.json"
    if not cached.exists():
        cached.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory() as tmp:
            subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--no-deps",
                            "--no-binary", ":all:", "-d", tmp, f"markdown-it-py=={ver}"],
                           check=True, timeout=300)
            (sdist,) = Path(tmp).glob("markdown_it_py-*.tar.gz")
            with tarfile.open(sdist) as tar:
                member = tar.extractfile(f"markdown_it_py-{ver}/{SPEC_MEMBER}")
                assert member is not None, f"no {SPEC_MEMBER} in {sdist.name}"
                data = member.read()
        part = cached.with_suffix(".part")
        part.write_bytes(data)
        part.replace(cached)
    return list(json.loads(cached.read_text(encoding="utf-8")))
