"""No module of the package over 600 lines (issue 16): one job per module shows in its size.

``OVERSIZED`` names the modules still being split; one that shrinks below the limit
must leave the list (so the list only ever gets shorter).
"""

from __future__ import annotations

from pathlib import Path

import zexport

LIMIT = 600
PACKAGE = Path(zexport.__file__).parent
OVERSIZED: set[str] = set()


def _sizes() -> dict[str, int]:
    return {path.relative_to(PACKAGE).as_posix(): len(path.read_text("utf-8").splitlines())
            for path in PACKAGE.rglob("*.py")}


def test_no_module_over_the_limit() -> None:
    over = {name: n for name, n in _sizes().items() if n > LIMIT and name not in OVERSIZED}
    assert over == {}


def test_the_oversized_list_names_only_modules_still_over_it() -> None:
    sizes = _sizes()
    assert {name for name in OVERSIZED if sizes.get(name, 0) <= LIMIT} == set()
