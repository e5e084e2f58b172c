"""Synthetic OwnYourChat archives that are as dirty as real ones (BRIEF §3, §8).

zexport is measured (``benchmarks/``) and tested on archives made here, never
on a user's data, so this generator has to reproduce what real archives do to
an exporter: heavy-tailed conversation lengths, markdown with code fences,
tables and LaTeX, branched message trees, attachments that are cached, missing
or pointed at files that are gone, thousands of "New chat" titles, titles no
file system accepts, unparseable ``parts`` JSON, orphaned messages, NULL
timestamps and wrong counters.

Two properties matter as much as the dirt:

- **Deterministic.** The same ``seed``, ``conversations`` and ``path`` give a
  byte-identical database (and identical cached files), so a benchmark or a
  test failure can be reproduced exactly. Everything is drawn from one
  ``random.Random(seed)``, timestamps count from the fixed ``BASE_TS``, rows
  are inserted in generation order and the file is left in rollback-journal
  mode (no WAL). The absolute paths of cached attachments are stored in the
  archive (as the app does), so the bytes depend on where it is written.
- **Fast.** 10,000 conversations (~200,000 messages) take a few seconds:
  message text is assembled from pools of markdown blocks built once per run,
  rows go in with ``executemany`` in batches inside one transaction.

The dirty and hostile cases are placed in the first conversations (see
``_SPECIAL_TITLES`` and ``_SPECIALS``), so even a 50-conversation sample holds
every one of them; later conversations get the same kinds of dirt at random,
at rates resembling real archives.

The result appears atomically: the database is built as
``<path>.tmp-<pid>`` and the cached-attachment folder as
``<stem>-files.tmp-<pid>``; both are renamed into place only when complete,
and removed if anything fails.
"""

from __future__ import annotations

import os
import random
import shutil
import struct
import zlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

import apsw
import orjson

from zexport.schema import DDL

__all__ = ["BASE_TS", "SampleStats", "attachment_dir", "make_sample"]

#: Fixed "now" of every sample (2023-11-14T22:13:20Z): never the wall clock,
#: so that two runs give the same bytes.
BASE_TS = 1_700_000_000

_TWO_YEARS = 730 * 86_400
_BATCH = 500  # conversations per executemany round: bounds memory, keeps rounds large
_MAX_MESSAGES = 1_000

_PROVIDERS = ("chatgpt", "claude", "perplexity")
_PROVIDER_WEIGHTS = (55, 30, 15)

# Rows are plain lists so that branch bookkeeping can patch them in place.
_Row = list[Any]


@dataclass(frozen=True)
class SampleStats:
    """What ``make_sample`` wrote, for the CLI to print and tests to check."""

    conversations: int
    messages: int
    attachments: int
    attachment_files: int


def attachment_dir(path: str | os.PathLike[str]) -> Path:
    """Return the cached-attachment folder that belongs to archive ``path``.

    It is ``<dirname(path)>/<stem>-files`` (absolute), a sibling of the
    archive, so a sample and its files can be deleted together.
    """
    p = Path(os.path.abspath(os.fspath(path)))
    return p.parent / f"{p.stem}-files"


def make_sample(
    path: str | os.PathLike[str], conversations: int = 1000, seed: int = 0
) -> SampleStats:
    """Write a new synthetic OwnYourChat archive at ``path`` and return its counts.

    Refuses (``FileExistsError``) if ``path`` or its attachment folder
    (``attachment_dir(path)``) already exists: a sample must never overwrite
    a real archive. The same ``path``, ``conversations`` and ``seed`` always
    give the same bytes.
    """
    if conversations < 0:
        raise ValueError(f"conversations must be >= 0, not {conversations}")
    final_db = os.path.abspath(os.fspath(path))
    final_dir = str(attachment_dir(final_db))
    for existing in (final_db, final_dir):
        if os.path.lexists(existing):
            raise FileExistsError(f"refusing to overwrite existing {existing!r}")
    pid = os.getpid()
    tmp_db = f"{final_db}.tmp-{pid}"
    tmp_dir = f"{final_dir}.tmp-{pid}"
    try:
        os.mkdir(tmp_dir)
        gen = _Generator(random.Random(seed), final_dir, tmp_dir)
        stats = gen.write(tmp_db, conversations)
        with open(tmp_db, "rb+") as fh:  # durable before it becomes visible
            os.fsync(fh.fileno())
        for existing in (final_db, final_dir):  # something may have appeared meanwhile
            if os.path.lexists(existing):
                raise FileExistsError(f"refusing to overwrite existing {existing!r}")
        os.rename(tmp_dir, final_dir)
        try:
            os.replace(tmp_db, final_db)
        except BaseException:
            shutil.rmtree(final_dir, ignore_errors=True)
            raise
    except BaseException:
        for leftover in (tmp_db, tmp_db + "-journal"):
            if os.path.lexists(leftover):
                os.unlink(leftover)
        shutil.rmtree(tmp_dir, ignore_errors=True)
        raise
    return stats


# --------------------------------------------------------------------------
# The special cases, in the first conversations.

#: Titles that break naive exporters; conversation i (i < len) gets title i.
#: The first 17 are the required set and fit in a 20-conversation sample.
_SPECIAL_TITLES: tuple[str, ...] = (
    "Q3/Q4 planning: budget/headcount",  # '/' (and ':')
    "..",
    ".",
    "CON",
    "nul.txt",
    'What is 6*7: "the answer"? <really>|maybe',  # Windows-forbidden characters
    "🚀🔥💯",  # emoji only
    "长" * 25 + "城" * 25 + "漢字テスト日本語の長いタイトル" * 3 + "终" * 5,  # 100 CJK = 300 bytes
    "",
    "Notes for later... . ",  # trailing dots and spaces
    "nul\x00in the\x07middle\x1b[31m",  # NUL, BEL and an ANSI escape
    "invoice\u202egnp.exe",  # RTL override: displays as "invoiceexe.png"
    "Caf\u00e9",  # NFC
    "Cafe\u0301",  # NFD twin
    "Report",
    "REPORT",
    "New chat",
    # Extras: a repeated ordinary title (within 20), then more hostility.
    "Python list comprehension",
    "New chat",
    "Python list comprehension",  # an ordinary title, repeated
    "Explain the difference between " * 12 + "these",  # ~380 ASCII bytes
    ".hidden",
    "-rf --no-preserve-root",
    "   ",
    "tab\there\nand newline",
    "aux.md",
)

_NEW_CHAT_RATE = 0.15


@dataclass(frozen=True)
class _Spec:
    """Forced shape of one of the first conversations (see ``_SPECIALS``)."""

    provider: str
    n: int | None = None  # number of messages on the main line
    branch: str | None = None  # "assistant-not-last" | "user-last"
    system_first: bool = False
    flags: frozenset[str] = field(default_factory=frozenset)


def _spec(provider: str, n: int | None = None, *flags: str, branch: str | None = None,
          system_first: bool = False) -> _Spec:
    return _Spec(provider, n, branch, system_first, frozenset(flags))


#: Conversation i (i < len) has the dirt described here and no random structural dirt.
_SPECIALS: tuple[_Spec, ...] = (
    _spec("chatgpt", 0),  # zero messages
    _spec("claude", 6, "node-null"),  # current_node_id NULL although it has messages
    _spec("perplexity", 6, "node-missing"),  # current_node_id names no message
    _spec("chatgpt", 10, "bad-parts"),  # unparseable / odd parts JSON
    _spec("claude", 9, "orphan"),  # a parent_id naming no message
    _spec("chatgpt", 8, branch="assistant-not-last"),  # 3 regenerations, earlier one active
    _spec("claude", 7, "sibling-null", branch="user-last"),  # an edited user message
    _spec("perplexity", 6, "null-times"),  # NULL timestamps on conversation and messages
    _spec("chatgpt", 5, "count-null"),
    _spec("claude", 5, "count-wrong"),
    _spec("chatgpt", 8, "attachments"),  # every attachment state, hostile filenames
    _spec("perplexity", 6, "sources"),  # source-url parts, some without title
    _spec("claude", 6, "unknown-parts"),  # part types zexport does not know
    _spec("chatgpt", 6, system_first=True),
    _spec("perplexity", 4, "sync-error"),
    _spec("claude", 4, "hazards"),  # markdown/HTML hazards, CRLF, a 40 KB message
    _spec("chatgpt", 4, "sibling-self"),
    _spec("perplexity", 1),  # a question that never got an answer
)


# --------------------------------------------------------------------------
# Text material. Everything below is drawn from the run's rng, so the pools
# themselves are part of the deterministic output.

_WORDS = (
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

_LANGS = ("python", "javascript", "typescript", "bash", "sql", "rust", "json", "go", "", "c++")

_LATEX = (
    r"E = mc^2",
    r"\int_0^1 x^2 \, dx = \frac{1}{3}",
    r"\sum_{i=1}^{n} i = \frac{n(n+1)}{2}",
    r"\nabla \cdot \mathbf{E} = \frac{\rho}{\varepsilon_0}",
    r"p(x) = \frac{1}{\sqrt{2\pi\sigma^2}} e^{-\frac{(x-\mu)^2}{2\sigma^2}}",
    r"\begin{pmatrix} a & b \\ c & d \end{pmatrix}^{-1}"
    r" = \frac{1}{ad-bc}\begin{pmatrix} d & -b \\ -c & a \end{pmatrix}",
    r"O(n \log n)",
)

_TOPICS = (
    "Python list comprehension", "SQL join question", "Fix import error", "Regex help",
    "Recipe ideas", "Trip to Lisbon", "Cover letter draft", "Explain transformers",
    "Docker networking", "Git rebase vs merge", "Birthday message", "Email to landlord",
    "React useEffect loop", "Rust borrow checker", "Summarize article", "Workout plan",
    "Tax question", "Translate to German", "Bash script", "Excel formula",
)

_SOURCE_SITES = (
    "en.wikipedia.example.org", "docs.python.example.org", "stackoverflow.example.com",
    "news.example.com", "blog.example.net", "arxiv.example.org", "github.example.com",
)

_IMAGE_SIZES = ((1024, 1024), (1792, 1024), (1024, 1792), (800, 600), (1920, 1080),
                (512, 512), (3024, 4032))

_FILE_KINDS = (
    (".pdf", "application/pdf"), (".txt", "text/plain"), (".csv", "text/csv"),
    (".json", "application/json"), (".md", "text/markdown"),
    (".docx", "application/vnd.openxmlformats-officedocument.wordprocessingml.document"),
    (".xlsx", "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"),
    (".py", "text/x-python"),
)

_HOSTILE_FILENAMES = (
    "../../etc/passwd", "a/b.png", "CON.txt", "😀 screenshot 😀.png", "x" * 300 + ".pdf",
    "..\\..\\windows\\win.ini", "con", "report?.pdf", " spaced .txt ", ".env", "",
)


def _sentence(rng: random.Random, words: Sequence[str]) -> str:
    ws = rng.choices(words, k=rng.randint(5, 18))
    r = rng.random()
    if r < 0.08:
        ws[rng.randrange(len(ws))] = f"`{rng.choice(words)}()`"
    elif r < 0.14:
        ws[rng.randrange(len(ws))] = f"**{rng.choice(words)}**"
    elif r < 0.17:
        ws[rng.randrange(len(ws))] = f"${rng.choice(_LATEX)}$"
    elif r < 0.20:
        w = rng.choice(words)
        ws[rng.randrange(len(ws))] = f"[{w}](https://docs.example.org/{quote(w)})"
    s = " ".join(ws)
    return s[:1].upper() + s[1:] + rng.choice(".....?!:")


def _paragraph(rng: random.Random, lo: int = 2, hi: int = 5) -> str:
    return " ".join(_sentence(rng, _WORDS) for _ in range(rng.randint(lo, hi)))


def _code_block(rng: random.Random) -> str:
    lang = rng.choice(_LANGS)
    w = rng.choices(_WORDS[:150], k=40)  # ASCII words only in identifiers
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


def _table(rng: random.Random) -> str:
    cols = rng.randint(2, 5)
    head = [w.capitalize() for w in rng.choices(_WORDS, k=cols)]
    rows = ["| " + " | ".join(head) + " |", "|" + "---|" * cols]
    for _ in range(rng.randint(2, 7)):
        cells = [rng.choice((rng.choice(_WORDS), str(rng.randint(0, 9999)), "`x`", "✓", ""))
                 for _ in range(cols)]
        rows.append("| " + " | ".join(cells) + " |")
    return "\n".join(rows)


def _list(rng: random.Random) -> str:
    numbered = rng.random() < 0.4
    items = []
    for i in range(rng.randint(3, 7)):
        mark = f"{i + 1}." if numbered else "-"
        items.append(f"{mark} {_sentence(rng, _WORDS)}")
        if rng.random() < 0.15:
            items.append(f"   - {_sentence(rng, _WORDS)}")
    return "\n".join(items)


def _heading(rng: random.Random) -> str:
    words = rng.choices(_WORDS, k=rng.randint(2, 5))
    return "#" * rng.randint(1, 4) + " " + " ".join(words).title()


def _latex_block(rng: random.Random) -> str:
    f = rng.choice(_LATEX)
    return rng.choice((f"$$\n{f}\n$$", f"\\[\n{f}\n\\]", f"$$ {f} $$"))


def _quote_block(rng: random.Random) -> str:
    return "> " + _paragraph(rng, 1, 2)


def _png(width: int, height: int, rgb: tuple[int, int, int]) -> bytes:
    """A valid truecolor PNG of one colour: real image bytes for exporters to copy."""

    def chunk(tag: bytes, data: bytes) -> bytes:
        crc = zlib.crc32(tag + data) & 0xFFFFFFFF
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", crc)

    raw = (b"\x00" + bytes(rgb) * width) * height
    return (b"\x89PNG\r\n\x1a\n"
            + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(raw, 9))
            + chunk(b"IEND", b""))


def _jpeg(width: int, height: int) -> bytes:
    """A valid baseline grayscale JPEG, mid-grey, smallest possible encoding.

    Every 8x8 block is "DC difference 0, end of block"; with one-code Huffman
    tables that is two 0 bits per block, so no image library is needed.
    """
    blocks = -(-width // 8) * -(-height // 8)
    bits = "00" * blocks
    bits += "1" * (-len(bits) % 8)
    scan = bytes(int(bits[i:i + 8], 2) for i in range(0, len(bits), 8))
    one_code = struct.pack(">16B", 1, *([0] * 15)) + b"\x00"
    return (b"\xff\xd8"
            + b"\xff\xdb" + struct.pack(">HB", 67, 0) + b"\x01" * 64
            + b"\xff\xc0" + struct.pack(">HBHHB", 11, 8, height, width, 1) + b"\x01\x11\x00"
            + b"\xff\xc4" + struct.pack(">HB", 20, 0x00) + one_code
            + b"\xff\xc4" + struct.pack(">HB", 20, 0x10) + one_code
            + b"\xff\xda" + struct.pack(">HB", 8, 1) + b"\x01\x00\x00\x3f\x00"
            + scan + b"\xff\xd9")


#: ``parts`` values a reader must survive: truncated JSON first (the required one),
#: then valid JSON of the wrong shape.
_BAD_PARTS: tuple[str, ...] = (
    '[{"type":"text","text":"trunc', '{"type":"text","text":"not an array"}',
    '[{"type":"text"}]', "[]", "", '[{"type":"text","text":null}, 42]',
)

_HAZARD_TEXT = (
    "---\ntitle: this is not front matter\ntags: [x]\n---\n\n"
    "<script>alert('x')</script> <details><summary>raw html</summary>\n\n"
    "Windows line endings follow.\r\nSecond line\r\n\r\n"
    "Zero\u200bwidth, RTL \u202eesrever\u202c, combining e\u0301, tab\there, "
    "a lone backslash \\ and [[wikilink]] and #tag and %% comment %%.\n\n"
    "```python\nprint('this fence is never closed')\n"
)


# --------------------------------------------------------------------------


class _Generator:
    """Builds rows from one rng and writes them; holds the per-run text pools."""

    def __init__(self, rng: random.Random, final_dir: str, tmp_dir: str) -> None:
        self.rng = rng
        self.final_dir = final_dir
        self.tmp_dir = tmp_dir
        self.conv_rows: list[_Row] = []
        self.msg_rows: list[_Row] = []
        self.att_rows: list[_Row] = []
        self.n_conversations = 0
        self.n_messages = 0
        self.n_attachments = 0
        self.n_files = 0
        # Per-conversation state used by _emit.
        self.cid = ""
        self.provider = ""
        self.t = 0
        self.order = 0
        self.sib_self = False
        self.force: frozenset[str] = frozenset()
        self._build_pools()

    # -- pools -------------------------------------------------------------

    def _build_pools(self) -> None:
        """Pre-render markdown blocks so a message is one ``choices`` + ``join``."""
        rng = self.rng
        paragraphs = [_paragraph(rng) for _ in range(1500)]
        pools: list[tuple[list[str], int]] = [  # (pool, weight in the block mix)
            (paragraphs, 50),
            ([_code_block(rng) for _ in range(300)], 14),
            ([_list(rng) for _ in range(300)], 12),
            ([_heading(rng) for _ in range(200)], 9),
            ([_table(rng) for _ in range(150)], 6),
            ([_quote_block(rng) for _ in range(100)], 4),
            ([_latex_block(rng) for _ in range(40)], 3),
        ]
        blocks: list[str] = []
        for pool, weight in pools:
            blocks.extend(rng.choice(pool) for _ in range(weight * 40))
        rng.shuffle(blocks)
        self.blocks = blocks
        self.headings = [_heading(rng) for _ in range(200)]
        self.user_texts = [_paragraph(rng, 1, 3) for _ in range(1500)]
        self.user_code = [_code_block(rng) for _ in range(100)]
        self.titles_common = list(_TOPICS)
        self.titles_rare = [
            " ".join(rng.choices(_WORDS, k=rng.randint(2, 6))).capitalize()
            for _ in range(4000)
        ]

    # -- ids and text ------------------------------------------------------

    def _uid(self) -> str:
        """A UUID-shaped id drawn from the run's rng (uuid4 would break determinism)."""
        h = f"{self.rng.getrandbits(128):032x}"
        return f"{h[:8]}-{h[8:12]}-4{h[13:16]}-{h[16:20]}-{h[20:]}"

    def _user_text(self) -> str:
        rng = self.rng
        r = rng.random()
        if r < 0.70:
            return rng.choice(self.user_texts)
        if r < 0.90:
            return rng.choice(self.user_texts) + "\n\n" + rng.choice(self.user_texts)
        return rng.choice(self.user_texts) + "\n\n" + rng.choice(self.user_code)

    def _assistant_text(self) -> str:
        rng = self.rng
        r = rng.random()
        k = rng.randint(15, 45) if r < 0.03 else rng.randint(1, 6)
        text = "\n\n".join(rng.choices(self.blocks, k=k))
        if r > 0.75:
            text = rng.choice(self.headings) + "\n\n" + text
        return text

    def _sources(self, count: int) -> list[dict[str, Any]]:
        rng = self.rng
        parts: list[dict[str, Any]] = []
        for _ in range(count):
            site = rng.choice(_SOURCE_SITES)
            slug = "-".join(rng.choices(_WORDS[:150], k=3))
            part: dict[str, Any] = {
                "type": "source-url",
                "sourceId": f"src_{rng.getrandbits(48):012x}",
                "url": f"https://{site}/{quote(slug)}",
            }
            r = rng.random()
            if r < 0.8:
                part["title"] = slug.replace("-", " ").title()
            if r < 0.3:
                part["attribution"] = site
                part["snippet"] = rng.choice(self.user_texts)[:160]
            if r < 0.1:
                part["icon_url"] = f"https://{site}/favicon.ico"
            parts.append(part)
        return parts

    # -- messages ----------------------------------------------------------

    def _emit(self, role: str, parent: str | None) -> str:
        """Append one message row (and maybe attachments); return its id."""
        rng = self.rng
        mid = self._uid()
        force = self.force
        if role == "assistant":
            parts: list[dict[str, Any]] = [{"type": "text", "text": self._assistant_text()}]
            r = rng.random()
            if "sources" in force or r < (0.35 if self.provider == "perplexity" else 0.07):
                parts.extend(self._sources(rng.randint(1, 6)))
            if "unknown-parts" in force or r > 0.99:
                parts.insert(0, {"type": "reasoning", "text": rng.choice(self.user_texts)})
                if "unknown-parts" in force:
                    parts.append({"type": "tool-call", "toolName": "web_search",
                                  "args": {"query": "zexport", "max": 3}, "state": None})
            elif r > 0.985:
                parts.append({"type": "text", "text": rng.choice(self.user_texts)})
        elif role == "user":
            parts = [{"type": "text", "text": self._user_text()}]
        else:
            parts = [{"type": "text", "text": "You are a helpful assistant. " +
                      rng.choice(self.user_texts)}]
        if "hazards" in force and role == "assistant":
            parts[0]["text"] = _HAZARD_TEXT + "\n\n".join(rng.choices(self.blocks, k=150))
        self.t += rng.randrange(2, 400)
        created: int | None = self.t
        updated: int | None = self.t
        r = rng.random()
        if r < 0.004:
            created = updated = None
        elif r < 0.01:
            updated = None
        elif r > 0.995:
            updated = self.t + rng.randrange(60, 86_400)  # edited later
        self.msg_rows.append([
            mid, self.cid, role, orjson.dumps(parts).decode(), created, updated, self.order,
            parent, f'["{mid}"]' if self.sib_self else None, 0,
        ])
        self.order += 1
        if rng.random() < (0.075 if role == "user" else 0.025):
            self._attachment(mid)
            if rng.random() < 0.1:
                self._attachment(mid)
        return mid

    def _chain(self, roles: Sequence[str], parent: str | None) -> tuple[str | None, str | None]:
        """Emit messages in a line below ``parent``; return (first id, last id)."""
        first: str | None = None
        for role in roles:
            parent = self._emit(role, parent)
            if first is None:
                first = parent
        return first, parent

    # -- attachments -------------------------------------------------------

    def _attachment(self, mid: str, kind: str | None = None, state: str | None = None,
                    filename: str | None = None, ext: str | None = None) -> None:
        """One attachment row; ``state`` is cached, null (no local path) or gone."""
        rng = self.rng
        aid = self._uid()
        if kind is None:
            kind = "image" if rng.random() < 0.6 else "file"
        width: int | None = None
        height: int | None = None
        if kind == "image":
            if ext is None:
                ext = ".png" if rng.random() < 0.55 else ".jpg"
            mime = "image/png" if ext == ".png" else "image/jpeg"
            width, height = rng.choice(_IMAGE_SIZES)
        else:
            if ext is None:
                ext, mime = rng.choice(_FILE_KINDS)
            else:
                mime = dict(_FILE_KINDS).get(ext, "application/octet-stream")
        if filename is None:
            r = rng.random()
            if r < 0.06:
                filename = rng.choice(_HOSTILE_FILENAMES)
            elif kind == "image":
                filename = rng.choice(("image", "Screenshot 2023-11-14 at 10.22.31",
                                       "photo", "diagram", "IMG_4032")) + ext
            else:
                filename = rng.choice(("report", "notes", "data", "paper", "invoice",
                                       "Lebenslauf", "заметки")) + ext
        if state is None:
            r = rng.random()
            state = "cached" if r < 0.45 else ("null" if r < 0.8 else "gone")
        file_id = f"file-{rng.getrandbits(96):024x}"
        url: str | None = (f"https://files.example.invalid/{self.provider}/{file_id}/"
                           f"{quote(filename or 'blob', safe='')}")
        size: int | None = rng.randint(2_000, 4_000_000)
        local: str | None = None
        if state == "cached":
            disk_name = aid + ext
            if kind == "image":
                w, h = rng.randint(1, 16), rng.randint(1, 16)
                if ext == ".png":
                    rgb = (rng.randrange(256), rng.randrange(256), rng.randrange(256))
                    content = _png(w, h, rgb)
                else:
                    content = _jpeg(w, h)
                width, height = w, h
            else:
                content = (f"{filename}\n" + rng.choice(self.user_texts)[:200] + "\n").encode()
                if ext == ".pdf":
                    content = b"%PDF-1.4\n% zexport sample\n" + content + b"%%EOF\n"
            with open(os.path.join(self.tmp_dir, disk_name), "wb") as fh:
                fh.write(content)
            self.n_files += 1
            size = len(content)
            local = os.path.join(self.final_dir, disk_name)
            if rng.random() < 0.05:
                url = None  # uploaded long ago: only the local copy is known
        elif state == "gone":
            local = os.path.join(self.final_dir, "deleted", aid + ext)
        if rng.random() < 0.03:
            size = None
        self.att_rows.append([aid, mid, kind, file_id, url, local, filename, mime, size,
                              width, height, self.t, self.t])
        self.n_attachments += 1

    def _special_attachments(self, user_ids: list[str]) -> None:
        """Every attachment state and the nastiest filenames, on a few messages."""
        a, b = user_ids[0], user_ids[1 % len(user_ids)]
        self._attachment(a, "image", "cached", "image.png", ".png")
        self._attachment(a, "image", "cached", "image.png", ".png")  # same name twice
        self._attachment(a, "image", "cached", "😀 photo.jpg", ".jpg")
        self._attachment(a, "file", "cached", "../../etc/passwd", ".txt")
        self._attachment(a, "file", "cached", "x" * 300 + ".pdf", ".pdf")
        self._attachment(b, "image", "null", "a/b.png", ".png")
        self._attachment(b, "file", "gone", "CON.txt", ".txt")
        self._attachment(b, "file", "null", None, ".pdf")
        self._attachment(b, "image", "gone", "..\\..\\windows\\win.ini", ".jpg")

    # -- conversations -----------------------------------------------------

    def _length(self) -> int:
        """Heavy-tailed message count: median ~13, mean ~20, a few in the hundreds."""
        n = int(self.rng.lognormvariate(2.55, 0.95))
        return min(max(n, 2), _MAX_MESSAGES)

    def _title(self, index: int) -> str:
        rng = self.rng
        if index < len(_SPECIAL_TITLES):
            return _SPECIAL_TITLES[index]
        r = rng.random()
        if r < _NEW_CHAT_RATE:
            return "New chat"
        if r < 0.45:
            return rng.choice(self.titles_common)
        return rng.choice(self.titles_rare)

    def _conversation(self, index: int) -> None:
        rng = self.rng
        spec = _SPECIALS[index] if index < len(_SPECIALS) else None
        cid = self._uid()
        title = self._title(index)
        if spec is not None:
            provider = spec.provider
            n = spec.n if spec.n is not None else self._length()
            force = spec.flags
            system_first = spec.system_first
            branch = spec.branch
        else:
            provider = rng.choices(_PROVIDERS, _PROVIDER_WEIGHTS)[0]
            n = 0 if rng.random() < 0.003 else self._length()
            force = frozenset()
            system_first = provider != "perplexity" and rng.random() < 0.03
            branch = None
            if n >= 3 and rng.random() < 0.10:
                branch = "assistant" if rng.random() < 0.75 else "user"
        created = BASE_TS - rng.randrange(_TWO_YEARS)
        self.cid, self.provider, self.t, self.order = cid, provider, created, 0
        self.force = force
        self.sib_self = "sibling-self" in force or (
            "sibling-null" not in force and rng.random() < 0.5)
        first_row = len(self.msg_rows)

        roles = ["system"] if system_first else []
        roles += ["user" if i % 2 == 0 else "assistant" for i in range(n - len(roles))]
        leaf = self._chain(roles, None)[1] if branch is None else self._branched(roles, branch)

        rows = self.msg_rows[first_row:]
        count = len(rows)
        if "attachments" in force:
            self._special_attachments([r[0] for r in rows if r[2] == "user"])
        self._dirty_messages(rows, force, spec is not None)

        current: str | None = leaf
        if "node-null" in force or (spec is None and rng.random() < 0.005):
            current = None
        elif "node-missing" in force or (spec is None and rng.random() < 0.002):
            current = self._uid()
        updated: int | None = self.t + rng.randrange(0, 3_600)
        conv_created: int | None = created
        r = rng.random()
        if "null-times" in force:
            conv_created = updated = None
        elif spec is None and r < 0.01:
            conv_created = None
        elif spec is None and r < 0.03:
            updated = None
        message_count: int | None = count
        r = rng.random()
        if "count-null" in force or (spec is None and r < 0.02):
            message_count = None
        elif "count-wrong" in force or (spec is None and r < 0.05):
            message_count = max(0, count + rng.choice((-5, -2, -1, 1, 3, 7)))
        sync_error: str | None = None
        retries: int | None = None
        if "sync-error" in force or (spec is None and rng.random() < 0.01):
            sync_error = rng.choice(("HTTP 500: upstream error", "rate limited (429)",
                                     "conversation not found"))
            retries = rng.randint(1, 5)
        elif rng.random() < 0.05:
            retries = 0
        synced: int | None = None if rng.random() < 0.02 else BASE_TS + rng.randrange(86_400)
        self.conv_rows.append([cid, title, provider, conv_created, updated, synced,
                               message_count, current, sync_error, retries])
        self.n_conversations += 1
        self.n_messages += count

    def _branched(self, roles: list[str], branch: str) -> str | None:
        """Emit a tree with one branch point; return the leaf of the active branch.

        At one message (an assistant answer that was regenerated, or a user
        message that was edited) 2-3 siblings share a parent, each followed by
        its own continuation; they are created one after another, so
        order_index and timestamps grow branch by branch. The active branch is
        usually the newest but not always, as when the user flips back.
        """
        rng = self.rng
        want = "user" if branch.startswith("user") else "assistant"
        other = "user" if want == "assistant" else "assistant"
        candidates = [i for i in range(1, len(roles)) if roles[i] == want] or [len(roles) - 1]
        b = rng.choice(candidates)
        parent = self._chain(roles[:b], None)[1]
        k = 3 if branch == "assistant-not-last" or rng.random() < 0.3 else 2
        sib_rows: list[int] = []
        leaves: list[str | None] = []
        for j in range(k):
            sib_rows.append(len(self.msg_rows))
            tail = roles[b:] if j == 0 else [want] + [
                other if i % 2 == 0 else want for i in range(rng.randint(0, 4))]
            leaves.append(self._chain(tail, parent)[1])
        sib_json = orjson.dumps([self.msg_rows[i][0] for i in sib_rows]).decode()
        for pos, i in enumerate(sib_rows):
            self.msg_rows[i][8] = sib_json
            self.msg_rows[i][9] = pos
        if branch == "assistant-not-last" or (branch != "user-last" and rng.random() < 0.35):
            return leaves[rng.randrange(k - 1)]
        return leaves[k - 1]

    def _dirty_messages(self, rows: list[_Row], force: frozenset[str], special: bool) -> None:
        """Corrupt a few rows: forced for the specials, at random (rarely) otherwise."""
        if not rows:
            return
        rng = self.rng
        if not special:
            r = rng.random()
            force = frozenset(("bad-parts",) if r < 0.002 else ("orphan",) if r < 0.004 else ())
        if "bad-parts" in force:
            # The special conversation gets every variant; a random one gets one.
            variants = _BAD_PARTS if special else (rng.choice(_BAD_PARTS),)
            victims = rng.sample(range(len(rows)), min(len(rows), len(variants)))
            for v, text in zip(victims, variants[:len(victims)], strict=True):
                rows[v][3] = text
        if "orphan" in force and len(rows) >= 2:
            rows[rng.randrange(1, len(rows))][7] = self._uid()
        if "null-times" in force:
            for row in rows[::2]:
                row[4] = row[5] = None

    # -- writing -----------------------------------------------------------

    def write(self, db_path: str, conversations: int) -> SampleStats:
        """Create the database at ``db_path`` and fill it in one transaction."""
        conn = apsw.Connection(db_path)
        try:
            conn.execute("PRAGMA page_size=4096; PRAGMA journal_mode=DELETE;"
                         " PRAGMA synchronous=OFF; PRAGMA cache_size=-131072;"
                         " PRAGMA foreign_keys=OFF")
            conn.execute("BEGIN")
            conn.execute(DDL)
            conn.executemany("INSERT INTO sync_state VALUES (?, ?)", [
                ("lastFullSync", str(BASE_TS)), ("schemaVersion", "7")])
            conn.executemany("INSERT INTO provider_state VALUES (?, ?)", [
                ("chatgpt", f'{{"status":"connected","lastSync":{BASE_TS}}}'),
                ("claude", f'{{"status":"expired","lastSync":{BASE_TS - 86_400}}}'),
            ])
            conn.executemany("INSERT INTO user_preferences VALUES (?, ?)", [
                ("theme", "dark"), ("exportFormat", "markdown")])
            for start in range(0, conversations, _BATCH):
                for index in range(start, min(start + _BATCH, conversations)):
                    self._conversation(index)
                self._flush(conn)
            conn.execute("COMMIT")
        finally:
            conn.close()
        return SampleStats(self.n_conversations, self.n_messages, self.n_attachments,
                           self.n_files)

    def _flush(self, conn: apsw.Connection) -> None:
        conn.executemany("INSERT INTO conversations VALUES (?,?,?,?,?,?,?,?,?,?)",
                         self.conv_rows)
        conn.executemany("INSERT INTO messages VALUES (?,?,?,?,?,?,?,?,?,?)", self.msg_rows)
        conn.executemany("INSERT INTO attachments VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)",
                         self.att_rows)
        self.conv_rows.clear()
        self.msg_rows.clear()
        self.att_rows.clear()
