"""From ``--input PATH`` (and ``--source``) to the archive the pipeline reads.

Recognition is by content: each source, in registration order, looks at the
input's members and the first keys of its JSON. A damaged ZIP, an input no
source recognises, or an export that breaks off before its first
conversation are refused in one sentence before anything is created in the
output folder; JSON that breaks off later costs only what follows the break.
"""

from __future__ import annotations

import os
import zipfile
import zlib
from dataclasses import dataclass, field

from zexport.errors import ArchiveError, UsageError
from zexport.sources.base import Source
from zexport.sources.bundle import Bundle, open_bundle
from zexport.sources.cache import NothingConverted, converted
from zexport.sources.jsonstream import JSONBroken

# Exports read by first-party source plugins, by a member only they have: when the plugin
# is not installed, the refusal says which to install instead of "not an export".
PLUGIN_INPUTS = {"prod-grok-backend.json": ("Grok", "grok", "zexport-grok")}


@dataclass
class PreparedInput:
    """The archive to export, which source made it, notes and errors for the report.

    ``errors`` are what could not be converted (a conversation that does not
    parse, JSON that breaks off): the rest is exported, and the run fails
    partly (exit status 1), as for a conversation that cannot be exported.
    """

    db: str
    source: str
    notes: list[str] = field(default_factory=list)
    converted: bool = False
    errors: list[str] = field(default_factory=list)


def _pick(bundle: Bundle, path: str, sources: dict[str, Source]) -> Source:
    for source in sources.values():
        try:
            if source.recognise(bundle):
                return source
        except (zipfile.BadZipFile, zlib.error, EOFError) as exc:
            raise ArchiveError(f"the ZIP is damaged or truncated ({exc}): {path}") from None
        except Exception:  # a third-party source's bug must not hide the others
            continue
    for source in sources.values():
        try:
            what = source.explain_refusal(bundle)
        except Exception:  # as above: a third-party source's bug must not hide the refusal
            continue
        if what:
            raise ArchiveError(f"{what}: {path}")
    names = ", ".join(sources)
    for member, (provider, source_name, package) in PLUGIN_INPUTS.items():
        if source_name not in sources and any(
                n.rsplit("/", 1)[-1] == member for n in bundle.names()):
            raise ArchiveError(f"this looks like a {provider} export ({member}), which the"
                               f" {source_name!r} source plugin reads: install it from zexport's"
                               f" repository (pip install ./plugins/{package}): {path}")
    raise ArchiveError(f"not an export or archive any source recognises ({names}): {path}")


def prepare_input(path: str, source_name: str | None, sources: dict[str, Source],
                  cache_root: str, processes: int = 1) -> PreparedInput:
    """Recognise (or force) the source of ``path`` and return its archive.

    ``processes``: how many processes a conversion may use (a sharded export's
    shards are converted side by side).
    """
    if source_name is not None and source_name not in sources:
        raise UsageError(f"unknown source {source_name!r} (available: {', '.join(sources)})")
    bundle = open_bundle(path)
    try:
        source = sources[source_name] if source_name else _pick(bundle, path, sources)
        own = source.archive(bundle)
        if own is not None:
            return PreparedInput(own, source.name)
        try:
            done = converted(source, bundle, cache_root, processes)
        except (JSONBroken, NothingConverted) as exc:
            raise ArchiveError(f"cannot read {path} as a {source.name} export: {exc}") from None
        except (zipfile.BadZipFile, zlib.error, EOFError) as exc:
            raise ArchiveError(f"the ZIP is damaged or truncated ({exc}): {path}") from None
        except OSError as exc:
            raise ArchiveError(f"cannot convert {path}: {exc}") from None
        where = f"{source.name} export {os.path.abspath(path)}"
        # A lone JSON file is its own only member: its name is said once, in ``where``.
        member = os.path.basename(path) + ": " if os.path.isfile(path) and not \
            zipfile.is_zipfile(path) else None
        return PreparedInput(done.db, source.name,
                             [f"{where}: {_unprefixed(n, member)}" for n in done.notes],
                             done.fresh,
                             [f"{where}: {_unprefixed(e, member)}" for e in done.errors])
    finally:
        bundle.close()


def _unprefixed(text: str, prefix: str | None) -> str:
    return text.removeprefix(prefix) if prefix else text
