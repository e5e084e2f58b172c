"""The plugin hooks: zexport's public extension contract (see docs/plugins.md).

A plugin is a module (usually a package installed with an entry point in the
``zexport`` group) that implements one or more of these hooks with
``@zexport.hookimpl``. Built-in formats register through the very same hooks.
Hooks are *registration* hooks: they return objects; zexport then calls
those objects' methods where and when it needs them (formats in the workers,
``start``/``finish`` in the controller).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pluggy

if TYPE_CHECKING:
    from .attachments.providers import AttachmentProvider
    from .formats.base import Format

PROJECT = "zexport"

hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


@hookspec
def zexport_formats() -> list[Format]:  # type: ignore[empty-body]
    """Return the output formats this plugin provides.

    Each item is an instance of a :class:`zexport.Format` subclass with a
    unique ``name`` (what ``--format`` selects). Called once per process.
    """


@hookspec
def zexport_attachment_providers() -> list[AttachmentProvider]:  # type: ignore[empty-body]
    """Return the attachment providers this plugin provides.

    Each item is an instance of a :class:`zexport.attachments.providers.AttachmentProvider`
    subclass whose ``name`` equals the archive's ``conversations.provider``
    value it serves (built-ins: ``chatgpt``, ``claude``, ``perplexity``).
    Called in the controller only: providers are the one place that talks
    to the network, and credentials never leave the controller.
    """
