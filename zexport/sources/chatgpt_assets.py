"""Finding a ChatGPT asset pointer's file in the export, and copying out only those used.

Pointers (``sediment://file_…``, ``file-service://file-…``) name a file id.
2026 exports hold ``<id>.dat`` at the root, named by the optional
``conversation_asset_file_names.json``; older ones hold ``file-<id>-<name>``
at the root, ``dalle-generations/file-<id>…`` and ``user-<id>/file_<id>…``.
The index maps each file id to its member once (names only, no bytes); a
member is copied to the cache the first time a conversation references it.
"""

from __future__ import annotations

import mimetypes
import os
import re
from dataclasses import dataclass
from typing import Any

import orjson

from zexport.sources.bundle import Bundle
from zexport.sources.sniff import SNIFF_BYTES, sniff_mime

NAME_MAP = "conversation_asset_file_names.json"
_ID = re.compile(r"(file[-_][A-Za-z0-9]+)")


@dataclass(slots=True)
class Asset:
    """Where a file id's bytes are (``path``), or None, and what the export calls it."""

    file_id: str
    path: str | None
    name: str | None
    mime_type: str | None
    member: str | None


def file_id_of(pointer: str) -> str:
    """A pointer without its scheme (and any fragment): the file id."""
    rest = pointer.split("://", 1)[-1]
    return rest.split("#", 1)[0].split("/", 1)[0]


class AssetIndex:
    """File id -> member of the export, built from the member names alone."""

    def __init__(self, bundle: Bundle, files_dir: str,
                 missing: dict[str, str] | None = None) -> None:
        self.bundle = bundle
        self.files_dir = files_dir
        self.members: dict[str, str] = {}
        self.names: dict[str, str] = {}
        self.extracted: dict[str, str] = {}
        # file id -> what the export was expected to hold
        self.missing: dict[str, str] = {} if missing is None else missing
        priority: dict[str, int] = {}
        for name in bundle.names():
            base = name.rsplit("/", 1)[-1]
            if base.endswith((".json", ".html")):
                continue
            if base.endswith(".dat") and "/" not in name:
                key, rank = base[:-4], 0
            else:
                m = _ID.match(base)
                if not m:
                    continue
                key, rank = m.group(1), 1 if "/" not in name else 2
            if rank < priority.get(key, 9):
                priority[key] = rank
                self.members[key] = name
        if bundle.has(NAME_MAP):
            try:
                mapping = orjson.loads(bundle.open(NAME_MAP).read())
            except (orjson.JSONDecodeError, OSError):
                mapping = {}
            if isinstance(mapping, dict):
                for dat, friendly in mapping.items():
                    if isinstance(dat, str) and isinstance(friendly, str):
                        self.names[dat.removesuffix(".dat")] = friendly

    def resolve(self, pointer: str, hint: dict[str, Any] | None = None) -> Asset:
        """The asset a pointer (or bare file id) names; ``hint``: its metadata.attachments row."""
        fid = file_id_of(pointer)
        hint = hint or {}
        friendly = self.names.get(fid)
        name = _s(hint.get("name")) or (os.path.basename(friendly) if friendly else None)
        if name and "." not in name and friendly and "." in os.path.basename(friendly):
            name = os.path.basename(friendly)
        member = self.members.get(fid)
        mime = _s(hint.get("mime_type")) or (mimetypes.guess_type(name)[0] if name else None)
        if member is None:
            self.missing[fid] = f"{fid}.dat" + (f" ({friendly})" if friendly else "")
            return Asset(fid, None, name or friendly or fid, mime, None)
        path = self.extracted.get(member)
        if path is None:
            safe = member.replace("/", "__")
            path = self.extracted[member] = self.bundle.extract(
                member, os.path.join(self.files_dir, safe))
        if name is None:
            base = member.rsplit("/", 1)[-1]
            name = base[:-4] if base.endswith(".dat") else base
        if mime is None:
            mime = mimetypes.guess_type(member)[0] if not member.endswith(".dat") else None
        if mime is None:
            mime = _sniff(path)
        if mime and "." not in name:
            ext = mimetypes.guess_extension(mime)
            name += ext or ""
        return Asset(fid, path, name, mime, member)


def _s(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def _sniff(path: str) -> str | None:
    try:
        with open(path, "rb") as f:
            return sniff_mime(f.read(SNIFF_BYTES))
    except OSError:
        return None
