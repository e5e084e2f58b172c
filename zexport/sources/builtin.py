"""The built-in input sources, registered through the same hook as any plugin's."""

from __future__ import annotations

from zexport.hookspecs import hookimpl
from zexport.sources.base import Source
from zexport.sources.chatgpt import ChatGPTSource
from zexport.sources.claude import ClaudeSource
from zexport.sources.ownyourchat import OwnYourChatSource


@hookimpl
def zexport_sources() -> list[Source]:
    return [OwnYourChatSource(), ChatGPTSource(), ClaudeSource()]
