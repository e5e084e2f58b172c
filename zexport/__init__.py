"""zexport: fast, parallel, plugin-based export of local AI chat archives.

Public API for plugin authors: :data:`hookimpl`, :class:`Format`,
:class:`Option`, :class:`RenderContext`, :class:`RunContext` and the model
classes :class:`Conversation`, :class:`Message`, :class:`Attachment`.
"""

from __future__ import annotations

from .formats.base import Format, Option, RenderContext, RunContext
from .hookspecs import hookimpl
from .model import Attachment, Conversation, Message

__version__ = "0.1.0"

__all__ = [
    "Attachment",
    "Conversation",
    "Format",
    "Message",
    "Option",
    "RenderContext",
    "RunContext",
    "__version__",
    "hookimpl",
]
