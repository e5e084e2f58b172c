"""``python -m zexport``: the same entry point as the ``zexport`` console script."""

from .cli import main

main()
