"""Attachment providers' contract: what a provider implements and what it is given.

A provider knows how to turn one attachment row into bytes for one service;
the conversation's ``provider`` column picks it by :attr:`AttachmentProvider.name`.
Providers are registered through the ``zexport_attachment_providers`` hook
(see :mod:`zexport.hookspecs`), built-ins included (:mod:`.builtin`).

Providers never touch credentials or HTTP directly: they get a
:class:`ProviderSession` whose ``get_json``/``get_file`` attach the
provider's credentials only to requests for the credentials' own origin
(the controller's implementation is :class:`zexport.net.session.ScopedSession`).
So a provider (or a hostile ``original_url`` in an archive) cannot send a
secret anywhere else. This module imports no HTTP library, so loading the
plugin registry in a worker stays cheap.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol


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


class ProviderSession(Protocol):
    """A provider's access to the network, with its credentials scoped to their origin."""

    base_url: str | None

    @property
    def has_credentials(self) -> bool:
        """True when the auth file gave this provider something to authenticate with."""
        ...

    def url(self, path_or_url: str) -> str:
        """An absolute URL: ``path_or_url`` itself, or joined to :attr:`base_url`."""
        ...

    async def get_json(self, url: str) -> Any:
        """GET a small JSON document."""
        ...

    async def get_file(self, url: str, ref: AttachmentRef,
                       name_hint: str | None = None) -> Downloaded:
        """GET the file into staging and choose its name."""
        ...


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
        :class:`~zexport.net.limits.DownloadError` through)."""
        raise NotImplementedError
