"""The index's full-text search: folding, words, and a compact sharded index.

Folding is the one definition of "the same word" for titles, message text
and the query: NFKD, combining marks removed, lower case. ``index.js`` does
exactly the same to the query (same ranges, same order; a browser test
checks both agree), so "Café", "CAFE" and "cafe" find each other everywhere.

Words are runs of letters and digits; Han and kana characters are words of
their own (those scripts have no spaces), so a query in Chinese or Japanese
matches conversations holding all of its characters.

The index is an inverted file: every word with the numbers (places in the
index's list) of the conversations holding it, delta-encoded in base 36.
It is cut into shards of consecutive words, each about
:data:`SHARD_BYTES`, written as small ``.js`` files the index page loads
with a ``<script>`` element only when a query needs them: ``fetch`` does not
work from ``file://``, a script element does, and a page of 100,000
conversations opens without reading the text index at all.
"""

from __future__ import annotations

import json
import os
import re
import unicodedata
from array import array
from collections import defaultdict
from collections.abc import Iterable, Iterator
from itertools import chain, pairwise

# Combining marks removed by folding; index.js uses the same class.
MARKS = "\u0300-\u036f\u1ab0-\u1aff\u1dc0-\u1dff\u20d0-\u20ff\ufe20-\ufe2f\u3099\u309a"
_MARKS = re.compile(f"[{MARKS}]")
# Scripts without spaces between words: each character is a word.
IDEOGRAPHS = "\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff"
_WORD = re.compile(f"[{IDEOGRAPHS}]|[^\\W_{IDEOGRAPHS}]+")
MAX_WORD = 32  # longer words are cut: a prefix query still finds them
SHARD_BYTES = 200_000


def fold(text: str) -> str:
    """Text as search compares it: accents dropped, case folded (see module doc)."""
    if text.isascii():
        return text.lower()
    return _MARKS.sub("", unicodedata.normalize("NFKD", text)).lower()


def words(text: str) -> Iterator[str]:
    """The folded words of ``text``, each cut to :data:`MAX_WORD` characters."""
    for word in _WORD.findall(fold(text)):
        yield word[:MAX_WORD]


# Bytes of UTF-8 text that can be in a word: ASCII letters (in lower case) and digits, and
# every byte of a character outside ASCII (those are decided by _WORD); the others become
# spaces.
_TOKEN_BYTES = bytes(b if b >= 0x80 else ord(chr(b).lower()) if chr(b).isalnum() else 0x20
                     for b in range(256))


# What NFKD makes a capital sigma (test_html_search_record checks the list is whole).
SIGMAS = "\u03a3\u03f9\U0001d6ba\U0001d6f4\U0001d72e\U0001d768\U0001d7a2"
_SIGMAS = frozenset(SIGMAS)


def record(texts: Iterable[str]) -> bytes:
    """A conversation's distinct words, space-separated, in first-seen order: the same as
    :func:`words` of each text in turn.

    A conversation repeats its words many times, and folding and the word regex cost
    per character, so the text is first cut at ASCII's non-word characters and its ASCII
    letters put in lower case (one bytes translation and a split, in C), and only its
    distinct pieces are folded and searched for words: a piece all ASCII is a word as it
    is. That gives the same words in the same order, because folding works character by
    character (no piece reaches across the spaces between them) and puts ASCII letters in
    lower case, and ASCII characters are never part of what else it changes, except for
    capital sigma (or what folds to it), whose lower case depends on its neighbours:
    text holding one is folded whole first.
    """
    text = "\n".join(texts)
    if "\u03a3" in text:
        text = fold(text)
    pieces = dict.fromkeys(text.encode("utf-8").translate(_TOKEN_BYTES).split())
    if not pieces:
        return b""
    found: list[str] = []
    for piece in b" ".join(pieces).decode("utf-8").split(" "):
        if piece.isascii():
            found.append(piece)
        elif _SIGMAS.isdisjoint(piece):
            found += _WORD.findall(fold(piece))
        else:  # (a sigma only NFKD makes: Ϲ, the mathematical ones)
            return record([fold(text)])
    seen = dict.fromkeys(found)
    if seen and max(map(len, seen)) > MAX_WORD:  # in C: a record has ~100s of words
        seen = dict.fromkeys(word[:MAX_WORD] for word in seen)
    return " ".join(seen).encode("utf-8")


WORDS_OPEN, WORDS_CLOSE = "<!-- zexport-words ", " -->"
_WORDS_OPEN, _WORDS_CLOSE = WORDS_OPEN.encode(), WORDS_CLOSE.encode()


def page_comment(data: bytes) -> bytes:
    """The record as a comment at the end of the page, for a later run that skips the page
    (words hold only letters and digits, so they cannot end the comment)."""
    return b"".join([_WORDS_OPEN, data, _WORDS_CLOSE, b"\n"])


def page_record(path: str) -> bytes:
    """The record kept in an exported page (never following a symlink), each word once
    (the page may have been edited); empty if none."""
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
        with open(fd, "rb") as fh:
            page = fh.read()
    except OSError:
        return b""
    start = page.rfind(_WORDS_OPEN)
    end = page.find(_WORDS_CLOSE, start)
    if start < 0 or end < 0:
        return b""
    words = page[start + len(WORDS_OPEN):end].decode("utf-8", "replace").split()
    return " ".join(dict.fromkeys(words)).encode("utf-8")


def _b36(n: int) -> str:
    digits = "0123456789abcdefghijklmnopqrstuvwxyz"
    out = ""
    while True:
        n, r = divmod(n, 36)
        out = digits[r] + out
        if not n:
            return out


def _numbers() -> array[int]:
    return array("I")


def _encode(postings: array[int], digits: list[str]) -> str:
    """The deltas of increasing ``postings`` in base 36, comma-separated; ``digits[n]`` is
    ``n`` in base 36 (made once for every delta there can be, then looked up)."""
    return ",".join([digits[n - prev] for prev, n in pairwise(chain((0,), postings))])


class IndexBuilder:
    """Collects word -> conversation numbers, then writes the shards."""

    def __init__(self) -> None:
        self.postings: defaultdict[str, array[int]] = defaultdict(_numbers)
        self.last = -1
        self.unordered = False
        self.highest = 0

    def add(self, number: int, data: bytes) -> None:
        """Add conversation ``number``'s record (each number once, each word once in a
        record, as :func:`record` and :func:`page_record` give them; fastest in increasing
        order)."""
        self.unordered |= number < self.last
        self.last = number
        self.highest = max(self.highest, number)
        postings = self.postings
        for word in data.decode("utf-8", "replace").split():
            postings[word].append(number)

    def shards(self) -> list[tuple[str, str]]:
        """(first word, body) of each shard; a body is ``word:deltas`` lines.

        Words are sorted as JavaScript compares strings (UTF-16 code units) and
        cut into runs of about :data:`SHARD_BYTES`, so the page finds the shards
        a prefix needs by comparing it with each shard's first word.
        """
        if self.unordered:
            for p in self.postings.values():
                p[:] = array("I", sorted(p))
        out: list[tuple[str, str]] = []
        lines: list[str] = []
        size = 0
        digits = [_b36(n) for n in range(self.highest + 1)]
        for word in sorted(self.postings, key=lambda w: w.encode("utf-16-be")):
            line = f"{word}:{_encode(self.postings[word], digits)}"
            if lines and size + len(line) > SHARD_BYTES:
                out.append((lines[0].partition(":")[0], "\n".join(lines)))
                lines, size = [], 0
            lines.append(line)
            size += len(line) + 1
        if lines:
            out.append((lines[0].partition(":")[0], "\n".join(lines)))
        return out


def shard_script(number: int, body: str) -> bytes:
    """A shard as the script the index page loads: one call to ``zexportShard``."""
    text = json.dumps(body, ensure_ascii=False)
    text = text.replace("\u2028", "\\u2028").replace("\u2029", "\\u2029")
    return f"zexportShard({number},{text});\n".encode()
