"""The ``zexport`` command line: a thin layer over the library.

Library errors (:class:`zexport.errors.ZexportError`) become one clear line
on stderr and exit status 2 here, and nowhere else. Exit statuses of
``run``: 0 everything exported, 1 some conversations or attachments failed
(the rest exported), 2 usage or configuration error, 130 cancelled.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from datetime import datetime, timezone
from typing import Any, TypeVar

import click

from . import __version__, cli_control
from .errors import ZexportError

F = TypeVar("F", bound=Callable[..., Any])


def _fail(exc: ZexportError) -> None:
    click.echo(f"zexport: error: {exc}", err=True)
    sys.exit(exc.exit_code)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="zexport")
def cli() -> None:
    """Export local AI chat archives (OwnYourChat) to files, fast, in parallel."""


def _parse_time(value: str | None, name: str) -> int | None:
    if value is None:
        return None
    try:
        if value.isdigit():
            return int(value)
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise click.BadParameter(
            "use an ISO date (2024-05-01, 2024-05-01T12:00+02:00) or Unix seconds",
            param_hint=name) from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=timezone.utc)
    return int(parsed.timestamp())


def _parse_options(pairs: tuple[str, ...]) -> dict[str, str]:
    options: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise click.BadParameter(f"expected key=value, got {pair!r}", param_hint="-o")
        options[key.strip()] = value
    return options


def _default_db() -> tuple[str, str]:
    from .locations import app_archive_path, builtin_sample

    app = app_archive_path()
    if os.path.isfile(app):
        return app, f"Exporting the OwnYourChat archive at {app}"
    sample = builtin_sample()
    return sample, (f"No OwnYourChat archive at {app}; exporting the built-in sample "
                    f"archive {sample} (use --db to choose one)")


@cli.command()
@click.option("--db", "db", type=click.Path(), default=None,
              help="Archive to export (default: OwnYourChat's, else the built-in sample).")
@click.option("--out", "out", type=click.Path(file_okay=False), default="zexport-out",
              show_default=True, help="Output folder.")
@click.option("--format", "format_name", default="markdown", show_default=True,
              help="Output format (see `zexport formats`).")
@click.option("-o", "format_options", multiple=True, metavar="KEY=VALUE",
              help="A format option (repeatable).")
@click.option("--workers", type=click.IntRange(1, 256), default=None,
              help="Worker processes (default: CPU count).")
@click.option("--provider", "providers", multiple=True,
              type=click.Choice(["chatgpt", "claude", "perplexity"]),
              help="Only this provider (repeatable).")
@click.option("--since", help="Only conversations updated at or after this time.")
@click.option("--until", help="Only conversations created before this time.")
@click.option("--id", "ids", multiple=True, help="Only this conversation id (repeatable).")
@click.option("--branches", type=click.Choice(["active", "all"]), default="active",
              show_default=True, help="Render the active branch only, or every branch.")
@click.option("--tz", default="local", show_default=True,
              help="Time zone for dates and times: local, UTC or an IANA name.")
@click.option("--attachments", "attachments", type=click.Choice(["copy", "link"]),
              default="copy", show_default=True,
              help="Copy attachments, or hard-link them (copy across file systems).")
@click.option("--no-attachments", is_flag=True, help="Export no attachment files.")
@click.option("--progress", type=click.Choice(["bar", "json", "none"]), default=None,
              help="Progress display (default: bar on a terminal, else none).")
@click.option("--force", is_flag=True,
              help="Render every conversation, even those a previous run left unchanged.")
@click.option("--batch-size", type=click.IntRange(1, 10_000), default=None, hidden=True)
@click.option("-q", "--quiet", is_flag=True, help="Print nothing but errors.")
def run(db: str | None, out: str, format_name: str, format_options: tuple[str, ...],
        workers: int | None, providers: tuple[str, ...], since: str | None,
        until: str | None, ids: tuple[str, ...], branches: str, tz: str, attachments: str,
        no_attachments: bool, progress: str | None, force: bool, batch_size: int | None,
        quiet: bool) -> None:
    """Export every selected conversation of an archive to files."""
    from .archive import Selection  # here, not at the top: `zexport status` starts faster
    from .controller import Controller, RunOptions
    from .progress import make_progress

    if progress is None:
        progress = "bar" if sys.stderr.isatty() and not quiet else "none"

    def say(text: str) -> None:
        if not quiet:
            click.echo(text, err=progress == "json")

    try:
        if db is None:
            db, line = _default_db()
        else:
            line = f"Exporting {db}"
        opts = RunOptions(
            db=db, out=out, format=format_name, format_options=_parse_options(format_options),
            workers=workers or os.cpu_count() or 1,
            selection=Selection(
                providers=providers, since=_parse_time(since, "--since"),
                until=_parse_time(until, "--until"), ids=ids),
            branches=branches, tz=tz, attachments="off" if no_attachments else attachments,
            batch_size=batch_size, force=force,
        )
        controller = Controller(opts, say=say)
        say(line)
        controller.progress = make_progress(progress)
        status = controller.run()
    except ZexportError as exc:
        _fail(exc)
        return
    report = controller.report
    counts = report.to_dict()["counts"]
    rate = counts["exported"] / report.seconds if report.seconds else 0.0
    say(
        f"{report.status}: {counts['exported']} exported, {counts['skipped']} skipped, "
        f"{counts['failed']} failed of {counts['selected']} conversations; "
        f"{counts['attachments_exported']} attachments, {counts['attachments_failed']} "
        f"unavailable; {report.seconds:.2f}s ({rate:,.0f}/s) -> {controller.out}"
    )
    if report.failures or report.attachment_failures:
        say(f"Failures are listed in {os.path.join(controller.out, '.zexport', 'report.json')}")
    sys.exit(status)


@cli.command()
@click.argument("path", type=click.Path(dir_okay=False))
@click.option("--conversations", "-n", type=click.IntRange(1, 10_000_000), default=1000,
              show_default=True, help="How many conversations.")
@click.option("--seed", type=int, default=0, show_default=True,
              help="Random seed: the same seed gives the same file.")
def sample(path: str, conversations: int, seed: int) -> None:
    """Write a synthetic, realistically dirty archive to PATH."""
    from .sample import make_sample

    try:
        stats = make_sample(path, conversations=conversations, seed=seed)
    except FileExistsError:
        _fail(ZexportError(f"{path} exists; refusing to overwrite it"))
        return
    click.echo(f"Wrote {path}: {stats}")


@cli.command()
def formats() -> None:
    """List installed formats and plugins, and any that failed to load."""
    from .plugins import load_registry

    registry = load_registry()
    for name in sorted(registry.formats):
        fmt = registry.formats[name]
        info = registry.format_plugin[name]
        click.echo(f"{name:12} {fmt.description}  [{info.package} {info.version}]")
        for key, opt in sorted(fmt.options.items()):
            default = f" (default: {opt.default})" if opt.default is not None else ""
            click.echo(f"{'':14}-o {key}=...  {opt.help}{default}")
    for info in registry.broken:
        click.echo(f"BROKEN plugin {info.name!r} [{info.package} {info.version}]: {info.error}")


cli.add_command(cli_control.status)
cli.add_command(cli_control.cancel)


def main() -> None:
    """Console-script entry point."""
    cli()


if __name__ == "__main__":
    main()
