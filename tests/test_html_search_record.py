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
              "\u00a0", "é", "E\u0301", "日"]
    rng = random.Random(14)
    for _ in range(5000):
        texts = ["".join(rng.choice(pieces) for _ in range(rng.randint(0, 8)))
                 for _ in range(rng.randint(0, 4))]
        assert search.record(texts) == _by_text(texts), texts


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
