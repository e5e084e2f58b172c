"""The built-in input sources, registered through the same hook as any plugin's."""

from __future__ import annotations

from ..hookspecs import hookimpl
from .base import Source
from .chatgpt import ChatGPTSource
from .claude import ClaudeSource
from .ownyourchat import OwnYourChatSource


@hookimpl
def zexport_sources() -> list[Source]:
    return [OwnYourChatSource(), ChatGPTSource(), ClaudeSource()]
