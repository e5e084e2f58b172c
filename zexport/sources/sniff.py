"""What a file is, from its first bytes: for exports that store files without a name.

Grok's assets are all called ``content`` and ChatGPT's 2026 ones ``<id>.dat``;
the bytes' signature is the only hint of their type (and so of whether an
attachment is an image, and which extension its exported copy gets).
"""

from __future__ import annotations

SNIFF_BYTES = 16  # enough for every signature below
_MAGIC = ((b"\x89PNG", "image/png"), (b"\xff\xd8\xff", "image/jpeg"), (b"GIF8", "image/gif"),
          (b"%PDF", "application/pdf"), (b"RIFF", "audio/wav"))


def sniff_mime(head: bytes) -> str | None:
    """The MIME type the signature at the start of ``head`` names, or None if unknown."""
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "image/webp"
    return next((mime for magic, mime in _MAGIC if head.startswith(magic)), None)
