"""The command line: click commands, thin over the library (the top layer)."""

from zexport.cli.app import main

__all__ = ["main"]
