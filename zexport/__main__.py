"""``python -m zexport``: the same entry point as the ``zexport`` console script."""

from zexport.cli.app import main

main()
