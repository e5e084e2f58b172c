"""``python -m zexport``: the same entry point as the ``zexport`` console script."""

from .entry import main

main()
