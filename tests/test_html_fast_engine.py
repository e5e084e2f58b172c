"""The HTML engine's shortcuts give exactly markdown-it-py's HTML.

``engine.render`` takes markdown-it-pyrs (or no parser at all, for plain
text) when it can; ``engine.render_parsed`` is markdown-it-py with the
engine's rules and no shortcut. Both must give the same bytes for every text
of corpora nobody here wrote (the CommonMark spec's examples, the app's own
archives), of the sample, and of random texts made of the pieces where the
two parsers and the math rule differ.
"""

from __future__ import annotations

import json
import random
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest
from corpora import APP_FIXTURES, commonmark_examples
from zexport_html import engine

from zexport import Source, join_parts
from zexport.sample import make_sample

pytestmark = pytest.mark.timeout(300)

Text = tuple[str, list[Source]]


def _archive_texts(db: Path) -> Iterator[Text]:
    """Every text run the page renders from ``db``'s messages, with its sources."""
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        rows = con.execute("SELECT m.parts, c.provider FROM messages m JOIN conversations c"
                           " ON c.id = m.conversation_id").fetchall()
    finally:
        con.close()
    for parts, provider in rows:
        try:
            loaded = json.loads(parts)
        except (TypeError, ValueError):
            continue
        if not isinstance(loaded, list):
            continue
        loaded = [p for p in loaded if isinstance(p, dict)]  # the sample's dirty parts
        joined = join_parts(engine.without_sentinels(loaded), provider, engine.cite_mark)
        for block in joined.blocks:
            if isinstance(block, str):
                yield block, list(joined.sources)


def _compare(texts: list[Text]) -> tuple[int, int]:
    """Assert both renderings agree on every text; return (texts, taken by the Rust
    parser)."""
    taken = 0
    for i, (text, sources) in enumerate(texts):
        ours = engine.render(text, sources, doc_id="m1")
        reference = engine.render_parsed(text, sources, doc_id="m1")
        assert ours == reference, (i, text)
        if engine._plain(text) is None and engine.render_fast(text, sources) is not None:
            taken += 1
    return len(texts), taken


def test_commonmark_spec_examples() -> None:
    n, taken = _compare([(e["markdown"], []) for e in commonmark_examples()])
    assert n == 652
    assert taken > 300  # the shortcut is really exercised (most examples take it)


@pytest.mark.parametrize("name", ["realistic.db", "table.db"])
def test_the_apps_archives(name: str) -> None:
    texts = list(_archive_texts(APP_FIXTURES / name))
    n, taken = _compare(texts)
    assert n == len(texts) > 0
    assert taken > 0


def test_the_sample(tmp_path: Path) -> None:
    db = tmp_path / "sample.db"
    make_sample(db, conversations=150, seed=14)
    texts = list(_archive_texts(db))
    n, taken = _compare(texts)
    assert n > 1000
    assert taken > n // 3
    # Citations and inline math are among what it takes.
    math = [t for t, _ in texts if "$" in t and "$$" not in t]
    assert math and any(engine.render_fast(t) for t in math)
    display = [t for t, _ in texts if "\n$$\n" in t]
    assert display and any(engine.render_fast(t) for t in display)


# Where the parsers, the math rule and the shortcut's checks meet: dollars, escapes,
# code spans and fences, links and images with math in their targets, tables, quotes,
# lists, entities, Unicode spaces, citation sentinels, emphasis and strikethrough.
PIECES = list("ab Z9.,;:'\"?/%@^!é日") + [
    "$", "$", "$", "$x", "x$", "\\$", "\\", "`", "``", "*", "_", "**", "~~", "[", "]",
    "](http://e.com/$a$)", "(", ")", "<", ">", "<http://a.b/$x$>", "|", "| a |\n|---|\n",
    "\n", "\n\n", "  ", "    ", "- ", "1. ", "> ", "# ", "```\n", "\n```\n", "![", "&", "5",
    "$5", "a$b$", " $y$ ", "\ue0001\ue001", "[a]: /u '$t$'\n", "[a]", "\t", "\u00a0",
    "\u3000", "-", "+", "=", "\n===\n", "&amp;", "\\(", "\\[", "$$", "[x](javascript:y)",
    "https://e.com", "![i](https://e.com/i.png \"t\")", "\n\n$$\n", "\n$$\n\n", "\n$$\n",
    "\n\n\\[\n", "\n\\]\n\n", "x^2", "\\frac{a}{b}", "\n\n$$ x $$\n\n", "\\[ y \\]\n\n",
    "£", "≥", "🙂", "—", "\n  ", "\n   ```\n", "\n  - "]


# Emphasis and strikethrough runs beside symbols, punctuation, letters and math: where
# the two parsers' flanking rules differ (Unicode symbols are punctuation for one only).
EMPHASIS = ["*", "**", "_", "__", "~~", "£", "≥", "a", " ", "—", ".", "🙂", "\n", "é", "5", "«",
            "$x$", "ab $y$", "`c`"]


@pytest.mark.parametrize("pieces, length", [(PIECES, 25), (EMPHASIS, 14)])
def test_random_texts_of_tricky_pieces(pieces: list[str], length: int) -> None:
    rng = random.Random(14)
    sources = [Source(number=1, url="https://s.example/1", title="one")]
    texts = ["".join(rng.choice(pieces) for _ in range(rng.randint(1, length)))
             for _ in range(15_000)]
    n, taken = _compare([(t, sources) for t in texts])
    assert taken > 2000


# Whole blocks, for texts of blocks between blank lines: where one block can reach into the
# next (a fence left open, a list item's code, a reference defined further on).
BLOCKS = ["Plain words.", "Two lines\nof text", "日本語 and café!", "```", "```python\ncode",
          "~~~", "    indented", "- item", "- item\n  more", "1. one", "2. two", "> quote",
          "> quote\nlazy", "$$\nx^2\n$$", "\\[\nx\n\\]", "| a |\n|---|\n| b |", "# Head", "---",
          "[a]: https://e.com", "[a]", "[a](", "[x](https://e.com)", "`code` and $x$",
          "see\ue0001\ue001 this", "- ```\n  code", "  ```", "1. Step:\n   ```sh\n   run\n   ```",
          "> a `\n  b `", "*em*", "", " "]


def test_random_texts_of_blocks() -> None:
    rng = random.Random(14)
    sources = [Source(number=1, url="https://s.example/1", title="one")]
    texts = []
    for _ in range(8000):
        blocks = [rng.choice(BLOCKS) if rng.random() < 0.8
                  else "".join(rng.choice(PIECES) for _ in range(rng.randint(1, 6)))
                  for _ in range(rng.randint(1, 8))]
        texts.append("".join(b + rng.choice(["\n\n", "\n\n", "\n\n\n", "\n"]) for b in blocks))
    n, taken = _compare([(t, sources) for t in texts])
    assert taken > 2000


def test_what_the_rust_parser_cannot_do_goes_to_markdown_it_py() -> None:
    """Display math inside a paragraph, footnotes, task items, refused link schemes, Unicode
    spaces, emphasis flanked by a symbol take the engine (each would come out differently
    from markdown-it-pyrs)."""
    for text in ["a\n$$\nx\n$$\n", "a $$x$$ b\n", "\\(x\\)\n", "a**≥**b\n",
                 "a[^1]\n\n[^1]: n\n", "- [ ] todo\n", "[a](javascript:x)\n", "a&#106;\n",
                 "\u3000a\n", "> a\n-\n", "a ~~~b~~~\n",
                 "$x$ at the start of a block ending in 5\n",
                 "- $x$ starts an item\n- whose block ends in ²\n", "$x$ a\\\n===\n",
                 "$xa$b$``\\"]:
        assert engine.render_fast(text) is None, text
    # ... and what it can, it does: inline and display math, links, citations, tables.
    for text in ["Let $x^2$ be\n", "$$\nx^2\n$$\n", "$$ x $$\n", "**≥ more**\n",
                 "a\n\n\\[\n\\sqrt{2}\n\\]\n", "[a](https://e.com)\n", "See\ue0001\ue001 here\n",
                 "| a |\n|---|\n| b |\n", "$x$ at the start of a line\n", "1. $x$ item\n"]:
        assert engine.render_fast(text) is not None, text


def test_an_ordered_item_on_a_quote_s_lazy_line_takes_the_engine() -> None:
    """After a block quote's paragraph, a line starting an ordered item not numbered 1 is
    the paragraph's lazy continuation for markdown-it-pyrs (CommonMark) and a new list
    after the quote for markdown-it-py: such text takes markdown-it-py."""
    for text in ['> —1. ![i](https://e.com/i.png "t")x^21. \n===\n91. %\n',
                 "> a\n===\n91. b\n", "> a\nb\n91. b\n", "> a\n2) b\n", "> a\n 2.\tb\n",
                 "- > a\n  2. b\n", "> 1. a\n2. b\n", "> a\n> b\n123456789. c\n"]:
        assert engine.render(text) == engine.render_parsed(text), text
        assert engine.render_fast(text) is None, text
    # Numbered lists with no quote paragraph right above still take the Rust parser.
    for text in ["1. a\n2. b\n", "> a\n\n2. b\n", "> a\n1. b\n", "> a\n01) b\n",
                 "x > y\n\n1. a\n2. b\n"]:
        assert engine.render_fast(text) is not None, text


def test_a_lazy_quote_line_a_fence_in_a_tight_item_and_a_paren_take_the_engine() -> None:
    """Where markdown-it-pyrs writes other bytes: the blanks starting a block quote's lazy
    line inside a code span (markdown-it-py keeps them), a fence right after an item's
    text in a tight list (markdown-it-py writes no line break before its <pre>), and a
    defined reference followed by "(" at a line's end (markdown-it-py makes no link)."""
    for text in ["> a ```\n    b ```\n", "> a `\nx\n\tb `\n", "- > a ```\n  b ```\n",
                 "1. Install:\n   ```bash\n   pip install x\n   ```\n2. Next\n",
                 "- a\n  b\n  ```\n  x\n  ```\n", "[a](\n\n[a]: https://e.com\n",
                 "- ![a](  \n\n[a]: https://e.com\n"]:
        assert engine.render(text) == engine.render_parsed(text), text
        assert engine.render_fast(text) is None, text
    # A quote's own lines, an indented line after a blank one, an item's paragraphs: Rust.
    for text in ["> a ```\n> b ```\n", "> a\n\n    b `c`\n", "- a\n\n  b\n",
                 "[a]( x\n\n[a]: https://e.com\n", "[a](\n"]:
        assert engine.render_fast(text) is not None, text
