"""The session a provider downloads through: credentials only for their own origin."""

from __future__ import annotations

import mimetypes
import os
from collections.abc import Callable
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote, urlsplit

from zexport.core.naming import sanitize_component
from zexport.net.limits import check_resolvable
from zexport.providers.base import AttachmentRef, Downloaded, ProviderError

if TYPE_CHECKING:
    from zexport.net.auth import Credentials
    from zexport.net.downloader import Downloader, Received


class ScopedSession:
    """A provider's access to the network, with its credentials scoped to their origin."""

    def __init__(self, downloader: Downloader | Callable[[], Downloader],
                 credentials: Credentials | None, base_url: str | None) -> None:
        # The service passes a factory: the downloader (and httpx) is made at the first
        # request. A Downloader itself is still accepted, as before.
        self._downloader: Callable[[], Downloader] = (
            downloader if callable(downloader) else (lambda: downloader))
        self._credentials = credentials
        self.base_url = base_url

    @property
    def has_credentials(self) -> bool:
        """True when the auth file gave this provider something to authenticate with."""
        return self._credentials is not None and self._credentials.has_secrets

    def url(self, path_or_url: str) -> str:
        """An absolute URL: ``path_or_url`` itself, or joined to :attr:`base_url`."""
        if urlsplit(path_or_url).scheme:
            return path_or_url
        if not self.base_url:
            raise ProviderError("relative attachment URL and no base_url configured")
        return self.base_url.rstrip("/") + "/" + path_or_url.lstrip("/")

    async def get_json(self, url: str) -> Any:
        """GET a small JSON document."""
        check_resolvable(url)
        return await self._downloader().get_json(url, self._credentials)

    async def get_file(self, url: str, ref: AttachmentRef,
                       name_hint: str | None = None) -> Downloaded:
        """GET the file into staging and choose its name (see :func:`choose_name`)."""
        check_resolvable(url)
        got = await self._downloader().get_file(url, self._credentials)
        return Downloaded(got.path, choose_name(got, ref, name_hint), got.size)


def _disposition_name(value: str | None) -> str | None:
    if not value:
        return None
    from email.message import Message  # ~10 ms to import: only for a real download

    msg = Message()
    msg["content-disposition"] = value
    name = msg.get_filename()
    return name if isinstance(name, str) and name else None


def choose_name(got: Received, ref: AttachmentRef, hint: str | None = None) -> str:
    """The file name: provider metadata first, sanitized, with an extension from the type.

    Order: ``Content-Disposition``, the provider's hint (e.g. ChatGPT's
    ``file_name``), the archive's ``filename``, the last URL path segment,
    the file id. Only the last path component of any of them is used.
    """
    candidates = [_disposition_name(got.content_disposition), hint, ref.filename,
                  unquote(urlsplit(got.final_url).path.rsplit("/", 1)[-1]),
                  ref.file_id, ref.id]
    name = ""
    for raw in candidates:
        if raw:
            name = sanitize_component(os.path.basename(raw.replace("\\", "/")), 200)
            if name:
                break
    name = name or "attachment"
    ctype = (got.content_type or ref.mime_type or "").split(";")[0].strip().lower()
    if "." not in name[1:] and ctype and ctype != "application/octet-stream":
        ext = mimetypes.guess_extension(ctype)
        if ext:
            name += ext
    return name


