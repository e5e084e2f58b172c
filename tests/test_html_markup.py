"""The HTML plugin's safe Markdown subset: hostile text stays text."""

from __future__ import annotations

import pytest
from zexport_html import markup  # installed by .ci/run (pip install ./plugins/zexport-html)


@pytest.mark.parametrize("text", [
    "<script>alert(1)</script>",
    "<img src=x onerror=alert(1)>",
    "[x](javascript:alert(1))",
    '[x](https://a.example/" onmouseover="alert(1))',
    "`<b>` and ``<i>``",
    "```\n</code></pre><script>x</script>\n```",
    "| <a> | b |\n|---|---|\n| <svg onload=x> | c |",
    "> <iframe src=//evil>",
])
def test_no_markup_survives(text: str) -> None:
    html = markup.render(text)
    for bad in ("<script", "<img", "<iframe", "<svg", "<i>", "<b>", 'href="javascript',
                '" onmouseover'):
        assert bad not in html


def test_subset_renders() -> None:
    html = markup.render(
        "# Title\nsome **bold** and `code` https://a.example/x.\n\n- one\n- two\n\n"
        "3. three\n\n```python\nprint(1)\n```\n\na | b\n--|--\n1 | 2")
    assert "<h3>Title</h3>" in html
    assert "<strong>bold</strong>" in html and "<code>code</code>" in html
    assert '<a href="https://a.example/x" rel="noopener noreferrer">https://a.example/x</a>.' \
        in html
    assert "<ul><li>one</li><li>two</li></ul>" in html
    assert '<ol start="3"><li>three</li></ol>' in html
    assert '<pre><code class="language-python">print(1)</code></pre>' in html
    assert "<th>a</th>" in html and "<td>2</td>" in html
