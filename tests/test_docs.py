"""Every plugin hook is documented, with its signature, in docs/plugins.md."""

from __future__ import annotations

import inspect
import re
from pathlib import Path

import pluggy
import pytest
from conftest import run_cli

from zexport import hookspecs
from zexport.plugins import hook_names

DOC = Path(__file__).resolve().parent.parent / "docs" / "plugins.md"


def _signature(name: str) -> str:
    sig = inspect.signature(getattr(hookspecs, name))
    params = ", ".join(sig.parameters)
    ret = sig.return_annotation
    if ret is inspect.Signature.empty:
        return f"{name}({params})"
    return f"{name}({params}) -> {ret}"


def test_hook_names_are_those_pluggy_sees() -> None:
    pm = pluggy.PluginManager(hookspecs.PROJECT)
    pm.add_hookspecs(hookspecs)
    seen = sorted(n for n in dir(pm.hook) if not n.startswith("_"))
    assert seen == hook_names() and seen


def test_every_hook_is_documented_with_its_signature() -> None:
    headings = re.findall(r"^### `([^`]+)`$", DOC.read_text(), re.M)
    for name in hook_names():
        assert _signature(name) in headings, (
            f"docs/plugins.md needs a heading: ### `{_signature(name)}`")


@pytest.mark.timeout(120)
def test_the_worked_example_works(isolated_env: dict[str, str], sample_db: Path,
                                  tmp_path: Path) -> None:
    text = DOC.read_text()
    source = text.split("`zexport_text/__init__.py`:", 1)[1].split("```python\n", 1)[1]
    source = source.split("```", 1)[0]
    pkg = tmp_path / "src" / "zexport_text"
    pkg.mkdir(parents=True)
    (pkg / "__init__.py").write_text(source)
    env = dict(isolated_env, PYTHONPATH=str(pkg.parent), ZEXPORT_PLUGINS="zexport_text")
    out = tmp_path / "export"
    res = run_cli(["run", "--db", str(sample_db), "--out", str(out), "--format", "text",
                   "-o", "width=60", "--progress", "none"], env, cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    listed = (out / "contents.txt").read_text().splitlines()
    assert len(listed) == len(list(out.glob("*/conversation.txt"))) > 0
    assert ("-" * 60) in (out / listed[0]).read_text()
