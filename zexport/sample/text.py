"""Text material for the sample: markdown blocks, and where a citation may cut them.

Everything is drawn from the run's rng, so the pools are part of the
deterministic output. Blocks are rendered once per run (see
``content.Content``); for each block :func:`cut_points` says where the
app's transforms could have cut it for an inline citation (BRIEF §3): at the
end of a sentence (in a paragraph, a quote or a list item) and at the end of a
table cell, never inside code, math or a heading.
"""

from __future__ import annotations

import random
import re
from collections.abc import Sequence
from urllib.parse import quote

WORDS = (
    "the a of to and in is it that for on with as this be are by from at or an can "
    "you your we use using used data value values function file files list table "
    "query index cache server client request response error errors result results "
    "type types string number array object key keys config option options default "
    "python rust sqlite json markdown export import module package build test tests "
    "thread process worker queue socket message messages batch stream buffer memory "
    "performance fast slow simple example first second next then when if else return "
    "loop time date name path folder user model prompt answer question context step "
    "steps method class instance state update delete insert select create read write "
    "check run runs running parallel async await lock retry timeout limit size count "
    "café naïve résumé über 日本語 数据 данные 🙂 → ≥ ±"
).split()

LANGS = ("python", "javascript", "typescript", "bash", "sql", "rust", "json", "go", "", "c++")

LATEX = (
    r"E = mc^2",
    r"\int_0^1 x^2 \, dx = \frac{1}{3}",
    r"\sum_{i=1}^{n} i = \frac{n(n+1)}{2}",
    r"\nabla \cdot \mathbf{E} = \frac{\rho}{\varepsilon_0}",
    r"p(x) = \frac{1}{\sqrt{2\pi\sigma^2}} e^{-\frac{(x-\mu)^2}{2\sigma^2}}",
    r"\begin{pmatrix} a & b \\ c & d \end{pmatrix}^{-1}"
    r" = \frac{1}{ad-bc}\begin{pmatrix} d & -b \\ -c & a \end{pmatrix}",
    r"O(n \log n)",
)

TOPICS = (
    "Python list comprehension", "SQL join question", "Fix import error", "Regex help",
    "Recipe ideas", "Trip to Lisbon", "Cover letter draft", "Explain transformers",
    "Docker networking", "Git rebase vs merge", "Birthday message", "Email to landlord",
    "React useEffect loop", "Rust borrow checker", "Summarize article", "Workout plan",
    "Tax question", "Translate to German", "Bash script", "Excel formula",
)

SOURCE_SITES = (
    "en.wikipedia.example.org", "docs.python.example.org", "stackoverflow.example.com",
    "news.example.com", "blog.example.net", "arxiv.example.org", "github.example.com",
)


def sentence(rng: random.Random, words: Sequence[str]) -> str:
    ws = rng.choices(words, k=rng.randint(5, 18))
    r = rng.random()
    if r < 0.08:
        ws[rng.randrange(len(ws))] = f"`{rng.choice(words)}()`"
    elif r < 0.14:
        ws[rng.randrange(len(ws))] = f"**{rng.choice(words)}**"
    elif r < 0.17:
        ws[rng.randrange(len(ws))] = f"${rng.choice(LATEX)}$"
    elif r < 0.20:
        w = rng.choice(words)
        ws[rng.randrange(len(ws))] = f"[{w}](https://docs.example.org/{quote(w)})"
    s = " ".join(ws)
    return s[:1].upper() + s[1:] + rng.choice(".....?!:")


def paragraph(rng: random.Random, lo: int = 2, hi: int = 5) -> str:
    return " ".join(sentence(rng, WORDS) for _ in range(rng.randint(lo, hi)))


def code_block(rng: random.Random) -> str:
    lang = rng.choice(LANGS)
    w = rng.choices(WORDS[:150], k=40)  # ASCII words only in identifiers
    ident = [x for x in w if x.isascii() and x.isalpha()] or ["value"]
    lines = []
    for i in range(rng.randint(3, 18)):
        a, b, c = ident[i % len(ident)], ident[(i + 1) % len(ident)], ident[(i + 2) % len(ident)]
        if lang == "python":
            lines.append(rng.choice((f"def {a}_{b}({c}):", f"    {a} = {b}({c})",
                                     f"    return {a}.{b}", f"for {a} in {b}:",
                                     f"    print(f\"{{{a}}}\")", f"# {a} {b} {c}")))
        elif lang in ("javascript", "typescript"):
            lines.append(rng.choice((f"const {a} = await {b}({c});", f"function {a}({b}) {{",
                                     f"  return {b}.{c};", "}", f"// {a} {b}")))
        elif lang == "bash":
            lines.append(rng.choice((f"{a} --{b} {c}", f"cd {a}/{b}", f"echo \"${a}\"",
                                     f"for {a} in *.{b}; do {c} \"${a}\"; done")))
        elif lang == "sql":
            lines.append(rng.choice((f"SELECT {a}, {b} FROM {c}", f"WHERE {a} = ?",
                                     f"JOIN {b} ON {b}.id = {c}.{b}_id", f"ORDER BY {a} DESC;")))
        elif lang == "json":
            lines.append(f'  "{a}": {{"{b}": {i}, "{c}": [{i}, "{a}"]}},')
        else:
            lines.append(rng.choice((f"let {a} = {b}({c});", f"fn {a}(&self) -> {b} {{",
                                     f"    {a}.{b}()", "}", f"// {a} {b} {c}")))
    return f"```{lang}\n" + "\n".join(lines) + "\n```"


def table_block(rng: random.Random) -> str:
    cols = rng.randint(2, 5)
    head = [w.capitalize() for w in rng.choices(WORDS, k=cols)]
    rows = ["| " + " | ".join(head) + " |", "|" + "---|" * cols]
    for _ in range(rng.randint(2, 7)):
        cells = [rng.choice((rng.choice(WORDS), str(rng.randint(0, 9999)), "`x`", "✓", ""))
                 for _ in range(cols)]
        rows.append("| " + " | ".join(cells) + " |")
    return "\n".join(rows)


def list_block(rng: random.Random) -> str:
    numbered = rng.random() < 0.4
    items = []
    for i in range(rng.randint(3, 7)):
        mark = f"{i + 1}." if numbered else "-"
        items.append(f"{mark} {sentence(rng, WORDS)}")
        if rng.random() < 0.15:
            items.append(f"   - {sentence(rng, WORDS)}")
    return "\n".join(items)


def heading(rng: random.Random) -> str:
    words = rng.choices(WORDS, k=rng.randint(2, 5))
    return "#" * rng.randint(1, 4) + " " + " ".join(words).title()


def latex_block(rng: random.Random) -> str:
    f = rng.choice(LATEX)
    return rng.choice((f"$$\n{f}\n$$", f"\\[\n{f}\n\\]", f"$$ {f} $$"))


def quote_block(rng: random.Random) -> str:
    return "> " + paragraph(rng, 1, 2)



# Where a citation may cut a block. A sentence ends in . ? or ! after anything but
# a space, a dot or a digit (``1.`` is a list marker) and before a space or the end.
_SENTENCE_END = re.compile(r"(?<=[^\s.\d])[.?!](?=\s|$)")
# The end of a table cell's content: a non-blank character, then " |".
_CELL_END = re.compile(r"(?<=[^|\s]) \|")


def cut_points(block: str) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """Offsets in ``block`` where a citation may sit, in the two styles the app's
    transforms produce: before the sentence's full stop (ChatGPT: "... a Bengal cat"
    [source] ".") and after it (Claude, Perplexity). A table cell is cut where its
    content ends ("| Bengal" [source] " | rosettes |"), in both styles; the header
    row is never cited. Code, math and headings are never cut.
    """
    first = block[:1]
    if first in ("`", "#", "$", "\\"):
        return (), ()
    if first == "|":
        rows_start = block.find("\n", block.find("\n") + 1) + 1  # after header and rule
        cells = tuple(m.start() for m in _CELL_END.finditer(block, rows_start))
        return cells, cells
    ends = [m.start() for m in _SENTENCE_END.finditer(block)]
    return tuple(ends), tuple(end + 1 for end in ends)
