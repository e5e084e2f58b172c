"""Exported HTML in a real headless Chromium: rendering, safety, and the index's search."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from cdp import Page
from conftest import tree_digest
from html_archive import Conv, export_html, make_archive, page_of, text
from test_html_render import NESTED_ANSWER, XSS_MESSAGES, XSS_TITLE

pytestmark = pytest.mark.timeout(60)

WIDE_TABLE = "| " + " | ".join(f"column {i}" for i in range(30)) + " |\n|" + "---|" * 30 + "\n" \
    + "| " + " | ".join(f"value{i}" for i in range(30)) + " |\n"
PAGE_TEXT = (NESTED_ANSWER + "\n# A heading\n\n### A smaller heading\n\n"
             "Inline $e^{i\\pi} + 1 = 0$.\n\n$$\n\\sum_{k=1}^{n} k = \\frac{n(n+1)}{2}\n$$\n\n"
             "| a | b |\n|---|---|\n"
             "| x \\| y | z |\n\n" + WIDE_TABLE
             + "\n![pixel](data:image/png;base64,iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAf"
               "FcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg==)\n")


@pytest.fixture(scope="module")
def out(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tmp = tmp_path_factory.mktemp("browser")
    convs = [
        Conv("page", "Rendering", [("user", text("Show me everything")),
                                   ("assistant", text(PAGE_TEXT))]),
        Conv("xss", XSS_TITLE, [("assistant", text(m)) for m in XSS_MESSAGES]),
        # Sorted by update, "Old but updated" is the newest; by creation, the oldest.
        Conv("old", "Old but updated", [("user", text("Le café crème est délicieux"))],
             created_at=1_500_000_000, updated_at=1_730_000_000),
        Conv("mid", "Über Résumé", [("user", text("nothing to see"))],
             created_at=1_600_000_000, updated_at=1_600_000_000),
        Conv("new", "Breakfast", [("user", text("Toast and 東京タワー, with marmalade."))],
             created_at=1_700_000_000, updated_at=1_700_000_100),
        Conv("undated", "No dates", [("user", text("marmalade again"))],
             created_at=None, updated_at=None),
    ]
    db = make_archive(tmp / "browser.db", convs)
    result = tmp / "out"
    export_html(tmp, db, result)
    return result


def _js(page: Page, expression: str) -> object:
    return page.eval(f"(() => {{ {expression} }})()")


def test_conversation_page_renders_math_lists_tables_and_reads_well(out: Path, page: Page) -> None:
    page.goto(page_of(out, "Rendering").as_uri())
    assert page.errors() == []
    body = "document.querySelectorAll('article.msg > div.body')[1]"
    # The nested answer: numbered list, bullets inside, the YAML block inside its item.
    assert _js(page, f"""const b = {body};
        const code = b.querySelector('ol > li > ul > li > pre > code.language-yaml');
        return code && code.closest('ol > li').textContent.includes('Configure it');""") is True
    assert _js(page, f"return {body}.querySelectorAll(':scope > ol > li').length;") == 3
    # Math is laid out as MathML (a fraction has height; the block is centred math).
    assert _js(page, f"""const m = {body}.querySelectorAll('math');
        return [m.length, getComputedStyle(m[1]).display,
                m[1].querySelector('mfrac').getBoundingClientRect().height > 20];""") == [
        2, "block math", True]
    # The escaped pipe stays in its cell.
    assert _js(page, f"""const t = {body}.querySelectorAll('table')[0];
        return [...t.querySelectorAll('td')].map(td => td.textContent);""") == ["x | y", "z"]
    # A wide table scrolls inside the column; the page does not widen.
    assert _js(page, f"""const t = {body}.querySelectorAll('table')[1];
        return [t.scrollWidth > t.clientWidth, t.getBoundingClientRect().right
                <= {body}.getBoundingClientRect().right + 1,
                document.documentElement.scrollWidth <= window.innerWidth];""") == [
        True, True, True]
    # Message headings rank below the role heading in size.
    sizes = _js(page, f"""const px = e => parseFloat(getComputedStyle(e).fontSize);
        const b = {body};
        return [px(b.parentElement.querySelector('.role')), px(b.querySelector('h1')),
                px(b.querySelector('h3')), px(b.querySelector('p'))];""")
    assert isinstance(sizes, list)
    role, h1, h3, para = sizes
    assert role > h1 > h3 >= para
    # The inline image fits the column.
    assert _js(page, f"""const i = {body}.querySelector('img');
        return i.getBoundingClientRect().width <= {body}.getBoundingClientRect().width;""") is True
    # Dark mode follows the system; print uses light colours.
    page.send("Emulation.setEmulatedMedia", features=[
        {"name": "prefers-color-scheme", "value": "dark"}])
    assert page.eval("getComputedStyle(document.body).backgroundColor") == "rgb(22, 23, 26)"
    page.send("Emulation.setEmulatedMedia", media="print", features=[
        {"name": "prefers-color-scheme", "value": "dark"}])
    assert page.eval("getComputedStyle(document.body).backgroundColor") == "rgb(255, 255, 255)"
    assert {u.split(":")[0] for u in page.requests()} <= {"file", "data"}


def test_xss_payloads_run_nothing_in_the_browser(out: Path, page: Page) -> None:
    xss_page = next(p for p in out.glob("*/conversation.html") if "pwned" in p.read_text())
    for target in (xss_page, out / "index.html"):
        page.goto(target.as_uri())
        assert page.eval("typeof window.pwned") == "undefined"
        found = _js(page, """return [document.querySelectorAll('main script, main iframe, '
            + 'main object, main embed, main svg, main img, main style').length,
            [...document.querySelectorAll('*')].filter(e => [...e.attributes].some(
                a => a.name.startsWith('on'))).length,
            [...document.querySelectorAll('[href], [src]')].map(
                e => e.getAttribute('href') || e.getAttribute('src')).filter(
                u => !/^(https?:\\/\\/|#|\\.\\.\\/index\\.html$|[^:]*\\/conversation\\.html$)/
                    .test(u))
            ];""")
        assert found == [0, 0, []], target
    page.goto((out / "index.html").as_uri())
    page.eval("document.getElementById('q').focus()")
    page.type("pwned")
    page.wait_for("document.body.dataset.state === 'ready'")
    assert page.eval("[...document.querySelectorAll('#list li a')].map(a => a.textContent)") == [
        XSS_TITLE]
    assert page.eval("typeof window.pwned") == "undefined"


def _search(page: Page, query: str) -> list[str]:
    page.eval(f"""(() => {{ const q = document.getElementById('q'); q.value = {json.dumps(query)};
                 q.dispatchEvent(new Event('input')); }})()""")
    page.wait_for("document.body.dataset.state === 'ready'")
    titles = page.eval("[...document.querySelectorAll('#list li a')].map(a => a.textContent)")
    assert isinstance(titles, list)
    return titles


def test_index_searches_message_text_ignoring_accents_and_case(out: Path, page: Page) -> None:
    page.goto((out / "index.html").as_uri())
    assert page.errors() == []
    assert page.eval("document.body.dataset.state") == "ready"
    assert [u for u in page.requests() if "index-search" in u] == []  # nothing loaded yet
    assert _search(page, "CAFE") == ["Old but updated"]          # a word of a message only
    assert _search(page, "crème DÉLIC") == ["Old but updated"]   # every word, as prefixes
    assert _search(page, "uber resume") == ["Über Résumé"]        # the title, folded
    assert _search(page, "marmalade") == ["Breakfast", "No dates"]
    assert _search(page, "東京") == ["Breakfast"]
    assert _search(page, "cafe toast") == []
    assert _search(page, "yaml hosts") == ["Rendering"]
    assert {u.split(":")[0] for u in page.requests()} <= {"file", "data"}
    assert any("index-search/s0.js" in u for u in page.requests())
    assert page.errors() == []


def test_search_folds_the_query_exactly_as_the_index_was_folded(out: Path, page: Page) -> None:
    from zexport_html import search  # the installed plugin's own folding

    page.goto((out / "index.html").as_uri())
    samples = ["Café CRÈME", "Ångström", "İstanbul", "Straße", "ﬁne ½", "ｈｅｌｌｏ",
               "Ǆemal", "東京タワー", "がぎぐ", "naïve_coöperation", "x²+y²", "Ⅻ century",
               "مرحبا", "Ελληνικά"]
    got = page.eval(f"{json.dumps(samples)}.map(s => window.zexportWords(s))")
    assert got == [list(search.words(s)) for s in samples]


def test_newest_first_sorts_by_the_update_time_shown(out: Path, page: Page) -> None:
    page.goto((out / "index.html").as_uri())
    page.eval("""(() => { const o = document.getElementById('order'); o.value = 'newest';
                 o.dispatchEvent(new Event('input')); })()""")
    rows = page.eval("""[...document.querySelectorAll('#list li')].map(li =>
        [li.querySelector('a').textContent, li.querySelector('.when').textContent])""")
    assert isinstance(rows, list)
    assert [r[0] for r in rows] == ["Old but updated", "Breakfast", "Rendering", XSS_TITLE,
                                    "Über Résumé", "No dates"]
    shown = [r[1].split(" ")[0] for r in rows if not r[1].startswith("no date")]
    assert shown == sorted(shown, reverse=True) and shown[0] == "2024-10-27"


def test_a_rerun_that_skips_every_conversation_keeps_the_same_search_index(
        out: Path, tmp_path: Path) -> None:
    db = next(out.parent.glob("*.db"))
    again = tmp_path / "again"
    export_html(tmp_path, db, again)
    first = {k: v for k, v in tree_digest(again).items() if k.startswith("index")}
    export_html(tmp_path, db, again)  # everything is unchanged: nothing is rendered
    report = json.loads((again / ".zexport" / "report.json").read_text())
    assert report["counts"]["skipped"] == 6, report["counts"]
    assert {k: v for k, v in tree_digest(again).items() if k.startswith("index")} == first
