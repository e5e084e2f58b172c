"""The registry of control commands: every public module of this package is one.

:func:`commands` finds them once (``pkgutil`` over the package, each module's
:class:`~zexport.run.commands.Command` subclasses) and registers their frames
with the protocol; :meth:`Registry.add` takes one more at run time (a test,
a plugin). The control server and the client both look commands up here.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Iterator
from contextlib import contextmanager

from zexport import protocol
from zexport.errors import ProtocolError
from zexport.run.commands._base import Command


class Registry:
    """Commands by CLI name and by request type."""

    def __init__(self) -> None:
        self._by_name: dict[str, Command] = {}
        self._by_request: dict[str, Command] = {}
        self._frames: dict[str, list[str]] = {}  # name -> the frame types its add() added

    def add(self, cls: type[Command]) -> Command:
        """Register a command class and its frames; a name or frame type already taken
        (by another command or another socket's message) is refused."""
        if cls.name in self._by_name or cls.request_type in self._by_request:
            raise ValueError(f"control command {cls.name!r} ({cls.request_type}) is "
                             "already registered")
        added: list[str] = []
        try:
            for kind, (required, optional) in ((cls.request_type, cls.request_fields),
                                               (cls.reply_type, cls.reply_fields)):
                if protocol.register_message(kind, required, optional):
                    added.append(kind)
        except ProtocolError:
            for kind in added:  # nothing half-registered
                protocol.unregister_message(kind)
            raise
        command = cls()
        self._frames[cls.name] = added
        self._by_name[cls.name] = command
        self._by_request[cls.request_type] = command
        return command

    def remove(self, name: str) -> None:
        """Take a command out again, and the frames its :meth:`add` registered."""
        command = self._by_name.pop(name)
        del self._by_request[command.request_type]
        for kind in self._frames.pop(name):
            protocol.unregister_message(kind)

    @contextmanager
    def added(self, cls: type[Command]) -> Iterator[Command]:
        """A command registered for the ``with`` block only."""
        command = self.add(cls)
        try:
            yield command
        finally:
            self.remove(cls.name)

    def get(self, name: str) -> Command | None:
        """The command called ``name`` on the command line."""
        return self._by_name.get(name)

    def for_request(self, msg_type: str) -> Command | None:
        """The command a request of type ``msg_type`` is for."""
        return self._by_request.get(msg_type)

    def request_types(self) -> list[str]:
        """Every request type, sorted (an unknown request is told them)."""
        return sorted(self._by_request)

    def __iter__(self) -> Iterator[Command]:
        return iter(sorted(self._by_name.values(), key=lambda c: c.name))


def discover(package: str) -> list[type[Command]]:
    """The command classes defined in ``package``'s modules (not those starting with ``_``)."""
    found: list[type[Command]] = []
    for info in sorted(pkgutil.iter_modules(importlib.import_module(package).__path__),
                       key=lambda i: i.name):
        if info.name.startswith("_"):
            continue
        module = importlib.import_module(f"{package}.{info.name}")
        found.extend(obj for obj in vars(module).values()
                     if isinstance(obj, type) and issubclass(obj, Command)
                     and obj.__module__ == module.__name__)
    return found


_default: Registry | None = None


def commands() -> Registry:
    """The registry of zexport's control commands (found on first use)."""
    global _default
    if _default is None:
        registry = Registry()
        for cls in discover(__package__ or "zexport.run.commands"):
            registry.add(cls)
        _default = registry
    return _default
