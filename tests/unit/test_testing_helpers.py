"""zexport.testing: the helpers plugin authors are told to use render as a worker does."""

from __future__ import annotations

from pathlib import Path

import pytest

from zexport.errors import UsageError
from zexport.formats.markdown import MarkdownFormat
from zexport.testing import conversation, message, render, render_context


def test_render_a_conversation_with_validated_options(tmp_path: Path) -> None:
    conv = conversation([message("m1", "user", "Hi"), message("m2", "assistant", "Hello",
                                                             parent_id="m1")],
                        title="Greeting", provider="claude")
    text = render(MarkdownFormat(), conv, {"properties": "basic"}, out_dir=str(tmp_path))
    assert isinstance(text, str)
    assert "## User\n\n" in text and "## Assistant\n\n" in text and "# Greeting\n" in text
    assert "aliases:" not in text
    with pytest.raises(UsageError):
        render_context(MarkdownFormat(), {"properties": "everything"}, out_dir=str(tmp_path))


def test_the_context_writes_inside_its_real_folder(tmp_path: Path) -> None:
    ctx = render_context(MarkdownFormat(), out_dir=str(tmp_path), folder="A")
    written = ctx.write("extra.txt", "x")
    assert Path(written) == tmp_path / "A" / "extra.txt"
    assert (tmp_path / "A" / "extra.txt").read_text() == "x"


def test_every_public_name_resolves() -> None:
    import zexport

    for name in zexport.__all__:
        assert getattr(zexport, name) is not None, name
    assert zexport.PLUGIN_API[0] == 1


def test_the_context_names_the_conversations_file_as_a_worker_does(tmp_path: Path) -> None:
    """docs/plugins.md: ``file`` is ``<folder>/conversation.<extension>`` in the default layout."""
    ctx = render_context(MarkdownFormat(), out_dir=str(tmp_path), folder="2024-01-01 A")
    assert ctx.file == str(tmp_path / "2024-01-01 A" / "conversation.md")
    assert ctx.link("index.html") == "../index.html"
