"""What a control command is: its frames, what it does in the run, what the client prints.

A command is one class (one module of :mod:`zexport.run.commands`): the
controller side runs :meth:`Command.execute` against a :class:`RunControl`,
the client side builds the request with :meth:`Command.request` and shows
the reply with :meth:`Command.show`, and both trust the frames because the
request and reply shapes (:mod:`zexport.protocol` shapes) are registered with
:func:`zexport.protocol.register_message` and checked by ``decode``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, Protocol

from zexport.protocol import Map, Shape

REQUEST_TIMEOUT = 2.0  # seconds a client waits for an answer (a run answers in ~1 ms)

Fields = dict[str, Shape]


class RunControl(Protocol):
    """What a control command may ask of a running export (the controller is one)."""

    run_id: str

    def status(self) -> dict[str, Any]:
        """The run's snapshot: the ``status`` map of docs/protocol.md's ``status_reply``."""
        ...

    def cancel(self, reason: str) -> tuple[str, bool]:
        """Start cancelling: ``(state, already)``, the state being ``cancelling`` or
        ``finishing``, ``already`` true when a cancel (or the end) was under way."""
        ...


class Console(Protocol):
    """Where the client side of a command writes (the CLI's is click's stdout and stderr)."""

    def out(self, text: str) -> None: ...

    def err(self, text: str) -> None: ...


@dataclass(frozen=True)
class Option:
    """One command-line option of a command, as data: the CLI turns it into a click option,
    so a command module need not import click (only the CLI layer may)."""

    flag: str  # "--json"
    dest: str  # the keyword it reaches the command's methods as
    help: str = ""
    is_flag: bool = False
    type: type = str
    default: Any = None
    hidden: bool = False


class Command:
    """One control command. Subclasses set the class attributes and the methods.

    ``name`` is the CLI's command name; ``request_type`` and ``reply_type``
    the frames' ``t``; ``request_fields`` and ``reply_fields`` their
    ``(required, optional)`` fields besides ``v``, ``t`` and ``id``;
    ``help`` the CLI's help text; ``options`` the CLI's options besides ``--run``.
    """

    name: ClassVar[str]
    help: ClassVar[str]
    request_type: ClassVar[str]
    reply_type: ClassVar[str]
    request_fields: ClassVar[tuple[Fields, Fields]] = ({}, {})
    reply_fields: ClassVar[tuple[Fields, Fields]] = ({}, {})
    options: ClassVar[tuple[Option, ...]] = ()

    @classmethod
    def reply_shape(cls) -> Map:
        """The reply's fields as one shape (the server checks its own replies with it)."""
        required, optional = cls.reply_fields
        return Map(required, optional)

    # -- client side --------------------------------------------------------
    def request(self, options: Mapping[str, Any]) -> dict[str, Any]:
        """The request's fields, from the command-line options."""
        return {}

    def timeout(self, options: Mapping[str, Any]) -> float:
        """Seconds to wait for the reply."""
        return REQUEST_TIMEOUT

    def show(self, run: Mapping[str, Any], reply: dict[str, Any], options: Mapping[str, Any],
             console: Console) -> int:
        """Show the reply (``run``: the run's registration); return the exit status."""
        raise NotImplementedError

    # -- controller side ----------------------------------------------------
    def execute(self, run: RunControl, request: dict[str, Any]) -> dict[str, Any]:
        """Act on a request (already checked against ``request_fields``); the reply's fields."""
        raise NotImplementedError
