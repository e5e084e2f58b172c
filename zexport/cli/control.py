"""The control commands on the command line: each registered command becomes a click command.

Nothing here knows what a command does: :class:`ControlGroup` asks the
registry (:mod:`zexport.run.commands`) which commands exist, turns each one's
options into click options, and runs it through the one client path
(:func:`zexport.run.client.run_command`). A new command file is a new
``zexport`` command, with no change here.

Exit statuses: 0 done, 1 no export running or its controller did not answer
(or, for ``cancel``, the run was still running after ``--timeout``), 2 usage
(several runs and no ``--run``), 3 the controller refused the request.
"""

from __future__ import annotations

import sys
from typing import Any

import click

from zexport.run.client import run_command
from zexport.run.commands import Command, Option, commands


class ClickConsole:
    """A command's output through click: its stdout and stderr."""

    def out(self, text: str) -> None:
        click.echo(text)

    def err(self, text: str) -> None:
        click.echo(text, err=True)


class ControlGroup(click.Group):
    """A click group that also offers every registered control command.

    Looked up when asked for, so ``zexport run`` never loads the commands.
    """

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*super().list_commands(ctx), *(c.name for c in commands())})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        found = super().get_command(ctx, cmd_name)
        if found is not None:
            return found
        command = commands().get(cmd_name)
        return click_command(command) if command is not None else None


def click_command(command: Command) -> click.Command:
    """The click command for a control command: ``--run`` and the command's options."""
    def callback(run_id: str | None, **options: Any) -> None:
        code = run_command(command, run_id, options, ClickConsole())
        if code:
            sys.exit(code)

    params: list[click.Parameter] = [
        click.Option(["--run", "run_id"], metavar="ID",
                     help="Which export (when several are running)."),
        *(_click_option(option) for option in command.options)]
    return click.Command(command.name, callback=callback, params=params, help=command.help)


def _click_option(option: Option) -> click.Option:
    if option.is_flag:
        return click.Option([option.flag, option.dest], is_flag=True, help=option.help,
                            hidden=option.hidden)
    return click.Option([option.flag, option.dest], type=option.type, default=option.default,
                        show_default=option.default is not None, help=option.help,
                        hidden=option.hidden)
