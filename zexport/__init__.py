"""zexport: fast, parallel, plugin-based export of local AI chat archives.

Public API for plugin authors (plugin API version :data:`PLUGIN_API`):
:data:`hookimpl`, :class:`Format`, :class:`Option`, :class:`RenderContext`,
:class:`RunContext` with its :class:`ConversationEntry` and :class:`Record`,
the attachment provider classes (:class:`AttachmentProvider`,
:class:`AttachmentRef`, :class:`ProviderSession`, :class:`Downloaded`), the model
classes :class:`Conversation`, :class:`Message`, :class:`Attachment`, and a
message's text with its sources at their cuts (:mod:`zexport.textparts`):
:class:`MessageText`, :class:`Source`, :func:`join_parts`,
:func:`markdown_citation`, :func:`markdown_sources`.

The names are imported lazily (PEP 562): ``zexport status`` and
``zexport cancel`` must answer in tens of milliseconds, and importing the
format machinery would cost them more than the round trip itself.
"""

from __future__ import annotations

TYPE_CHECKING = False  # typing's, without importing typing (3 ms of `zexport status`)

__version__ = "0.1.0"

__all__ = [
    "PLUGIN_API",
    "Attachment",
    "AttachmentProvider",
    "AttachmentRef",
    "Conversation",
    "ConversationEntry",
    "Downloaded",
    "Format",
    "Message",
    "MessageText",
    "Option",
    "ProviderSession",
    "Record",
    "RenderContext",
    "RunContext",
    "Source",
    "__version__",
    "hookimpl",
    "join_parts",
    "markdown_citation",
    "markdown_sources",
]

_LAZY = {
    "Format": ".formats.base", "Option": ".formats.base", "RenderContext": ".formats.base",
    "RunContext": ".formats.base", "hookimpl": ".hookspecs", "Attachment": ".model",
    "Conversation": ".model", "Message": ".model", "MessageText": ".textparts",
    "Source": ".textparts", "join_parts": ".textparts", "markdown_citation": ".textparts",
    "markdown_sources": ".textparts", "PLUGIN_API": ".hookspecs",
    "ConversationEntry": ".core.runfiles", "Record": ".core.runfiles",
    "AttachmentProvider": ".providers.base", "AttachmentRef": ".providers.base",
    "ProviderSession": ".providers.base", "Downloaded": ".providers.base",
}

if TYPE_CHECKING:
    from typing import Any

    from zexport.core.runfiles import ConversationEntry, Record
    from zexport.formats.base import Format, Option, RenderContext, RunContext
    from zexport.hookspecs import PLUGIN_API, hookimpl
    from zexport.model import Attachment, Conversation, Message
    from zexport.providers.base import (
        AttachmentProvider,
        AttachmentRef,
        Downloaded,
        ProviderSession,
    )
    from zexport.textparts import (
        MessageText,
        Source,
        join_parts,
        markdown_citation,
        markdown_sources,
    )


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'zexport' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(module, __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
