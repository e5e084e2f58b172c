"""Grok's uploaded and generated files: ``prod-mc-asset-server/<id>/content`` in the export.

A response names its files by id only (``file_attachments``); the bytes are
the member ``content`` of a folder named by the id (written with a doubled
slash, ``prod-mc-asset-server//<id>/content``, in real ZIPs). The index maps
ids to members from the member names alone; a member is copied out of a ZIP
the first time a conversation references it (an unpacked folder's file is
used in place), and its type comes from its first bytes, since every asset
is called ``content``.
"""

from __future__ import annotations

import mimetypes
import os
import re

from zexport.sources import SNIFF_BYTES, AttachmentRecord, Bundle, sniff_mime

ASSET = re.compile(r"(?:.*/)?prod-mc-asset-server/+(?P<id>[^/]+)/content")


class AssetIndex:
    """Asset id -> member; ``missing`` collects the ids the export lacks (id -> member)."""

    def __init__(self, bundle: Bundle, files_dir: str, missing: dict[str, str]) -> None:
        self.bundle = bundle
        self.files_dir = files_dir
        self.missing = missing
        self.members: dict[str, str] = {}
        self.copied: dict[str, tuple[str, str | None]] = {}  # id -> (path, mime)
        for name in bundle.names():
            found = ASSET.fullmatch(name)
            if found:
                self.members.setdefault(found.group("id"), name)

    def attachment(self, asset_id: str) -> AttachmentRecord:
        """The attachment row for ``asset_id``: its file, or none (a placeholder) if absent."""
        member = self.members.get(asset_id)
        if member is None:
            self.missing[asset_id] = f"prod-mc-asset-server/{asset_id}/content"
            return AttachmentRecord(key=asset_id, type="file", file_id=asset_id,
                                    filename=asset_id)
        if asset_id not in self.copied:
            mime = sniff_mime(self.bundle.head(member, SNIFF_BYTES))
            path = self.bundle.extract(member, os.path.join(self.files_dir, asset_id))
            self.copied[asset_id] = (path, mime)
        path, mime = self.copied[asset_id]
        ext = (mimetypes.guess_extension(mime) or "") if mime else ""
        return AttachmentRecord(
            key=asset_id, type="image" if mime and mime.startswith("image/") else "file",
            file_id=asset_id, local_path=path, filename=asset_id + ext, mime_type=mime,
            size=self.bundle.size(member))
