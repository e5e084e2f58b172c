"""The HTML plugin's message rendering, through real exports with the installed plugin.

The reference is markdown-it-py itself (CommonMark, raw HTML off), on a
corpus nobody here wrote: the CommonMark spec's examples. The security tests
throw XSS payloads at every place text from the archive lands.
"""

from __future__ import annotations

import json
import re
from html import unescape
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest
from html_archive import (
    REPO,
    Conv,
    app_fixture,
    bodies,
    export_html,
    make_archive,
    page_of,
    text,
)
from markdown_it import MarkdownIt

from zexport import join_parts

pytestmark = pytest.mark.timeout(120)

SPEC = json.loads((REPO / "tests" / "data" / "commonmark_spec_0.31.2.json").read_text("utf-8"))

# The page's one deliberate difference from markdown-it-py: link targets other than
# http(s) give an <a> without href, and message images are never loaded (an http(s)
# image is a link to it, any other its alt text). Both sides are brought to the same
# form for that, and only for that.
_A = re.compile(r"<a [^>]*>")
_IMG_REF = re.compile(r'<img src="[^"]*" alt="([^"]*)"(?: title="[^"]*")? />')
_IMG_OURS = re.compile(r'<(?:a class="img-link"|span class="img-off")[^>]*>image: ([^<]*)'
                       r"</(?:a|span)>")


def _reference(markdown: str) -> str:
    return _A.sub("<a>", _IMG_REF.sub(r'<img alt="\1">', MarkdownIt(
        "commonmark", {"html": False}).render(markdown)))


def _ours(html: str) -> str:
    return _A.sub("<a>", _IMG_OURS.sub(r'<img alt="\1">', html))


@pytest.fixture(scope="module")
def spec_out(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tmp = tmp_path_factory.mktemp("spec")
    examples = SPEC["examples"]
    msgs = [("assistant", text(e["markdown"])) for e in examples]
    db = make_archive(tmp / "spec.db", [Conv("spec", "CommonMark spec", msgs)])
    out = tmp / "out"
    export_html(tmp, db, out)
    return out


def test_commonmark_spec_examples_render_as_markdown_it_renders_them(spec_out: Path) -> None:
    examples = SPEC["examples"]
    assert len(examples) == 652
    got = bodies(page_of(spec_out, "CommonMark spec"))
    assert len(got) == len(examples)
    same_bytes = 0
    differ = []
    for i, example in enumerate(examples):
        ours = got[f"spec-m{i}"]
        reference = MarkdownIt("commonmark", {"html": False}).render(example["markdown"])
        same_bytes += ours == reference
        if _ours(ours) != _reference(example["markdown"]):
            differ.append(example["example"])
    # Every example has markdown-it-py's structure; the only byte differences are link
    # and image targets (relative ones like "/url" are most of the spec's links).
    assert differ == []
    assert same_bytes == 519


NESTED_ANSWER = """Here is how to set it up:

1. **Install the tool**
   - Use pip:
     ```bash
     pip install tool
     ```
   - Or use your package manager.
2. **Configure it**
   - Create `config.yaml`:

     ```yaml
     server:
       port: 8080
       hosts:
         - a.example
     ```
   - Restart the service.
3. Done.
"""


def _tree(html: str) -> list[tuple[str, ...]]:
    """Each element's ancestry (tag names, outermost first)."""

    class Walk(HTMLParser):
        def __init__(self) -> None:
            super().__init__()
            self.stack: list[str] = []
            self.paths: list[tuple[str, ...]] = []

        def handle_starttag(self, tag: str, attrs: Any) -> None:
            if tag in ("input", "img", "br", "hr"):
                return
            self.stack.append(tag)
            self.paths.append(tuple(self.stack))

        def handle_endtag(self, tag: str) -> None:
            while self.stack and self.stack.pop() != tag:
                pass

    walk = Walk()
    walk.feed(html)
    return walk.paths


@pytest.fixture(scope="module")
def features_out(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tmp = tmp_path_factory.mktemp("features")
    convs = [
        Conv("nested", "Nested answer", [("user", text("how?")),
                                         ("assistant", text(NESTED_ANSWER))]),
        Conv("math", "Math", [("assistant", text(
            "Inline $x^2 + y^2$ and \\(\\frac{a}{b}\\).\n\n$$\n\\int_0^1 x\\,dx\n$$\n\n"
            "\\[\n\\sqrt{2}\n\\]\n\nIt costs $5 or $6 today."))]),
        Conv("gfm", "GFM", [("assistant", text(
            "| a | b |\n|---|---|\n| x \\| y | `p \\| q` |\n\n~~old~~ new\n\n"
            "- [x] done\n- [ ] todo\n\nNote[^1].\n\n[^1]: The note.\n"))]),
        Conv("gfm2", "GFM twice", [("assistant", text("A[^1].\n\n[^1]: one\n")),
                                   ("assistant", text("B[^1].\n\n[^1]: two\n"))]),
    ]
    db = make_archive(tmp / "features.db", convs)
    out = tmp / "out"
    export_html(tmp, db, out)
    return out


def test_nested_chatgpt_answer_keeps_lists_nested_and_code_inside_its_item(
        features_out: Path) -> None:
    body = bodies(page_of(features_out, "Nested answer"))["nested-m1"]
    paths = _tree(body)
    assert ("ol", "li", "ul", "li", "pre", "code") in paths
    assert body.count("<ol>") == 1 and body.count("<ul>") == 2
    assert '<code class="language-yaml">server:\n  port: 8080\n  hosts:\n    - a.example\n' in body
    assert '<code class="language-bash">pip install tool\n' in body
    # The YAML block is in the second item, between its two bullets.
    second = body.split("<li>")[4]  # ol li 1, its two bullets, then ol li 2
    assert "Configure it" in second


def test_math_in_both_delimiters_becomes_mathml(features_out: Path) -> None:
    body = bodies(page_of(features_out, "Math"))["math-m0"]
    assert body.count('<math xmlns="http://www.w3.org/1998/Math/MathML" display="inline">') == 2
    assert body.count('<div class="math"><math xmlns="http://www.w3.org/1998/Math/MathML" '
                      'display="block">') == 2
    assert "<msup><mi>x</mi><mn>2</mn></msup>" in body and "<mfrac>" in body
    assert "<msqrt>" in body and "∫" in body
    assert "It costs $5 or $6 today." in body  # money is not math


def test_gfm_tables_with_escaped_pipes_strikethrough_tasks_and_footnotes(
        features_out: Path) -> None:
    body = bodies(page_of(features_out, "GFM"))["gfm-m0"]
    assert "<td>x | y</td>" in body and "<td><code>p | q</code></td>" in body
    assert body.count("<td>") == 2
    assert "<s>old</s>" in body
    assert body.count('class="task-list-item-checkbox"') == 2 and 'checked="checked"' in body
    assert 'class="footnotes"' in body and "The note." in body
    # Two messages' footnotes on one page get distinct ids.
    two = page_of(features_out, "GFM twice").read_text()
    ids = re.findall(r'id="(fn[^"]*)"', two)
    assert ids == ["fnref-m1-1", "fn-m1-1", "fnref-m2-1", "fn-m2-1"]


XSS_MESSAGES = [
    "<script>window.pwned=1</script>",
    "<img src=x onerror=window.pwned=1>",
    '<a href="javascript:window.pwned=1">x</a>',
    "[click](javascript:window.pwned=1)",
    "[click](JaVaScRiPt:window.pwned=1)",
    "[click](data:text/html;base64,PHNjcmlwdD5hbGVydCgxKTwvc2NyaXB0Pg==)",
    "[click](vbscript:msgbox)",
    '[x](https://a.example/" onmouseover="window.pwned=1)',
    "<javascript:window.pwned=1>",
    "![i](javascript:window.pwned=1)",
    "![i](https://tracker.example/pixel.gif)",
    '![i](x" onerror="window.pwned=1)',
    "[ref]\n\n[ref]: javascript:window.pwned=1",
    "$\\text{<img src=x onerror=window.pwned=1>}$",
    "$$\n\\href{javascript:window.pwned=1}{click}\n$$",
    "\\(\\text{</math><script>window.pwned=1</script>}\\)",
    "```\n</code></pre><script>window.pwned=1</script>\n```",
    "| <svg onload=window.pwned=1> | b |\n|---|---|\n| <iframe src=//evil.example> | c |",
    "> <object data=//evil.example></object>",
    "<style>body{display:none}</style>",
]
XSS_TITLE = "</script><script>window.pwned=1</script><img src=x onerror=window.pwned=1>"


@pytest.fixture(scope="module")
def xss_out(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tmp = tmp_path_factory.mktemp("xss")
    convs = [Conv("xss", XSS_TITLE, [("assistant", text(m)) for m in XSS_MESSAGES]),
             Conv("cite", "Hostile source", [("assistant", [
                 {"type": "text", "text": "See"},
                 {"type": "source-url", "url": "javascript:window.pwned=1", "title": "<b>x</b>"},
                 {"type": "text", "text": " and"},
                 {"type": "source-url", "url": 'https://ok.example/"><script>x</script>',
                  "title": "ok"}])]),
             Conv("doc", "Hostile document", [("assistant", [
                 {"type": "data-canvas", "name": XSS_TITLE, "textdoc_type": "document",
                  "content": "# Plan\n\n<script>window.pwned=1</script>"},
                 {"type": "data-artifact", "title": "x.py",
                  "contentType": 'text/x-python"><script>window.pwned=1</script>',
                  "content": "</code></pre><script>window.pwned=1</script>"}])])]
    db = make_archive(tmp / "xss.db", convs)
    out = tmp / "out"
    export_html(tmp, db, out)
    return out


_ATTR_URL = re.compile(
    r"""\b(?:href|src|data|action|formaction|xlink:href)\s*=\s*["']?([^"'\s>]*)""", re.I)


def test_xss_payloads_stay_text(xss_out: Path) -> None:
    pages = sorted(xss_out.glob("*/conversation.html"))
    assert len(pages) == 3
    for page in pages:
        html = page.read_text()
        lowered = html.lower()
        assert "<script" not in lowered and "<img" not in lowered and "<svg" not in lowered
        assert "<iframe" not in lowered and "<object" not in lowered
        assert "<style>body" not in lowered
        assert re.search(r"<[^>]+\son\w+\s*=", html) is None, page
        tags = "".join(re.findall(r"<[a-zA-Z][^>]*>", html))
        for url in _ATTR_URL.findall(tags):
            assert url.startswith(("https://", "http://", "#", "../index.html")), url
        csp = re.search(r'http-equiv="Content-Security-Policy" content="([^"]*)"', html)
        assert csp and "script-src 'none';" in unescape(csp.group(1))
        assert unescape(csp.group(1)).startswith("default-src 'none';")
    body = "".join(bodies(page_of(xss_out, "Hostile source")).values())
    assert "&lt;b&gt;x&lt;/b&gt;" in body
    assert 'href="https://ok.example/&quot;&gt;&lt;script&gt;x&lt;/script&gt;"' in body
    assert '<sup class="cite" title="&lt;b&gt;x&lt;/b&gt;">[1]</sup>' in body  # no link
    index = (xss_out / "index.html").read_text()
    data = index.split('<script id="data" type="application/json">')[1].split("</script>")[0]
    assert "<" not in data and ">" not in data
    assert XSS_TITLE in [row[0] for row in json.loads(data)]


def test_documents_are_read_prose_rendered_and_code_in_its_language(xss_out: Path) -> None:
    """A canvas or artifact is shown as the document it is, not as a JSON part, and its
    text stays text however hostile (see test_xss_payloads_stay_text for the whole page)."""
    (body,) = bodies(page_of(xss_out, "Hostile document")).values()
    title = XSS_TITLE.replace("<", "&lt;").replace(">", "&gt;")
    assert body.startswith(
        f'<section class="document"><div class="doc-title">Canvas: {title}</div>\n'
        "<h1>Plan</h1>\n<p>&lt;script&gt;window.pwned=1&lt;/script&gt;</p>\n</section>\n"
        '<section class="document"><div class="doc-title">Artifact: x.py</div>\n'
        '<pre><code class="language-script">'
        "&lt;/code&gt;&lt;/pre&gt;&lt;script&gt;window.pwned=1&lt;/script&gt;</code></pre>"
        "</section>\n"), body
    assert "data-canvas" not in body and "part</summary>" not in body


def test_citations_of_the_apps_table_come_out_as_one_table_with_links_in_cells(
        tmp_path: Path) -> None:
    out = tmp_path / "out"
    export_html(tmp_path, app_fixture("table.db"), out)
    page = next(out.glob("*/conversation.html"))
    answer = [b for b in bodies(page).values() if "<table>" in b]
    assert len(answer) == 1
    body = answer[0]
    assert body.count("<table>") == 1 and body.count("<tr>") == 3
    cells = re.findall(r"<td>(.*?)</td>", body)
    cite = '<sup class="cite"><a href="https://example.com/{0}" title="Source {0}" ' \
           'rel="noopener noreferrer">[{0}]</a></sup>'
    assert cells == ["Bengal" + cite.format(1), "rosettes" + cite.format(2),
                     "Savannah" + cite.format(3), "solid"]
    assert f"<p>Bengals are active.{cite.format(1)}{cite.format(2)} They like water." \
           f"{cite.format(3)}</p>" in body
    # Each distinct source listed once below the answer.
    assert page.read_text().count('<div class="sources">') == 1
    assert len(re.findall(r'<li><a href="https://example\.com/\d"', page.read_text())) == 3


def test_citations_of_the_apps_realistic_answers_keep_their_blocks_whole(tmp_path: Path) -> None:
    """Each cited answer has the blocks (paragraphs, items, rows, headings) of its text
    joined without the citations: a cut never splits a sentence, an item or a row."""
    import sqlite3

    db = app_fixture("realistic.db")
    out = tmp_path / "out"
    export_html(tmp_path, db, out, status=0)  # missing attachments are warnings
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    rows = con.execute("SELECT m.id, m.parts, c.provider FROM messages m JOIN conversations c"
                       " ON c.id = m.conversation_id WHERE parts LIKE '%source-url%'").fetchall()
    con.close()
    assert rows
    rendered: dict[str, str] = {}
    for page in out.glob("*/conversation.html"):
        rendered.update(bodies(page))
    blocks = re.compile(r"<(p|li|tr|h[1-6]|td|th)>")
    for mid, parts, provider in rows:
        # zexport's joining (nothing between the pieces; Claude's blocks as paragraphs).
        joined = join_parts(json.loads(parts), provider, cite=None).text
        expected = [m.group(1) for m in blocks.finditer(MarkdownIt(
            "commonmark", {"html": False}).enable(["table", "strikethrough"]).render(joined))]
        ours = rendered[mid].partition('<div class="sources">')[0]
        assert [m.group(1) for m in blocks.finditer(ours)] == expected, mid
        cites = len([p for p in json.loads(parts) if p["type"] == "source-url"])
        assert ours.count('<sup class="cite">') == cites, mid


def test_plain_text_shortcut_gives_exactly_what_markdown_it_gives() -> None:
    """Text the engine renders without parsing (plain paragraphs) must come out as the
    parser would render it: random texts from an alphabet of plain and tricky pieces."""
    import random

    from zexport_html import engine

    pieces = list("ab Z9.,;:'\"?/%@^!é日ж🙂≥—") + [
        "\n", "\n\n", "\n\n\n", "  ", "\n ", " \n", "1. ", "\u00a0", "\u3000", "\u2028",
        "\ufeff", "\u200b", "\u0085", "*", "_", "&", "<", ">", "[", "]", "#", "-", "$", "\t"]
    parser = MarkdownIt("commonmark", {"html": False})
    rng = random.Random(14)
    plain = 0
    for _ in range(20_000):
        sample = "".join(rng.choice(pieces) for _ in range(rng.randint(0, 16)))
        shortcut = engine._plain(sample)
        if shortcut is not None:
            plain += 1
            assert shortcut == parser.render(sample), repr(sample)
    assert plain > 1000  # the shortcut was really taken
