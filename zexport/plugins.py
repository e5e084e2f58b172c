"""Finding and loading plugins, one at a time, so one broken plugin harms nothing else.

Sources, in order: the built-in modules (:data:`BUILTIN_PLUGINS`), modules named
in the ``ZEXPORT_PLUGINS`` environment variable (comma-separated import paths,
handy while developing a plugin), then every entry point in the ``zexport``
group. Each is imported, registered and asked for its formats and attachment
providers separately;
a failure is recorded as a :class:`PluginInfo` with the reason and the
plugin is left out. ``ZEXPORT_STRICT_PLUGINS=1`` turns failures into errors.

"Does not match the spec" covers: a ``@hookimpl`` whose arguments the spec
does not have (pluggy's ``PluginValidationError``), a ``@hookimpl`` for a
hook that does not exist (``check_pending``), an *unmarked* function named
like a hook that does not exist (a typo such as ``zexport_format`` would
otherwise be ignored in silence), and a hook returning something other than
named :class:`Format` objects.
"""

from __future__ import annotations

import difflib
import functools
import importlib
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import ModuleType
from typing import TYPE_CHECKING, Any, TypeVar

import pluggy

from zexport import hookspecs
from zexport.errors import PluginError, UsageError
from zexport.formats.base import Format

if TYPE_CHECKING:
    from importlib.metadata import EntryPoint

    from zexport.providers.base import AttachmentProvider
    from zexport.sources.base import Source

BUILTIN_FORMAT_PLUGINS = ("zexport.formats.markdown", "zexport.formats.json_format")
BUILTIN_PLUGINS = (*BUILTIN_FORMAT_PLUGINS, "zexport.providers.builtin",
                   "zexport.sources.builtin")
T = TypeVar("T")
ENTRY_POINT_GROUP = "zexport"
# What BUILTIN_PLUGINS provide (tests check): a worker told it exports one of these
# loads the built-ins alone, skipping the scan of installed packages' metadata.
BUILTIN_FORMATS = ("markdown", "json")
FORMAT_NAME = re.compile(r"[a-z0-9][a-z0-9_-]{0,39}")


@dataclass
class PluginInfo:
    """One plugin: where it came from, what it provides, or why it failed."""

    name: str
    package: str
    version: str
    formats: list[str] = field(default_factory=list)
    providers: list[str] = field(default_factory=list)
    sources: list[str] = field(default_factory=list)
    error: str | None = None

    @property
    def label(self) -> str:
        """How reports name it: ``plugin "html" (zexport-html 0.1.0)``."""
        source = f"{self.package} {self.version}".strip()
        return f'plugin "{self.name}" ({source})' if source else f'plugin "{self.name}"'


@dataclass
class Registry:
    """Every format that loaded, and every plugin, working or broken."""

    formats: dict[str, Format] = field(default_factory=dict)
    format_plugin: dict[str, PluginInfo] = field(default_factory=dict)
    plugins: list[PluginInfo] = field(default_factory=list)
    providers: dict[str, AttachmentProvider] = field(default_factory=dict)
    sources: dict[str, Source] = field(default_factory=dict)

    @property
    def broken(self) -> list[PluginInfo]:
        """Plugins that failed to load, with their reasons."""
        return [p for p in self.plugins if p.error]

    def get_format(self, name: str) -> Format:
        """The format called ``name``, or a UsageError listing the available ones.

        When a plugin that failed to load looks like the one that provides it
        (same name, ``zexport-<name>`` package, module ``.<name>`` or
        ``zexport_<name>``, as README's development recipe names one), the error
        says why it failed instead of only "unknown format".
        """
        try:
            return self.formats[name]
        except KeyError:
            known = ", ".join(sorted(self.formats)) or "none"
            for info in self.broken:
                module = info.name.rsplit(".", 1)[-1]
                if name in (info.name, module, module.removeprefix("zexport_"), info.package,
                            info.package.removeprefix("zexport-")):
                    raise UsageError(
                        f"format {name!r} is not available: {info.label} failed to load:"
                        f" {info.error} (available: {known})") from None
            broken = ""
            if self.broken:
                broken = (f"; {len(self.broken)} plugin(s) failed to load: "
                          + ", ".join(info.label for info in self.broken)
                          + " (see `zexport formats`)")
            raise UsageError(f"unknown format {name!r} (available: {known}){broken}") from None


def _plugin_manager() -> pluggy.PluginManager:
    pm = pluggy.PluginManager(hookspecs.PROJECT)
    pm.add_hookspecs(hookspecs)
    return pm


def _strict() -> bool:
    return os.environ.get("ZEXPORT_STRICT_PLUGINS", "") not in ("", "0")


def _describe(exc: BaseException) -> str:
    """The exception as one line (pluggy's validation errors span several)."""
    text = "; ".join(line.strip() for line in str(exc).strip().splitlines() if line.strip())
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _builtin_name(path: str) -> str:
    """A built-in plugin's name: its module's, or its package's for ``<package>.builtin``."""
    package, _, module = path.rpartition(".")
    return package.rpartition(".")[2] if module == "builtin" else module


def hook_names() -> list[str]:
    """Every hook of the contract, from the spec module itself."""
    return sorted(n for n in dir(hookspecs) if n.startswith(f"{hookspecs.PROJECT}_"))


def _check_api_version(module: object) -> None:
    """Refuse a plugin built for another major version of the plugin API."""
    wanted = getattr(module, "ZEXPORT_PLUGIN_API", hookspecs.PLUGIN_API[0])
    if type(wanted) is not int or wanted != hookspecs.PLUGIN_API[0]:
        major, minor = hookspecs.PLUGIN_API
        raise PluginError(f"built for plugin API {wanted!r}; this zexport has plugin API"
                          f" {major}.{minor} (ZEXPORT_PLUGIN_API = {major})")


def _check_unknown_hooks(module: object) -> None:
    """Refuse a function named like a hook that does not exist (a typo is not silent)."""
    known = hook_names()
    for attr in dir(module):
        if attr.startswith(f"{hookspecs.PROJECT}_") and attr not in known and callable(
                getattr(module, attr, None)):
            close = difflib.get_close_matches(attr, known, n=1)
            hint = f"; did you mean {close[0]}?" if close else ""
            raise PluginError(f"unknown hook {attr}{hint} (hooks: {', '.join(known)})")


def _add_module(
    registry: Registry, pm: pluggy.PluginManager, info: PluginInfo, module: object
) -> None:
    """Register one plugin module and collect its formats, recording any failure."""
    try:
        _check_api_version(module)
        _check_unknown_hooks(module)
        pm.register(module, name=info.name)
        pm.check_pending()
        found: list[Format] = _registered(
            pm, module, "zexport_formats", Format, "format", registry.formats)
        providers: list[AttachmentProvider] = []
        sources: list[Source] = []
        if _implements(pm, module, "zexport_attachment_providers"):
            from zexport.providers.base import AttachmentProvider

            providers = _registered(pm, module, "zexport_attachment_providers",
                                    AttachmentProvider, "provider", registry.providers)
        if _implements(pm, module, "zexport_sources"):
            from zexport.sources.base import Source

            sources = _registered(pm, module, "zexport_sources", Source, "source",
                                  registry.sources)
    except Exception as exc:  # a plugin may raise anything; it must not take others down
        if pm.is_registered(module):
            pm.unregister(module)
        info.error = _describe(exc)
        registry.plugins.append(info)
        if _strict():
            raise PluginError(f'Error loading plugin "{info.name}": {info.error}') from exc
        return
    for fmt in found:
        registry.formats[fmt.name] = fmt
        registry.format_plugin[fmt.name] = info
        info.formats.append(fmt.name)
    for provider in providers:
        registry.providers[provider.name] = provider
        info.providers.append(provider.name)
    for source in sources:
        registry.sources[source.name] = source
        info.sources.append(source.name)
    registry.plugins.append(info)


def _implements(pm: pluggy.PluginManager, module: object, hook: str) -> bool:
    """Whether ``module`` implements ``hook`` (checked before importing what it returns)."""
    return any(i.plugin is module for i in getattr(pm.hook, hook).get_hookimpls())


def _registered(pm: pluggy.PluginManager, module: object, hook: str, kind: type[T],
                noun: str, taken: Mapping[str, object]) -> list[T]:
    """What ``module``'s ``hook`` returns: named ``kind`` instances, their names free.

    Formats, providers and sources follow one rule (PluginError if broken): each item an
    instance of the contract's class, named in lowercase letters, digits, ``-`` and ``_``,
    with a name no other plugin (nor the same one) took.
    """
    found: list[T] = []
    for impl in getattr(pm.hook, hook).get_hookimpls():
        if impl.plugin is not module:
            continue
        result: Any = impl.function()
        for item in result:
            name = getattr(item, "name", None) if isinstance(item, kind) else None
            if not isinstance(name, str) or not name:
                raise PluginError(f"{hook} returned {item!r}, not a named {kind.__name__}")
            if not FORMAT_NAME.fullmatch(name):
                raise PluginError(
                    f"{noun} name {name!r} is not lowercase letters, digits, - and _")
            if name in taken or name in {getattr(f, "name", None) for f in found}:
                raise PluginError(f"{noun} name {name!r} is already taken")
            found.append(item)
    return found


def _import(registry: Registry, info: PluginInfo, source: str | EntryPoint) -> object | None:
    """Import a module path (built-ins, ZEXPORT_PLUGINS) or load an entry point."""
    try:
        if isinstance(source, str):
            module: ModuleType = importlib.import_module(source)
            return module
        loaded: object = source.load()
        return loaded
    except Exception as exc:  # ImportError, SyntaxError, anything its top level raises
        info.error = _describe(exc)
        registry.plugins.append(info)
        if _strict():
            raise PluginError(f'Error loading plugin "{info.name}": {info.error}') from exc
        return None


@functools.cache
def load_registry(builtin_only: bool = False) -> Registry:
    """Load every plugin once per process and return the registry.

    ``builtin_only``: the built-in formats alone. A worker exporting a
    built-in format needs nothing else: scanning every installed package's
    metadata for entry points (with importing :mod:`importlib.metadata`) is
    ~25 ms of its start-up, and the attachment providers (which only the
    controller uses: workers never download) ~20 ms more. Names cannot
    clash: built-ins load first and keep their names.
    """
    from zexport import __version__

    registry = Registry()
    pm = _plugin_manager()
    sources: list[tuple[PluginInfo, str | EntryPoint]] = [
        (PluginInfo(_builtin_name(path), "zexport", __version__), path)
        for path in (BUILTIN_FORMAT_PLUGINS if builtin_only else BUILTIN_PLUGINS)
    ]
    extra = "" if builtin_only else os.environ.get("ZEXPORT_PLUGINS", "")
    sources += [
        (PluginInfo(path, "ZEXPORT_PLUGINS", ""), path)
        for path in (p.strip() for p in extra.split(",")) if path
    ]
    for ep in [] if builtin_only else _entry_points():
        dist = ep.dist
        sources.append((
            PluginInfo(ep.name, dist.name if dist else "?", dist.version if dist else ""), ep))
    for info, source in sources:
        module = _import(registry, info, source)
        if module is not None:
            _add_module(registry, pm, info, module)
    return registry


def _entry_points() -> list[EntryPoint]:
    from importlib.metadata import entry_points

    return sorted(entry_points(group=ENTRY_POINT_GROUP), key=lambda e: e.name)


def render_listing(registry: Registry) -> list[str]:
    """The text of ``zexport formats``: formats, providers, then broken plugins, one per line."""
    lines = ["Formats:"]
    for name in sorted(registry.formats):
        fmt = registry.formats[name]
        info = registry.format_plugin[name]
        source = f"{info.package} {info.version}".strip()
        lines.append(f"  {name:12} {fmt.description}  [{source}]")
        for key, opt in sorted(fmt.options.items()):
            default = f" (default: {opt.default})" if opt.default is not None else ""
            choices = f" [{'|'.join(opt.choices)}]" if opt.choices else ""
            lines.append(f"  {'':12}   -o {key}=...{choices}  {opt.help}{default}")
    # Attachment providers (BRIEF §5) are listed here, from PluginInfo.providers,
    # once their hook exists.
    providers = [(p, info) for info in registry.plugins for p in info.providers]
    if providers:
        lines.append("Providers:")
        lines += [f"  {p:12} [{info.package} {info.version}]" for p, info in sorted(
            providers, key=lambda x: x[0])]
    sources = [(s, info) for info in registry.plugins for s in info.sources]
    if sources:
        lines.append("Sources (zexport run --input PATH [--source NAME]):")
        lines += [f"  {s:12} {registry.sources[s].description}  [{info.package} {info.version}]"
                  for s, info in sources]
    if registry.broken:
        lines.append("Broken plugins (not loaded):")
        lines += [f"  {info.label}: {info.error}" for info in registry.broken]
    return lines
