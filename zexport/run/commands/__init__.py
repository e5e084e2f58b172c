"""Control commands as objects: one module each, found by :func:`commands`.

A command (``status``, ``cancel``...) is one :class:`Command` class in one
module of this package: its request and reply types and fields, what it does
in the running export (through :class:`RunControl`, which the controller
implements), and what the client prints. The control server
(:mod:`zexport.run.control`), the client (:mod:`zexport.run.client`) and the
CLI (:mod:`zexport.cli.control`) only look commands up in the registry, so a
new command is a new module here plus its entry in docs/protocol.md.
"""

from zexport.run.commands._base import REQUEST_TIMEOUT, Command, Console, Option, RunControl
from zexport.run.commands._registry import Registry, commands, discover

__all__ = ["REQUEST_TIMEOUT", "Command", "Console", "Option", "Registry", "RunControl",
           "commands", "discover"]
