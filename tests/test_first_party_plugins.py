"""plugins/zexport-html and plugins/zexport-jsonl, installed with pip as a user would.

``.ci/run`` installs both packages into the venv before pytest; these tests
check that the installed distributions really provide the entry points
(failing, not skipping, when they do not), then export with them. The HTML
is opened in a real headless Chromium (Debian's ``chromium``).
"""

from __future__ import annotations

import json
import re
import shutil
import sqlite3
import subprocess
import sys
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from cdp import Page
from conftest import run_cli, tree_digest
from html_archive import env_for

pytestmark = pytest.mark.timeout(120)

INSTALL_HINT = "install it: .venv/bin/pip install ./plugins/{dist} (as .ci/run does)"
SCREENS = Path(__file__).resolve().parent.parent / "screens"


plugin_env = env_for  # a private HOME and runtime folder, and only installed plugins


def export(tmp: Path, db: Path, out: Path, fmt: str, *extra: str) -> Any:
    res = run_cli(["run", "--db", str(db), "--out", str(out), "--format", fmt, "--tz", "UTC",
                   "--progress", "none", *extra], plugin_env(tmp), cwd=tmp)
    assert res.returncode == 0, res.stderr
    assert "not loaded" not in res.stderr, res.stderr
    return res


def conversations(db: Path) -> list[tuple[str, str, str]]:
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    rows = con.execute("SELECT id, title, provider FROM conversations "
                       "ORDER BY created_at IS NULL, created_at, id").fetchall()
    con.close()
    return rows


def matches_words(db: Path, cid: str, title: str, words: list[str]) -> bool:
    """What the index's search should find, worked out from the archive for ASCII words:
    each word is in the title, or starts a word of one of the messages' text parts."""
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    texts = []
    for (parts,) in con.execute("SELECT parts FROM messages WHERE conversation_id = ?", (cid,)):
        try:
            texts += [str(p.get("text") or "") for p in json.loads(parts)
                      if isinstance(p, dict) and p.get("type") == "text"]
        except (ValueError, AttributeError):
            texts.append(parts)
    con.close()
    found = set(re.findall(r"[^\W_]+", " ".join(texts).lower()))
    return all(w in title.lower() or any(f.startswith(w) for f in found) for w in words)


@pytest.mark.parametrize(("name", "dist"), [("html", "zexport-html"),
                                            ("jsonl", "zexport-jsonl")])
def test_plugin_is_installed_as_a_distribution_with_an_entry_point(name: str,
                                                                   dist: str) -> None:
    eps = {ep.name: ep for ep in entry_points(group="zexport")}
    assert name in eps, f"no entry point {name!r} in group 'zexport': " + INSTALL_HINT.format(
        dist=dist)
    ep = eps[name]
    assert ep.dist is not None and ep.dist.name == dist
    module = ep.load()
    # Installed into site-packages, not imported from the source tree.
    assert "site-packages" in str(module.__file__), module.__file__


def test_discovering_the_html_format_does_not_load_its_markdown_engine(
        tmp_path: Path) -> None:
    # Every run's controller imports every installed format's package (to check and name
    # them); markdown-it and its plugins cost it ~45 ms of CPU in a run that writes no page.
    probe = ("import sys; from zexport.plugins import load_registry; "
             "formats = load_registry().formats; "
             "print('html' in formats, sorted(m for m in sys.modules if m.startswith("
             "('markdown_it', 'mdit_py_plugins', 'latex2mathml', 'zexport_html.'))))")
    res = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                         env=plugin_env(tmp_path), cwd=tmp_path, timeout=60, check=False)
    assert res.returncode == 0, res.stderr
    assert res.stdout.split(None, 1) == ["True", "[]\n"]


def test_formats_lists_the_installed_plugins(tmp_path: Path) -> None:
    res = run_cli(["formats"], plugin_env(tmp_path), cwd=tmp_path)
    assert res.returncode == 0
    assert re.search(r"^  html .*\[zexport-html 0\.1\.0\]$", res.stdout, re.M)
    assert re.search(r"^  jsonl .*\[zexport-jsonl 0\.1\.0\]$", res.stdout, re.M)
    assert "-o theme=... [auto|light|dark]" in res.stdout
    assert "Broken" not in res.stdout


# -- JSONL ------------------------------------------------------------------------------
def test_jsonl_one_file_fine_tuning_shape_deterministic(sample_db: Path,
                                                        tmp_path: Path) -> None:
    outputs = []
    for workers in ("1", "3"):
        out = tmp_path / f"out{workers}"
        export(tmp_path, sample_db, out, "jsonl", "--workers", workers, "--batch-size", "3",
               "-o", "metadata=true", "-o", "min_messages=1")
        files = sorted(p.relative_to(out).as_posix() for p in out.iterdir())
        assert files == [".zexport", "conversations.jsonl"]  # no per-conversation folders
        outputs.append((out / "conversations.jsonl").read_bytes())
    assert outputs[0] == outputs[1]
    lines = outputs[0].decode().splitlines()
    order = [cid for cid, _, _ in conversations(sample_db)]
    docs = [json.loads(line) for line in lines]
    ids = [d["id"] for d in docs]
    assert ids == [cid for cid in order if cid in set(ids)]  # export order
    assert len(ids) >= len(order) - 3  # only conversations with no text at all are left out
    for doc in docs:
        assert set(doc) == {"id", "title", "provider", "messages"}
        assert doc["messages"]
        for m in doc["messages"]:
            assert set(m) == {"role", "content"}
            assert m["role"] in ("system", "user", "assistant")
            assert m["content"].strip()


def test_jsonl_default_has_only_messages_and_bad_option_is_refused(sample_db: Path,
                                                                   tmp_path: Path) -> None:
    out = tmp_path / "out"
    export(tmp_path, sample_db, out, "jsonl")
    for line in (out / "conversations.jsonl").read_text().splitlines():
        doc = json.loads(line)
        assert list(doc) == ["messages"] and len(doc["messages"]) >= 2
    res = run_cli(["run", "--db", str(sample_db), "--out", str(tmp_path / "bad"), "--format",
                   "jsonl", "-o", "min_messages=-1"], plugin_env(tmp_path), cwd=tmp_path)
    assert res.returncode == 2
    assert "option 'min_messages' of format 'jsonl': expected a count of 0 or more" in res.stderr


# -- HTML -------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def html_out(sample_db: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    tmp = tmp_path_factory.mktemp("html")
    out = tmp / "out"
    export(tmp, sample_db, out, "html", "--workers", "2")
    return out


def test_html_pages_and_index_are_written_and_deterministic(
        html_out: Path, sample_db: Path, tmp_path: Path) -> None:
    pages = sorted(html_out.glob("*/conversation.html"))
    assert len(pages) == len(conversations(sample_db))
    assert (html_out / "index.html").is_file()
    again = tmp_path / "again"
    export(tmp_path, sample_db, again, "html", "--workers", "1")
    assert tree_digest(again) == tree_digest(html_out)


def test_html_escapes_hostile_text_and_loads_nothing_from_the_network(html_out: Path,
                                                                      sample_db: Path) -> None:
    hostile = [t for _, t, _ in conversations(sample_db) if "<" in t]
    assert hostile, "the sample is expected to hold titles with markup"
    index = (html_out / "index.html").read_text()
    # The rows and the search shards' list (JSON data blocks), and the index's own code.
    assert index.count("<script") == 3
    for page in html_out.glob("*/conversation.html"):
        text = page.read_text()
        assert "<script" not in text.lower(), page
        assert not re.search(r"""(src|href)=["']?(https?:)?//""", text.split("<main>")[0])
        assert re.search(r"""<(img|link|iframe|object|embed)[^>]+(src|href)="(https?:)?//""",
                         text) is None, page
        assert 'href="javascript:' not in text
    assert "\\u003cscript" in index or not any("<script" in t for t in hostile)


def save_screenshot(page: Page, tmp_path: Path, name: str, dark: bool = False) -> Path:
    path = tmp_path / name
    page.screenshot(path, dark=dark)
    assert path.read_bytes().startswith(b"\x89PNG")
    SCREENS.mkdir(exist_ok=True)
    shutil.copy(path, SCREENS / name)
    return path


@pytest.mark.timeout(40)
def test_index_in_chromium_search_and_filters(html_out: Path, page: Page, sample_db: Path,
                                               tmp_path: Path) -> None:
    rows = conversations(sample_db)
    page.goto((html_out / "index.html").as_uri())
    assert page.errors() == []
    assert page.eval("document.getElementById('count').textContent") == f"{len(rows)} conversations"
    assert page.eval("document.querySelectorAll('#list li').length") == len(rows)
    # Hostile titles are shown as text, and nothing ran.
    assert page.eval("document.querySelectorAll('#list script, #list img').length") == 0
    save_screenshot(page, tmp_path, "index.png")
    # Typing filters the list.
    page.eval("document.getElementById('q').focus()")
    page.type("new chat")
    expected = [t for _, t, _ in rows if "new chat" in t.lower()]
    assert 0 < len(expected) < len(rows)
    page.wait_for("document.body.dataset.state === 'ready'")
    shown = page.eval("[...document.querySelectorAll('#list li a')].map(a => a.textContent)")
    assert shown == expected
    assert page.eval("document.getElementById('count').textContent") == (
        f"{len(expected)} of {len(rows)} conversations")
    save_screenshot(page, tmp_path, "index-search.png", dark=True)
    # The provider filter narrows further; clearing the search widens again.
    page.eval("""(() => { const s = document.getElementById('provider'); s.value = 'claude';
                 s.dispatchEvent(new Event('input')); })()""")
    shown = page.eval("[...document.querySelectorAll('#list li .badge')].map(b => b.textContent)")
    assert shown == [p for cid, t, p in rows
                     if matches_words(sample_db, cid, t, ["new", "chat"]) and p == "claude"]
    page.eval("""(() => { const q = document.getElementById('q'); q.value = '';
                 q.dispatchEvent(new Event('input')); })()""")
    assert page.eval("document.querySelectorAll('#list li').length") == sum(
        1 for _, _, p in rows if p == "claude")
    # A date range.
    page.eval("""(() => { for (const [id, v] of [['provider', ''], ['from', '2023-01-01'],
                 ['to', '2023-12-31']]) { const e = document.getElementById(id); e.value = v;
                 e.dispatchEvent(new Event('input')); } })()""")
    dates = page.eval("[...document.querySelectorAll('#list .when')].map(w => w.textContent)")
    assert dates and all(d.startswith("2023-") for d in dates)
    assert page.errors() == []
    assert {u.split(":")[0] for u in page.requests()} <= {"file", "data"}


@pytest.mark.timeout(40)
def test_conversation_page_in_chromium_shows_messages_and_images(
        html_out: Path, page: Page, tmp_path: Path) -> None:
    candidates = []
    for html_page in sorted(html_out.glob("*/conversation.html")):
        text = html_page.read_text()
        if "<img " in text and '<details class="alts"' in text:
            candidates.append(html_page)
    assert candidates, "the sample should have a conversation with images and branches"
    target = max(candidates, key=lambda p: p.read_text().count('class="msg '))
    page.goto(target.as_uri())
    assert page.errors() == []
    assert page.eval("document.querySelectorAll('article.msg').length") == target.read_text(
    ).count('<article class="msg ')
    assert page.eval("document.querySelector('main article.msg .body').innerText.length") > 0
    # Images are loading=lazy: ask for each one now and wait until it is decoded.
    images = page.eval("""Promise.all([...document.images].map(i => {
        i.loading = 'eager';
        return i.decode().then(() => [i.getAttribute('src'), i.naturalWidth],
                               () => [i.getAttribute('src'), 0]); }))""")
    assert images
    for src, width in images:
        if src.lower().endswith(".png"):  # the sample's PNGs are real images
            assert width > 0, src
    assert page.eval("document.querySelector('details.alts').open") is False
    assert page.eval("getComputedStyle(document.body).backgroundColor") == "rgb(251, 251, 249)"
    page.eval("document.querySelector('details.alts').open = true")
    save_screenshot(page, tmp_path, "conversation.png")
    save_screenshot(page, tmp_path, "conversation-dark.png", dark=True)
    # Dark mode follows the system (prefers-color-scheme).
    assert page.eval("getComputedStyle(document.body).backgroundColor") == "rgb(22, 23, 26)"
    page.eval("document.querySelector('details.alts').scrollIntoView()")
    save_screenshot(page, tmp_path, "conversation-branches.png")
    assert page.errors() == []
    assert {u.split(":")[0] for u in page.requests()} <= {"file", "data"}
    # The page links back to the index, which exists.
    assert (target.parent / page.eval(
        "document.querySelector('.crumbs a').getAttribute('href')")).resolve() == (
        html_out / "index.html").resolve()
    assert quote(target.parent.name) in (html_out / "index.html").read_text()


def test_html_index_is_written_even_when_a_conversation_is_titled_index_html(
        tmp_path: Path) -> None:
    """A title "index.html" with no date (NULL created_at) used to take the folder
    ``index.html``: the index could not be written there (run "partial", exit 1)."""
    db = tmp_path / "index.db"
    con = sqlite3.connect(db)
    from zexport.schema import DDL
    con.executescript(DDL)
    for cid, title, created in (("c1", "index.html", None), ("c2", "INDEX.HTML", None),
                                ("c3", "Fine", 1700000000)):
        con.execute("INSERT INTO conversations (id, title, provider, created_at)"
                    " VALUES (?, ?, 'claude', ?)", (cid, title, created))
        con.execute("INSERT INTO messages (id, conversation_id, role, parts, order_index)"
                    " VALUES (?, ?, 'user', '[{\"type\":\"text\",\"text\":\"hi\"}]', 0)",
                    (f"m-{cid}", cid))
    con.commit()
    con.close()
    out = tmp_path / "out"
    res = export(tmp_path, db, out, "html")
    assert res.returncode == 0, res.stdout + res.stderr
    assert (out / "index.html").is_file()
    assert sorted(p.parent.name for p in out.glob("*/conversation.html")) == [
        "2023-11-14 Fine", "INDEX.HTML (c2)", "index.html (c1)"]
