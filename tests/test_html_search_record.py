"""A page's search record holds the words of its texts, as the index and its query see them."""

from __future__ import annotations

import random

from zexport_html import search


def _by_text(texts: list[str]) -> bytes:
    """The definition: each text's words in turn, each distinct word once, first seen first."""
    seen = dict.fromkeys(word for text in texts for word in search.words(text))
    return " ".join(seen).encode("utf-8")


def test_record_is_the_words_of_each_text_in_turn() -> None:
    pieces = ["Café", "CAFE", "e\u0301", "\u0301x", "ΟΔΟΣ", "Σ", "日本語", "x" * 40, "x" * 33 + "y",
              "naïve", "ﬁ", "Ⅻ", "_", "a_b", "9", " ", "\n", ".", "İ", "ß"]
    rng = random.Random(14)
    for _ in range(2000):
        texts = ["".join(rng.choice(pieces) for _ in range(rng.randint(0, 8)))
                 for _ in range(rng.randint(0, 4))]
        assert search.record(texts) == _by_text(texts), texts
