"""Grok (xAI) data exports as a zexport input source: ``zexport run --input grok-export.zip``.

The export is ``ttl/30d/export_data/<uuid>/prod-grok-backend.json`` (every
conversation) beside ``prod-mc-asset-server/<id>/content`` (the files),
given as the ZIP xAI sends, its unpacked folder or the JSON file alone.
Built only on zexport's public source API (``zexport.sources``, see
docs/sources.md), as any third-party source would be.
"""

from __future__ import annotations

import posixpath

from zexport import hookimpl
from zexport.sources import Bundle, Conversion, Source, sniff_keys
from zexport_grok.assets import AssetIndex
from zexport_grok.convert import convert_conversation, is_conversation

ZEXPORT_PLUGIN_API = 1
BACKEND = "prod-grok-backend.json"
_SIDE_FILES = {"prod-mc-auth-mgmt-api.json": "account file",
               "prod-mc-billing.json": "billing file"}
_SHOWN_MISSING = 20


def _named(bundle: Bundle, base: str) -> list[str]:
    return sorted(n for n in bundle.names() if posixpath.basename(n) == base)


def backend_files(bundle: Bundle) -> list[str]:
    """The members that may hold conversations: ``prod-grok-backend.json`` wherever it
    is, else a lone file of any name (the JSON given alone, perhaps renamed)."""
    named = _named(bundle, BACKEND)
    if named:
        return named
    names = bundle.names()
    return names if len(names) == 1 else []


class GrokSource(Source):
    name = "grok"
    description = "Grok data export (ZIP, its folder, or prod-grok-backend.json)"
    version = "1"

    def recognise(self, bundle: Bundle) -> bool:
        for name in backend_files(bundle)[:1]:
            with bundle.open(name) as f:
                keys = sniff_keys(f)
            if posixpath.basename(name) == BACKEND:
                # Named so, and empty or broken from its first byte: read, to say why.
                return not keys or bool(keys & {"conversations", "responses"})
            return {"responses", "response"} <= keys
        return False

    def explain_refusal(self, bundle: Bundle) -> str | None:
        names = bundle.names()
        what = _SIDE_FILES.get(posixpath.basename(names[0])) if len(names) == 1 else None
        return (f"this is a Grok export's {what}, which holds no conversations; give the"
                f" export's ZIP or folder, or its {BACKEND}" if what else None)

    def convert(self, bundle: Bundle, into: Conversion) -> None:
        assets = AssetIndex(bundle, into.files_dir, into.missing)
        for name in backend_files(bundle):
            for n, _key, entry in into.read_json(bundle, name, is_conversation):
                try:
                    into.add(convert_conversation(entry, assets))
                except (ValueError, TypeError, KeyError, AttributeError) as exc:
                    meta = entry.get("conversation") if isinstance(entry, dict) else None
                    title = meta.get("title") if isinstance(meta, dict) else None
                    into.failed(f"{name} conversation #{n + 1}"
                                + (f" ({title!r})" if title else ""), f"cannot read: {exc}")
        if into.missing:
            shown = ", ".join(sorted(into.missing.values())[:_SHOWN_MISSING])
            more = len(into.missing) - _SHOWN_MISSING
            into.notes.append(f"{len(into.missing)} files referenced by conversations are not"
                              f" in the export: {shown}"
                              + (f" and {more} more" if more > 0 else ""))


@hookimpl
def zexport_sources() -> list[Source]:
    return [GrokSource()]
