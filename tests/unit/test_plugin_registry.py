"""``Registry.get_format``: a format whose plugin failed to load is named with the reason.

In process: the registry is built by hand, as ``load_registry`` leaves it after a
plugin failed to import.
"""

from __future__ import annotations

import pytest

from zexport.errors import UsageError
from zexport.plugins import PluginInfo, Registry


def _registry_with_broken(name: str, package: str = "") -> Registry:
    broken = PluginInfo(name, package, "", error="RuntimeError: boom")
    return Registry(plugins=[broken])


@pytest.mark.parametrize("module", ["myformat", "zexport_myformat", "pkg.myformat"])
def test_a_broken_plugin_module_named_after_the_format_is_blamed_with_its_reason(
        module: str) -> None:
    """README's development recipe loads ``zexport_myformat`` for ``--format myformat``."""
    with pytest.raises(UsageError) as caught:
        _registry_with_broken(module).get_format("myformat")
    assert str(caught.value) == (
        f"format 'myformat' is not available: plugin \"{module}\" failed to load:"
        " RuntimeError: boom (available: none)")


def test_a_broken_package_zexport_name_is_blamed_with_its_reason() -> None:
    with pytest.raises(UsageError) as caught:
        _registry_with_broken("entry", "zexport-myformat").get_format("myformat")
    assert str(caught.value).startswith(
        "format 'myformat' is not available: plugin \"entry\" (zexport-myformat) failed to load:")


def test_an_unrelated_broken_plugin_is_only_mentioned() -> None:
    with pytest.raises(UsageError) as caught:
        _registry_with_broken("other").get_format("myformat")
    assert str(caught.value) == (
        "unknown format 'myformat' (available: none); 1 plugin(s) failed to load:"
        " plugin \"other\" (see `zexport formats`)")
