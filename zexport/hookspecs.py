"""The plugin hooks: zexport's public extension contract (see docs/plugins.md).

A plugin is a module (usually a package installed with an entry point in the
``zexport`` group) that implements one or more of these hooks with
``@zexport.hookimpl``. Built-in formats register through the very same hooks.

Hooks are *registration* hooks: they take no arguments and return objects;
zexport then calls those objects' methods where and when it needs them
(``Format.render`` in the workers, ``Format.start``/``Format.finish`` in the
controller). Keeping hooks argument-free is deliberate: the contract a
plugin must match is the :class:`~zexport.Format` class, which is typed and
can grow optional methods without breaking old plugins, whereas a pluggy
hook whose arguments change breaks every implementation.

Every hook here is listed, with its signature, in ``docs/plugins.md``; a
test fails when one is missing there.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Final

import pluggy

if TYPE_CHECKING:
    from zexport.formats.base import Format
    from zexport.providers.base import AttachmentProvider
    from zexport.sources.base import Source

PROJECT: Final = "zexport"

# The plugin API's version, ``(major, minor)``. A plugin may say which major version
# it was built for with a module attribute ``ZEXPORT_PLUGIN_API = 1`` (absent: 1);
# one built for another major version is named and skipped, not half-run. Minor
# versions only add (optional methods, new fields), so they never refuse a plugin.
# 1.1: zexport.sources.sniff_keys and sniff_mime, and the optional Source.explain_refusal.
PLUGIN_API: Final = (1, 1)

# pluggy's markers are typed (overloads returning the decorated function's
# own type), so ``mypy --strict`` checks implementations as written.
hookspec: Final = pluggy.HookspecMarker(PROJECT)
hookimpl: Final = pluggy.HookimplMarker(PROJECT)


@hookspec
def zexport_formats() -> list[Format]:  # type: ignore[empty-body]
    """Return the output formats this plugin provides.

    Each item is an instance of a :class:`zexport.Format` subclass with a
    unique ``name`` (what ``--format`` selects: lowercase letters, digits,
    ``-``, ``_``). Called once per process (the controller and each worker),
    so keep it cheap: do heavy set-up in ``Format.start`` or lazily in
    ``render``. Results of all plugins are collected (not ``firstresult``);
    a name already taken by an earlier plugin makes the later plugin fail
    to load, with that reason.
    """


@hookspec
def zexport_attachment_providers() -> list[AttachmentProvider]:  # type: ignore[empty-body]
    """Return the attachment providers this plugin provides.

    Each item is an instance of a :class:`zexport.providers.base.AttachmentProvider`
    subclass whose ``name`` equals the archive's ``conversations.provider``
    value it serves (built-ins: ``chatgpt``, ``claude``, ``perplexity``).
    Called in the controller only: providers are the one place that talks
    to the network, and credentials never leave the controller.
    """


@hookspec
def zexport_sources() -> list[Source]:  # type: ignore[empty-body]
    """Return the input sources this plugin provides (hook version 1).

    Each item is an instance of a :class:`zexport.sources.Source` subclass
    with a unique ``name`` (what ``--source`` selects). Called in the
    controller only, before the run: a source recognises an input by its
    content and converts it into a private archive in the app's schema,
    which the workers then read like any archive. Built-in sources
    (``ownyourchat``, ``chatgpt``, ``claude``) are tried first; the first-party
    ``grok`` source is a plugin (``plugins/zexport-grok``).
    """
