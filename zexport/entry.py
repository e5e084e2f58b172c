"""The ``zexport`` command (console script, ``python -m zexport``): status and cancel fast.

Why: ``zexport status`` must answer in under 50 ms while an export keeps
every core busy (README, "Control"). Importing the click CLI costs ~70 ms and
pyzmq 20-40 ms more, before any question is asked. So this module, which
imports nothing but :mod:`os` and :mod:`sys`, parses the few options of
``status`` and ``cancel`` itself and runs them through
:mod:`zexport.cli_control`, the same code the click commands call: same
messages, same exit statuses. Anything it does not recognise (``--help``, an
unknown option, a missing or odd value, an extra argument) goes to click
unchanged, so help texts and usage errors are click's own, and every other
command is click's as before.

:data:`OPTIONS` must describe the click commands' options exactly;
tests/test_entry.py checks it against them, and runs both paths on the same
situations to compare their output and exit statuses.
"""

from __future__ import annotations

import os
import sys

from .cli_control import CANCEL_TIMEOUT, STATUS_TIMEOUT

TYPE_CHECKING = False  # typing's, without importing typing (3 ms of `zexport status`)
if TYPE_CHECKING:
    from typing import Any

# command -> option -> (parameter, value type; None for a flag)
OPTIONS: dict[str, dict[str, tuple[str, type | None]]] = {
    "status": {"--run": ("run_id", str), "--json": ("as_json", None),
               "--timeout": ("timeout", float)},
    "cancel": {"--run": ("run_id", str), "--no-wait": ("no_wait", None),
               "--timeout": ("timeout", float)},
}
DEFAULTS: dict[str, dict[str, Any]] = {
    "status": {"run_id": None, "as_json": False, "timeout": STATUS_TIMEOUT},
    "cancel": {"run_id": None, "no_wait": False, "timeout": CANCEL_TIMEOUT},
}


def main() -> None:
    """Run ``status``/``cancel`` directly when their arguments are plain; else click."""
    args = sys.argv[1:]
    if args and args[0] in OPTIONS and os.name == "posix" and not _completing():
        params = parse(args[0], args[1:])
        if params is not None:
            sys.exit(_run(args[0], params))
    from .cli import cli

    cli()


def parse(command: str, args: list[str]) -> dict[str, Any] | None:
    """The command's parameters, or None when click should parse ``args`` instead.

    Accepted: the command's options (``--opt VALUE``, ``--opt=VALUE``, flags
    without a value), each as often as wanted (the last value wins, as in
    click). Refused, for click to handle or report: anything else, a flag
    given a value, a missing value, a value that click would not convert
    (``float()`` is what click calls), and a separate value starting with
    ``-`` (which click would take as the value, but a user more likely meant
    as an option: click's error, or its reading, is the reference).
    """
    spec = OPTIONS[command]
    params = dict(DEFAULTS[command])
    rest = iter(args)
    for arg in rest:
        name, eq, value = arg.partition("=")
        if name not in spec:
            return None
        dest, kind = spec[name]
        if kind is None:
            if eq:
                return None
            params[dest] = True
            continue
        if not eq:
            value = next(rest, "-")
            if value.startswith("-"):
                return None
        try:
            params[dest] = kind(value)
        except ValueError:
            return None
    return params


def _run(command: str, params: dict[str, Any]) -> int:
    """Run the command; handle interrupts and closed pipes as click's ``main`` does."""
    from . import cli_control

    try:
        if command == "status":
            return cli_control.status(echo=echo, **params)
        return cli_control.cancel(echo=echo, **params)
    except KeyboardInterrupt:  # click: close the ^C line, then "Aborted!", status 1
        echo("", True)
        echo("Aborted!", True)
        return 1
    except BrokenPipeError:  # click: say nothing, not even at the final flush; status 1
        _discard_output()
        return 1


def echo(text: str, err: bool) -> None:
    """``click.echo(text, err=err)``, without importing click when it would change nothing.

    click.echo writes the text and a newline and flushes. It also strips ANSI
    escapes when the stream is not a terminal, and rewraps a stream whose
    encoding is ASCII (or missing) as UTF-8 with replacement: for those
    cases, rare here (a path with an escape in it, ``PYTHONIOENCODING=ascii``),
    click.echo itself is called.
    """
    stream = sys.stderr if err else sys.stdout
    if stream is None:
        return
    if "\x1b" in text or not _plain_text_stream(stream):
        import click

        click.echo(text, err=err)
        return
    stream.write(text + "\n")
    stream.flush()


def _plain_text_stream(stream: Any) -> bool:
    """Whether click.echo would write to ``stream`` as it is (click's test, as it stands)."""
    import codecs  # loaded at interpreter start-up: free

    encoding = getattr(stream, "encoding", None)
    if not encoding or getattr(stream, "errors", None) is None:
        return False
    try:
        return codecs.lookup(encoding).name != "ascii"
    except LookupError:
        return True


def _discard_output() -> None:
    """Point stdout and stderr at /dev/null, so flushing them at exit raises nothing."""
    null = os.open(os.devnull, os.O_WRONLY)
    for stream in (sys.stdout, sys.stderr):
        try:
            os.dup2(null, stream.fileno())
        except (AttributeError, OSError, ValueError):
            pass
    os.close(null)


def _completing() -> bool:
    """Whether click's shell completion is asking (``_ZEXPORT_COMPLETE`` and the like)."""
    return any(name.startswith("_") and name.endswith("_COMPLETE") for name in os.environ)
