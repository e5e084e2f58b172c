"""``python -m zexport``."""

from .cli import cli

cli()
