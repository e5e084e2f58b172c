"""Attachment providers: the plugin interface and the built-in providers.

A provider knows how to turn one attachment row into bytes for one service;
the conversation's ``provider`` column picks it by :attr:`AttachmentProvider.name`.
Providers are registered through the ``zexport_attachment_providers`` hook
(see :mod:`zexport.hookspecs`), built-ins included.

Providers never touch credentials or HTTP directly: they get a
:class:`ProviderSession` whose ``get_json``/``get_file`` attach the
provider's credentials only to requests for the credentials' own origin.
So a provider (or a hostile ``original_url`` in an archive) cannot send a
secret anywhere else. This module imports no HTTP library, so loading the
plugin registry in a worker stays cheap.
"""

from __future__ import annotations

import mimetypes
import os
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, unquote, urlsplit

from ..hookspecs import hookimpl
from ..naming import sanitize_component
from .limits import check_resolvable

if TYPE_CHECKING:
    from collections.abc import Callable

    from .auth import Credentials
    from .downloader import Downloader, Received


class ProviderError(Exception):
    """A provider cannot fetch this attachment; the message is shown to the user."""


@dataclass(frozen=True)
class AttachmentRef:
    """What a worker's ``fetch`` frame says about the attachment (docs/attachments.md)."""

    id: str
    provider: str
    file_id: str | None = None
    original_url: str | None = None
    filename: str | None = None
    mime_type: str | None = None
    message_id: str | None = None
    local_path: str | None = None

    @classmethod
    def from_wire(cls, provider: str, data: dict[str, Any]) -> AttachmentRef:
        """Build from the ``attachment`` map of a ``fetch`` frame (strings or nil only)."""
        def text(key: str) -> str | None:
            value = data.get(key)
            return value if isinstance(value, str) and value else None

        return cls(id=str(data.get("id") or ""), provider=provider,
                   file_id=text("file_id"), original_url=text("original_url"),
                   filename=text("filename"), mime_type=text("mime_type"),
                   message_id=text("message_id"),
                   # kept exactly ("" is not NULL): the archive update matches on it
                   local_path=local if isinstance(local := data.get("local_path"), str)
                   else None)


@dataclass
class Downloaded:
    """A file a provider fetched: the staged path and the name to keep it under."""

    path: str
    name: str
    size: int


class ProviderSession:
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


class AttachmentProvider:
    """Base class of attachment providers (subclass it in a plugin).

    ``name`` matches the conversations' ``provider`` column. Set
    ``needs_credentials`` when downloads cannot work without an ``--auth``
    table; the service then fails them with a clear reason before any
    request is made. ``default_base_url`` is used when the auth table does
    not set ``base_url``; credentials are only ever sent to that origin.
    """

    name: str = ""
    needs_credentials: bool = False
    default_base_url: str | None = None
    description: str = ""

    async def download(self, ref: AttachmentRef, session: ProviderSession) -> Downloaded:
        """Fetch ``ref``'s bytes through ``session`` (raise ProviderError or let
        :class:`~zexport.attachments.limits.DownloadError` through)."""
        raise NotImplementedError


class ChatGPTProvider(AttachmentProvider):
    """ChatGPT: ask the files API for a signed download URL, then fetch it."""

    name = "chatgpt"
    needs_credentials = True
    default_base_url = "https://chatgpt.com"
    description = "ChatGPT files API (auth headers)"

    async def download(self, ref: AttachmentRef, session: ProviderSession) -> Downloaded:
        """GET ``/backend-api/files/download/{file_id}``, then its ``download_url``."""
        if not ref.file_id:
            raise ProviderError("no file_id to ask ChatGPT for")
        meta = await session.get_json(session.url(
            f"/backend-api/files/download/{quote(ref.file_id, safe='')}"
            "?post_id=&inline=false"))
        if not isinstance(meta, dict) or meta.get("status") != "success" or \
                not isinstance(meta.get("download_url"), str):
            status = meta.get("status") if isinstance(meta, dict) else None
            raise ProviderError(f"ChatGPT did not give a download URL (status: {status!r})")
        hint = meta.get("file_name")
        return await session.get_file(session.url(meta["download_url"]), ref,
                                      hint if isinstance(hint, str) else None)


class ClaudeProvider(AttachmentProvider):
    """Claude: GET ``original_url`` with the session cookie."""

    name = "claude"
    needs_credentials = True
    default_base_url = "https://claude.ai"
    description = "Claude (session cookie)"

    async def download(self, ref: AttachmentRef, session: ProviderSession) -> Downloaded:
        """GET the stored URL (relative URLs are joined to the base URL)."""
        if not ref.original_url:
            raise ProviderError("no original_url to fetch")
        return await session.get_file(session.url(ref.original_url), ref)


class PerplexityProvider(AttachmentProvider):
    """Perplexity: ``original_url`` is pre-signed; GET it without credentials."""

    name = "perplexity"
    needs_credentials = False
    default_base_url = None
    description = "Perplexity (pre-signed URLs, no auth)"

    async def download(self, ref: AttachmentRef, session: ProviderSession) -> Downloaded:
        """GET the stored URL."""
        if not ref.original_url:
            raise ProviderError("no original_url to fetch")
        return await session.get_file(session.url(ref.original_url), ref)


@hookimpl
def zexport_attachment_providers() -> list[AttachmentProvider]:
    """Register the built-in providers."""
    return [ChatGPTProvider(), ClaudeProvider(), PerplexityProvider()]
