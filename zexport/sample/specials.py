"""The special cases: the dirt and hostility every sample holds in its first conversations.

Conversation ``i`` (``i < len``) gets title ``_SPECIAL_TITLES[i]`` and the
structure ``SPECIALS[i]``, so even a 20-conversation sample has each of them;
later conversations get the same kinds of dirt at random (see ``generator``).
"""

from __future__ import annotations

from dataclasses import dataclass, field

#: Titles that break naive exporters; conversation i (i < len) gets title i.
#: The first 17 are the required set and fit in a 20-conversation sample.
SPECIAL_TITLES: tuple[str, ...] = (
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


NEW_CHAT_RATE = 0.15


@dataclass(frozen=True)
class Spec:
    """Forced shape of one of the first conversations (see ``SPECIALS``)."""

    provider: str
    n: int | None = None  # number of messages on the main line
    branch: str | None = None  # "assistant-not-last" | "user-last"
    system_first: bool = False
    flags: frozenset[str] = field(default_factory=frozenset)


def spec(provider: str, n: int | None = None, *flags: str, branch: str | None = None,
         system_first: bool = False) -> Spec:
    """A :class:`Spec`, with flags as positional words."""
    return Spec(provider, n, branch, system_first, frozenset(flags))


#: Conversation i (i < len) has the dirt described here and no random structural dirt.
#: Branches, parents and current nodes only on ChatGPT and Claude: Perplexity has
#: none of them in the app's archive (BRIEF §3).
SPECIALS: tuple[Spec, ...] = (
    spec("chatgpt", 0),  # zero messages
    spec("claude", 6, "node-null"),  # current_node_id NULL although it has messages
    spec("chatgpt", 6, "node-missing"),  # current_node_id names no message
    spec("chatgpt", 10, "bad-parts"),  # unparseable / odd parts JSON
    spec("claude", 9, "orphan"),  # a parent_id naming no message
    spec("chatgpt", 8, branch="assistant-not-last"),  # 3 regenerations, earlier one active
    spec("claude", 7, "sibling-null", branch="user-last"),  # an edited user message
    spec("perplexity", 6, "null-times"),  # NULL timestamps on conversation and messages
    spec("chatgpt", 5, "count-null"),
    spec("claude", 5, "count-wrong"),
    spec("chatgpt", 8, "attachments"),  # every attachment state, hostile filenames
    spec("perplexity", 6, "sources"),  # inline citations in sentences, list items, table cells
    spec("claude", 6, "unknown-parts"),  # part types zexport does not know
    spec("chatgpt", 6, "image-only", system_first=True),  # an answer that is only an image
    spec("perplexity", 4, "sync-error"),
    spec("claude", 4, "hazards"),  # markdown/HTML hazards, CRLF, a 40 KB message
    spec("chatgpt", 4, "sibling-self"),
    spec("perplexity", 1),  # a question that never got an answer
)


#: ``parts`` values a reader must survive: truncated JSON first (the required one),
#: then valid JSON of the wrong shape.
BAD_PARTS: tuple[str, ...] = (
    '[{"type":"text","text":"trunc', '{"type":"text","text":"not an array"}',
    '[{"type":"text"}]', "[]", "", '[{"type":"text","text":null}, 42]',
)

HAZARD_TEXT = (
    "---\ntitle: this is not front matter\ntags: [x]\n---\n\n"
    "<script>alert('x')</script> <details><summary>raw html</summary>\n\n"
    "Windows line endings follow.\r\nSecond line\r\n\r\n"
    "Zero\u200bwidth, RTL \u202eesrever\u202c, combining e\u0301, tab\there, "
    "a lone backslash \\ and [[wikilink]] and #tag and %% comment %%.\n\n"
    "```python\nprint('this fence is never closed')\n"
)

#: Attachment file names that break naive exporters (and the app's own file layout).
HOSTILE_FILENAMES = (
    "../../etc/passwd", "a/b.png", "CON.txt", "😀 screenshot 😀.png", "x" * 300 + ".pdf",
    "..\\..\\windows\\win.ini", "con", "report?.pdf", " spaced .txt ", ".env", "",
)

