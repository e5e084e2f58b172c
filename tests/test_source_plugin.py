"""A third-party input source, written as docs/sources.md says and installed with pip.

The package is built and installed by pip (into a folder on ``PYTHONPATH``,
so the shared venv is left as it was); zexport must find it through its
entry point, list it, recognise its input by content and export it.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest
from conftest import run_cli

pytestmark = pytest.mark.timeout(180)

PYPROJECT = """\
[build-system]
requires = ["setuptools>=68", "wheel"]
build-backend = "setuptools.build_meta"

[project]
name = "zexport-mychat"
version = "0.1.0"
dependencies = ["zexport"]

[project.entry-points.zexport]
mychat = "zexport_mychat"
"""

MODULE = '''\
from zexport import hookimpl
from zexport.sources import Bundle, Conversion, ConversationRecord, MessageRecord, Source


class MyChatSource(Source):
    name = "mychat"
    description = "MyChat transcripts"

    def recognise(self, bundle: Bundle) -> bool:
        names = bundle.names()
        return len(names) == 1 and bundle.head(names[0], 8) == b"# mychat"

    def convert(self, bundle: Bundle, into: Conversion) -> None:
        with bundle.open(bundle.names()[0]) as f:
            lines = f.read().decode().splitlines()[1:]
        messages, parent = [], None
        for i, line in enumerate(lines):
            role, _, text = line.partition(": ")
            messages.append(MessageRecord(f"m{i}", role, [{"type": "text", "text": text}],
                                          1_700_000_000 + i, parent))
            parent = f"m{i}"
        into.add(ConversationRecord("mychat-1", "My chat", "mychat", 1_700_000_000,
                                    1_700_000_100, None, messages))


@hookimpl
def zexport_sources() -> list[Source]:
    return [MyChatSource()]
'''


def test_a_source_package_installed_with_pip_reads_its_input(
        tmp_path: Path, isolated_env: dict[str, str]) -> None:
    pkg = tmp_path / "zexport-mychat"
    (pkg / "zexport_mychat").mkdir(parents=True)
    (pkg / "pyproject.toml").write_text(PYPROJECT)
    (pkg / "zexport_mychat" / "__init__.py").write_text(MODULE)
    site = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps",
                    "--target", str(site), str(pkg)],
                   check=True, timeout=150, capture_output=True)
    env: dict[str, Any] = {**isolated_env, "PYTHONPATH": str(site),
                           "ZEXPORT_STRICT_PLUGINS": "1"}
    listing = run_cli(["formats"], env, cwd=tmp_path)
    assert listing.returncode == 0, listing.stderr
    assert "  mychat       MyChat transcripts  [zexport-mychat 0.1.0]" in listing.stdout
    chat = tmp_path / "talk.log"
    chat.write_text(textwrap.dedent("""\
        # mychat
        user: Hello there
        assistant: General Kenobi
        """))
    out = tmp_path / "out"
    res = run_cli(["run", "--input", str(chat), "--out", str(out), "--tz", "UTC",
                   "--progress", "none"], env, cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    md = (out / "2023-11-14 My chat" / "conversation.md").read_text()
    assert "## User" in md and "General Kenobi" in md
    assert 'provider: "mychat"' in md
