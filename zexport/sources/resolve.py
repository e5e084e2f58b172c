"""From ``--input PATH`` (and ``--source``) to the archive the pipeline reads.

Recognition is by content: each source, in registration order, looks at the
input's members and the first keys of its JSON. A damaged ZIP, an input no
source recognises, or JSON that is cut off are refused in one sentence
before anything is created in the output folder.
"""

from __future__ import annotations

import os
import zipfile
import zlib
from dataclasses import dataclass, field

from zexport.errors import ArchiveError, UsageError
from zexport.sources.base import Source
from zexport.sources.bundle import Bundle, open_bundle
from zexport.sources.cache import converted
from zexport.sources.jsonstream import JSONBroken


@dataclass
class PreparedInput:
    """The archive to export, which source made it, and notes for the report."""

    db: str
    source: str
    notes: list[str] = field(default_factory=list)
    converted: bool = False


def _pick(bundle: Bundle, path: str, sources: dict[str, Source]) -> Source:
    for source in sources.values():
        try:
            if source.recognise(bundle):
                return source
        except (zipfile.BadZipFile, zlib.error, EOFError) as exc:
            raise ArchiveError(f"the ZIP is damaged or truncated ({exc}): {path}") from None
        except Exception:  # a third-party source's bug must not hide the others
            continue
    names = ", ".join(sources)
    raise ArchiveError(f"not an export or archive any source recognises ({names}): {path}")


def prepare_input(path: str, source_name: str | None, sources: dict[str, Source],
                  cache_root: str) -> PreparedInput:
    """Recognise (or force) the source of ``path`` and return its archive."""
    if source_name is not None and source_name not in sources:
        raise UsageError(f"unknown source {source_name!r} (available: {', '.join(sources)})")
    bundle = open_bundle(path)
    try:
        source = sources[source_name] if source_name else _pick(bundle, path, sources)
        own = source.archive(bundle)
        if own is not None:
            return PreparedInput(own, source.name)
        try:
            db, notes, fresh = converted(source, bundle, cache_root)
        except JSONBroken as exc:
            raise ArchiveError(f"cannot read {path} as a {source.name} export: {exc}") from None
        except (zipfile.BadZipFile, zlib.error, EOFError) as exc:
            raise ArchiveError(f"the ZIP is damaged or truncated ({exc}): {path}") from None
        except OSError as exc:
            raise ArchiveError(f"cannot convert {path}: {exc}") from None
        notes = [f"{source.name} export {os.path.abspath(path)}: {n}" for n in notes]
        return PreparedInput(db, source.name, notes, fresh)
    finally:
        bundle.close()
