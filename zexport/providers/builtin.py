"""The built-in attachment providers, registered through the same hook as any plugin's."""

from __future__ import annotations

from urllib.parse import quote

from zexport.hookspecs import hookimpl
from zexport.providers.base import (
    AttachmentProvider,
    AttachmentRef,
    Downloaded,
    ProviderError,
    ProviderSession,
)


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


class StoredURLProvider(AttachmentProvider):
    """A provider whose files are at the attachment's stored ``original_url``."""

    async def download(self, ref: AttachmentRef, session: ProviderSession) -> Downloaded:
        """GET the stored URL (relative URLs are joined to the base URL)."""
        if not ref.original_url:
            raise ProviderError("no original_url to fetch")
        return await session.get_file(session.url(ref.original_url), ref)


class ClaudeProvider(StoredURLProvider):
    """Claude: GET ``original_url`` with the session cookie."""

    name = "claude"
    needs_credentials = True
    default_base_url = "https://claude.ai"
    description = "Claude (session cookie)"


class PerplexityProvider(StoredURLProvider):
    """Perplexity: ``original_url`` is pre-signed; GET it without credentials."""

    name = "perplexity"
    needs_credentials = False
    default_base_url = None
    description = "Perplexity (pre-signed URLs, no auth)"


@hookimpl
def zexport_attachment_providers() -> list[AttachmentProvider]:
    """Register the built-in providers."""
    return [ChatGPTProvider(), ClaudeProvider(), PerplexityProvider()]
