"""A page's search record holds the words of its texts, as the index and its query see them."""

from __future__ import annotations

import random
import tempfile
from pathlib import Path

from zexport_html import engine, search


def _by_text(texts: list[str]) -> bytes:
    """The definition: each text's words in turn, each distinct word once, first seen first."""
    seen = dict.fromkeys(word for text in texts for word in search.words(text))
    return " ".join(seen).encode("utf-8")


def test_record_is_the_words_of_each_text_in_turn() -> None:
    pieces = ["Café", "CAFE", "e\u0301", "\u0301x", "ΟΔΟΣ", "Σ", "日本語", "x" * 40, "x" * 33 + "y",
              "naïve", "ﬁ", "Ⅻ", "_", "a_b", "9", " ", "\n", ".", "İ", "ß",
              # ASCII separators beside what folding changes: capital sigma's lower case
              # looks past "." and "'"; fullwidth and enclosed forms fold to ASCII
              # separators; a combining mark after a separator or at a text's start.
              "'", ":", "ΑΣ", "Β", "ｆｏｏ．ｂａｒ", "⑴", "½", "A", "-", "\u3000", ".\u0301",
              "\u00a0", "é", "E\u0301", "日",
              # ASCII letters of either case (lowered with the cut), and letters outside
              # ASCII whose case folding gives ASCII ones (Kelvin sign, long s).
              "ABC", "aBc", "Z9", "\u212a", "\u017f", "\u212aA",
              # What NFKD alone makes a capital sigma: its lower case looks past "'" too.
              "\u03f9", "Α\u03f9", "\U0001d6ba", "b"]
    rng = random.Random(14)
    for _ in range(5000):
        texts = ["".join(rng.choice(pieces) for _ in range(rng.randint(0, 8)))
                 for _ in range(rng.randint(0, 4))]
        assert search.record(texts) == _by_text(texts), texts


def test_every_character_nfkd_makes_a_capital_sigma_is_known() -> None:
    import unicodedata

    assert search.SIGMAS == "".join(chr(c) for c in range(0x110000) if "\u03a3" in
                                    unicodedata.normalize("NFKD", chr(c)))


def test_record_of_real_and_sample_texts() -> None:
    """Every conversation of the app's archives and of the sample: the same words, in the
    same order, as the definition."""
    from corpora import APP_FIXTURES
    from test_html_fast_engine import _archive_texts

    from zexport.sample import make_sample

    checked = 0
    with tempfile.TemporaryDirectory() as tmp:
        sample = Path(tmp) / "sample.db"
        make_sample(sample, conversations=60, seed=14)
        for db in (APP_FIXTURES / "realistic.db", APP_FIXTURES / "table.db", sample):
            texts = [engine.without_citations(t) for t, _ in _archive_texts(db)]
            for start in range(0, len(texts), 10):  # a few messages' texts at a time
                group = texts[start:start + 10]
                assert search.record(group) == _by_text(group)
                checked += 1
    assert checked > 50


def _postings(builder: search.IndexBuilder) -> dict[str, list[int]]:
    """The index's shards read back as the page reads them: base-36 deltas, summed."""
    out: dict[str, list[int]] = {}
    for _, body in builder.shards():
        for line in body.split("\n"):
            word, _, deltas = line.partition(":")
            numbers, total = [], 0
            for delta in deltas.split(","):
                total += int(delta, 36)
                numbers.append(total)
            out[word] = numbers
    return out


def test_the_index_lists_each_word_s_conversations() -> None:
    """Numbers far apart (deltas of one, two and four base-36 digits), given in any order."""
    builder = search.IndexBuilder()
    for number, data in [(1300, b"b a"), (0, b"a"), (5, b"a c"), (50_000, b"a"),
                         (40, b"c")]:
        builder.add(number, data)
    assert _postings(builder) == {"a": [0, 5, 1300, 50_000], "b": [1300], "c": [5, 40]}


def test_an_edited_page_s_words_count_once(tmp_path: Path) -> None:
    """A page whose kept record was edited to repeat words still lists its conversation once
    for each word."""
    page = tmp_path / "conversation.html"
    words = "soup soup Soup soup\u3000stew"  # (an ideographic space: a space when read)
    page.write_bytes(b"<html></html>\n" + search.page_comment(words.encode("utf-8")))
    builder = search.IndexBuilder()
    builder.add(0, b"soup")
    builder.add(3, search.page_record(str(page)))
    assert _postings(builder) == {"soup": [0, 3], "Soup": [3], "stew": [3]}


def test_the_index_quotes_paths_as_quote_does() -> None:
    import random
    from urllib.parse import quote

    from zexport_html.index import _quoted

    rng = random.Random(5)
    alphabet = [chr(c) for c in range(128)] + ["é", "中", "🚀", " "]
    for _ in range(5000):
        path = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 30)))
        assert _quoted(path) == quote(path), repr(path)
