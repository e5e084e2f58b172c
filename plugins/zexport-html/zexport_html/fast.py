"""The engine's HTML from markdown-it-pyrs (the Rust port), for the text where it is the same.

markdown-it-py is pure Python and costs ~0.2 ms per message: at 10,000
conversations it was most of the HTML export's time. markdown-it-pyrs parses
CommonMark (and GFM tables and strikethrough) the same way about 8x faster,
but has no render hooks and none of the plugins the engine adds. So its
output is brought to the engine's after the fact, which is exact because raw
HTML is off (every tag in its output is its own, every attribute value
escaped):

- each ``<a href>`` and ``<img>`` goes through the engine's own
  ``link_open``/``image`` rules;
- citation sentinels become the engine's citations (inside a link: without
  one; in code or an attribute: ``[n]``, as the engine leaves them);
- inline ``$...$`` math: each span the engine's dollarmath rule would take is
  found in the source (:func:`_inline_math`) and replaced by a private-use
  placeholder, which comes out as the engine's MathML in text, and as the
  source again in code.

Text where that could differ goes to the engine (``render`` returns None):
display math and ``\\(``/``\\[``, footnotes, task items, entities, the
link schemes markdown-it refuses, a ``$`` that no placeholder took, a
placeholder in an attribute. A test renders every text of the corpora
(CommonMark spec, the app's archives, the sample) both ways and requires the
same bytes.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable

import markdown_it_pyrs
from markdown_it.common.utils import isWhiteSpace

# CommonMark without raw HTML (html_block/html_inline are not enabled: "<b>" is text),
# plus the GFM pieces the engine has from markdown-it-py itself.
RULES = ["blockquote", "code", "fence", "heading", "hr", "lheading", "list", "paragraph",
         "reference", "autolink", "backticks", "emphasis", "entity", "escape", "image",
         "link", "newline", "table", "strikethrough"]
_RS = markdown_it_pyrs.MarkdownIt("zero").enable_many(RULES)  # type: ignore[arg-type]

CITE_OPEN, CITE_CLOSE = "\ue000", "\ue001"
MATH_OPEN, MATH_CLOSE = "\ue002", "\ue003"  # around an inline placeholder's number
BLOCK_OPEN, BLOCK_CLOSE = "\ue004", "\ue005"  # around a display placeholder's number
# What only the engine renders, or renders differently (see _needs_engine):
# - display math ("$$", "\[") but in the blocks _display_math takes, and "\(";
# - footnotes "[^", inline footnotes "^[", task items "[ ]"/"[x]";
# - runs of 3+ tildes (strikethrough pairs, or a ~~~ fence);
# - the placeholders' own characters;
_DISPLAY = ("$$", "\\[")  # left after _display_math: the engine decides
_DISPLAY_ENDS = {"$$": "$$", "\\[": "\\]"}
_FENCE_LINE = re.compile(r" {0,3}(?:```|~~~)")
# (all of "\(", "[^", "^[", "[ ]", "[x]" and "~~~" are looked for in one pass)
_ENGINE_ONLY = re.compile(r"\[\^|\[[ xX]\]|\\\(|\^\[|~~~")
# - entities ("&#..;", "&name;"): an encoded "javascript&colon;" decides a link's fate;
_ENTITY_REF = re.compile(r"&(?:#|[A-Za-z][A-Za-z0-9]*;)")
# - a link destination (after "(", "<" or "]:") starting with a scheme markdown-it's
#   validateLink refuses: the engine keeps such links as inert <a>, markdown-it-pyrs
#   drops them to text;
_SCHEME = re.compile(r"(?i:(?:[(<]|\]:)\s*(?:javascript|vbscript|file|data):)")
# - whitespace other than ASCII's (no-break and ideographic spaces...): markdown-it-py
#   strips it from the ends of paragraphs and cells as Python's str.strip does;
# (the same character class also finds the placeholders' own characters, in one pass)
_SPACE = re.compile("[\x1c-\x1f\x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000"
                    f"{MATH_OPEN}{MATH_CLOSE}{BLOCK_OPEN}{BLOCK_CLOSE}]")
# - an empty list item ("-" alone on its line), which the engines end a lazy quote
#   with differently, and a tab after a quote or list marker (the engines expand it
#   to different columns);
#   (the first line apart: a pattern starting with a line break is found fast, one with
#   "^" and re.M is tried at every character);
_EMPTY_ITEM = re.compile(r"\n[ \t]*(?:[-*+]|\d{1,9}[.)])[ \t]*(?:\n|\Z)")
_EMPTY_FIRST_ITEM = re.compile(r"[ \t]*(?:[-*+]|\d{1,9}[.)])[ \t]*(?:\n|\Z)")
_TAB_IN_MARKER = re.compile(r"^[ ]{0,3}(?:>|[-*+]|\d{1,9}[.)])[ >]*\t", re.M)
# - an ordered list item not numbered 1 on a line after a block quote's paragraph (its
#   lazy continuation): markdown-it-py ends the quote there and opens the list,
#   markdown-it-pyrs (as CommonMark says: such an item cannot interrupt a paragraph)
#   keeps the line in the paragraph. So any such line after a line holding a quote
#   marker, with no blank line between, goes to the engine;
#   (a line of either kind is looked for in the lines after each quote line);
_ORDERED_NOT_ONE = re.compile(r"[ \t]*(?!0*1[.)])\d{1,9}[.)](?=[ \t\n]|\Z)")
_QUOTE_LINE = re.compile(r"[ \t]*(?:(?:[-*+]|\d{1,9}[.)])[ \t]+)*>")
_QUOTE_LINE_AFTER_BREAK = re.compile(r"\n" + _QUOTE_LINE.pattern)
# - a line starting with a space or a tab, after a block quote's paragraph (its lazy
#   continuation), in text with a code span: markdown-it-py keeps those blanks in the
#   code, markdown-it-pyrs drops them;
# - a fenced code block right after a paragraph's line in a list item: in a tight list,
#   markdown-it-py writes "<li>text<pre>", markdown-it-pyrs "<li>text\n<pre>". So any
#   indented fence after a line that is not blank goes to the engine;
_INDENTED_FENCE = re.compile(r"\n[ \t]+(?:```|~~~)")
# - a link's text followed by "(" at the end of a line, in text defining references: for
#   markdown-it-pyrs it is the reference link (and a "("), for markdown-it-py text;
_PAREN_AT_LINE_END = re.compile(r"\]\([ \t]*(?:\n|\Z)")
# - a delimiter run where the engines disagree on whether it opens or closes emphasis:
#   markdown-it-py counts Unicode symbols (£, ≥, emoji: categories S*) as punctuation,
#   as CommonMark 0.31 does, markdown-it-pyrs not (see _emphasis_differs).
# A delimiter beside a character outside ASCII (it starts with a character class, which re
# scans for fast, and looks around it):
_DELIMITER_BESIDE_NON_ASCII = re.compile(r"[*_~](?:(?<=[^\x00-\x7f][*_~])|(?=[^\x00-\x7f]))")


def _kind(ch: str) -> str:
    """A delimiter's neighbour: "s"pace (or none), "S"ymbol outside ASCII, "p"unctuation,
    or "o"ther."""
    if not ch or ch in " \t\n":
        return "s"
    if ch.isascii():
        return "p" if not ch.isalnum() else "o"
    category = unicodedata.category(ch)
    return "S" if category[0] == "S" else "p" if category[0] == "P" else "o"


def _emphasis_differs(text: str) -> bool:
    """Whether some delimiter run can open or close emphasis for one engine and not the
    other. Only a symbol beside the run matters; with whitespace on its other side, or
    (for ``*`` and ``~``) a symbol there too, both flanking rules agree. (Symbols are
    outside ASCII: only the runs of one character with such a neighbour are looked at.)"""
    for m in _DELIMITER_BESIDE_NON_ASCII.finditer(text):
        start = end = m.start()
        char = text[start]
        while start and text[start - 1] == char:
            start -= 1
        end += 1
        while end < len(text) and text[end] == char:
            end += 1
        if _run_differs(text, start, end):
            return True
    return False


def _run_differs(text: str, start: int, end: int) -> bool:
    before, after = text[start - 1] if start else "", text[end:end + 1]
    if before.isascii() and after.isascii():
        return False  # (symbols are outside ASCII)
    before, after = _kind(before), _kind(after)
    if "S" not in (before, after):
        return False
    other = after if before == "S" else before
    return not (other == "s" or (other == "S" and text[start] != "_"))


def _lazy_after_quote(text: str) -> bool:
    """Whether a line after a quote line (one starting, after list markers, with a quote
    marker), with no blank line between, starts an ordered item not numbered 1, or (in
    text with a code span) starts with a space or a tab."""
    starts = [m.end() for m in _QUOTE_LINE_AFTER_BREAK.finditer(text)]
    if _QUOTE_LINE.match(text):
        starts.insert(0, 0)
    spans = "`" in text
    for start in starts:
        end = text.find("\n", start)  # the line break before the next line
        while 0 <= end < len(text) - 1:
            start = end + 1
            end = text.find("\n", start)
            if not text[start:len(text) if end < 0 else end].strip():
                break  # a blank line: no lazy line after it
            if _ORDERED_NOT_ONE.match(text, start) or spans and text[start] in " \t":
                return True
    return False


def _fence_after_text(text: str) -> bool:
    """Whether an indented fence line follows a line that is not blank."""
    for m in _INDENTED_FENCE.finditer(text):
        if text[text.rfind("\n", 0, m.start()) + 1:m.start()].strip():
            return True
    return False


# Whether some ':' has the end of a refused scheme before it, in any case (as
# ``str.lower`` folds it: only ASCII letters fold to these): one search for ':' in C, not
# a lower-case copy of the text.
_SCHEME_BEFORE_COLON = re.compile(r":(?:(?<=[sS][cC][rR][iI][pP][tT]:)|(?<=[fF][iI][lL][eE]:)"
                                  r"|(?<=[dD][aA][tT][aA]:))")


def _needs_engine(text: str) -> bool:
    """Whether ``text`` holds something only the engine renders right (above). Each test
    runs only when the character it needs is there, and the ones that look for
    characters outside ASCII only on text that has some: most texts are scanned a few
    times in C, never character by character in Python."""
    if _ENGINE_ONLY.search(text) or "&" in text and _ENTITY_REF.search(text):
        return True
    if _SCHEME_BEFORE_COLON.search(text) and _SCHEME.search(text):
        return True
    if "\t" in text and _TAB_IN_MARKER.search(text):
        return True
    if _EMPTY_ITEM.search(text) or _EMPTY_FIRST_ITEM.match(text):
        return True
    if "`" in text and _fence_after_text(text):
        return True
    if "]:" in text and _PAREN_AT_LINE_END.search(text):
        return True
    if ">" in text and _lazy_after_quote(text):
        return True
    if text.isascii():
        return False
    return bool(_SPACE.search(text)) or _emphasis_differs(text)


# What the output's rewriting (in one pass, left to right) replaces or refuses: code
# (verbatim source, where placeholders are put back as source), the links and images
# markdown-it-pyrs writes, any other link or image tag or tag holding a placeholder
# (refused), and in text: citations, inline math and a stray display placeholder
# (refused). Tags and text it does not name stay as they are.
_SPECIAL = re.compile(  # (each alternative starts with a character: re scans for those)
    # (code's content up to the first "</code>", and a tag up to a placeholder, read
    # without going back: no character is tried twice)
    r"<(?:(?P<code>code[^>]*>[^<]*(?:<(?!/code>)[^<]*)*</code>)"
    r'|(?P<link>a href="(?P<href>[^"]*)"(?: title="(?P<title>[^"]*)")?>)'
    r'|(?P<img>img src="(?P<src>[^"]*)" alt="(?P<alt>[^"]*)"(?: title="[^"]*")? />)'
    r"|(?P<close>/a>)"
    f"|(?P<refused>a [^>]*>|img [^>]*>"
    f"|[^>{MATH_OPEN}{BLOCK_OPEN}]*+[{MATH_OPEN}{BLOCK_OPEN}][^>]*>))"
    f"|{BLOCK_OPEN}(?P<display>)"
    f"|{CITE_OPEN}(?P<cite>\\d+){CITE_CLOSE}"
    f"|\\${MATH_OPEN}(?P<math>\\d+){MATH_CLOSE}\\$", re.S)


# The same for output with no citation and no math: only links and images to rewrite (code
# cannot hold a tag: its '<' are escaped), so code and closing tags need no look.
_LINKS = re.compile(
    r'<(?:(?P<link>a href="(?P<href>[^"]*)"(?: title="(?P<title>[^"]*)")?>)'
    r'|(?P<img>img src="(?P<src>[^"]*)" alt="(?P<alt>[^"]*)"(?: title="[^"]*")? />)'
    r"|(?P<refused>a [^>]*>|img [^>]*>))")


class _EngineDecides(Exception):
    """Raised while rewriting the output of a text only the engine renders right."""


_MATH = re.compile("\\$\ue002(\\d+)\ue003\\$|\ue004(\\d+)\ue005")
_BLOCK_PARAGRAPH = re.compile("<p>\ue004(\\d+)\ue005</p>\n")
_MARK = re.compile("\ue000(\\d+)\ue001|\\$\ue002(\\d+)\ue003\\$")
_CITE = re.compile("\ue000(\\d+)\ue001")
_CODE = re.compile(r"<code[^>]*>.*?</code>", re.S)
_BLANK_CODE = re.compile(r"<code> *</code>")
_ENTITY = re.compile("&(?:amp|lt|gt|quot);")
_CHARS = {"&amp;": "&", "&lt;": "<", "&gt;": ">", "&quot;": '"'}
_NOT_IN_MATH = frozenset("`|[]<>\n")
# A line's last character before what a block's content loses at its end (whitespace,
# a heading's closing '#'), when it may be a digit (str.isdigit decides outside ASCII)
# or a backslash.
_LINE_END = re.compile(r"([0-9\\]|[^\x00-\x7f])[ \t#\r\x0b\x0c]*(?:\n|\Z)")
_ROW_CHARS = frozenset(" \t>|:-")


def _unescape(value: str) -> str:
    """A value as markdown-it-pyrs had it before escaping (it escapes only these four
    characters, so every '&' in its output starts one of them)."""
    return _ENTITY.sub(lambda m: _CHARS[m.group(0)], value) if "&" in value else value


def _escape(value: str) -> str:
    """Escaped as markdown-it escapes code and text."""
    return (value.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
            .replace('"', "&quot;"))


def _escaped(text: str, pos: int) -> bool:
    """An odd number of backslashes before ``pos`` (dollarmath's is_escaped)."""
    n = 0
    while pos - n - 1 >= 0 and text[pos - n - 1] == "\\":
        n += 1
    return n % 2 == 1


def _inline_math(text: str) -> tuple[list[tuple[int, int]], bool]:
    """The (start, end) of each ``$...$`` that the engine's dollarmath rule (no space
    inside the delimiters, no digit outside them) takes, and whether some ``$`` was left
    undecided (then a ``$`` in the output's text means the engine must render it).

    Decided from the line alone: a ``$`` that opens no math (space after it, digit
    before it, no closing ``$`` after it, space before or digit after its closing one),
    and math whose closing ``$`` is on the same line with no backtick, bracket or angle
    bracket between (constructs that could cut it). Where no letter is before it on
    its line, it may start a paragraph, item or heading, and there the rule's "digit
    before" and "escaped" look at the block's last characters (Python's ``src[-1]``):
    such math is taken only if no line of the text ends with a digit or a backslash
    (before spaces and ``#``).
    Lines with ``|`` (table cells) and escaped ``$`` are left undecided.
    """
    spans: list[tuple[int, int]] = []
    undecided = False
    block_end_matters: bool | None = None  # (found when first needed)
    pos = text.find("$")
    line_start = line_end = -1  # the line of the last '$' looked at
    cell = letter = False  # whether that line has a '|'; a letter before that '$'
    while pos >= 0:
        if pos > line_end:  # (a '$' on a line of its own: what is known of it is kept)
            line_start = text.rfind("\n", 0, pos) + 1
            line_end = text.find("\n", pos)
            line_end = len(text) if line_end < 0 else line_end
            cell = text.find("|", line_start, line_end) >= 0
            letter = False
        end = None if cell else _closing(text, pos, line_end)
        if end is None:
            undecided = True
        elif end > 0:
            letter = letter or _has_letter(text, line_start, pos)
            starts_block = not letter
            if starts_block and block_end_matters is None:
                block_end_matters = any(m.group(1).isdigit() or m.group(1) == "\\"
                                        for m in _LINE_END.finditer(text))
            if ((not starts_block or not block_end_matters)
                    and _NOT_IN_MATH.isdisjoint(text[pos + 1:end])):
                spans.append((pos, end + 1))
                pos = text.find("$", end + 1)
                continue
            undecided = True
        pos = text.find("$", pos + 1)
    return spans, undecided


_ASCII_LETTER = re.compile("[A-Za-z]")


def _has_letter(text: str, start: int, end: int) -> bool:
    """Whether ``text[start:end]`` holds a letter (``str.isalpha``): an ASCII letter found
    by a regex, in C; other letters looked for only where there are other characters."""
    if _ASCII_LETTER.search(text, start, end):
        return True
    piece = text[start:end]
    return not piece.isascii() and any(map(str.isalpha, piece))


def _closing(text: str, pos: int, line_end: int) -> int | None:
    """dollarmath's decision for the ``$`` at ``pos`` when the line decides it: the
    closing ``$``'s index, 0 if it opens no math, None if undecided."""
    nxt = text[pos + 1] if pos + 1 < len(text) else ""
    if not nxt or isWhiteSpace(ord(nxt)):
        return 0
    if pos > 0 and text[pos - 1].isdigit():
        return 0
    if _escaped(text, pos):
        return None
    end = pos + 1
    while True:
        end = text.find("$", end)
        if end < 0:
            return 0  # no closing '$' anywhere
        if end >= line_end:
            return None
        if not _escaped(text, end):
            break
        end += 1
    if isWhiteSpace(ord(text[end - 1])):
        return 0
    if end + 1 < len(text) and text[end + 1].isdigit():
        return 0
    return end if end > pos + 1 else 0


_DISPLAY_LINE = re.compile(r"\n(?=\$\$|\\\[)")  # a line break before a line starting one


def _display_math(text: str) -> tuple[str, list[str]]:
    """``text`` with each display block written the simple way replaced by a placeholder
    paragraph, and those blocks' sources (see :func:`_display_end`)."""
    starts = [m.end() for m in _DISPLAY_LINE.finditer(text)]  # where such lines start
    if text.startswith(_DISPLAY):
        starts.insert(0, 0)
    if not starts:
        return text, []
    pieces: list[str] = []
    blocks: list[str] = []
    copied = 0  # text before this offset is in pieces or in a block
    for start in starts:
        if start < copied:
            continue  # inside a block taken already
        end = _display_end(text, start)
        if end is None:
            continue
        pieces += [text[copied:start], f"{BLOCK_OPEN}{len(blocks)}{BLOCK_CLOSE}"]
        blocks.append(text[start:end])
        copied = end
    pieces.append(text[copied:])
    return "".join(pieces), blocks


def display_latex(block: str) -> str:
    """The LaTeX the math rules give a display block's render rule: what is between its
    delimiters, "\\n"-framed when they are on lines of their own."""
    if "\n" not in block:
        return block[2:-2]
    return "\n" + block.split("\n", 1)[1].rpartition("\n")[0] + "\n"


def _line_end(text: str, start: int) -> int:
    """Where the line starting at ``start`` ends (its line break, or the end of the text)."""
    end = text.find("\n", start)
    return len(text) if end < 0 else end


def _display_end(text: str, start: int) -> int | None:
    """Where the display block starting with the line at ``start`` ends (the end of its
    last line), if it is one both math rules take whole, after a blank line and before
    one: ``$$ x $$`` (or ``\\[ x \\]``) on one line, or ``$$`` (``\\[``) alone on a line,
    lines of LaTeX, and ``$$`` (``\\]``) alone on a line. It may sit in a fenced code block
    (its placeholder is then put back as source), so none of its lines may close a fence.
    Lines are read where they are, not split out of the whole text."""
    stop = _line_end(text, start)
    line = text[start:stop]
    opener = line[:2]
    end = _DISPLAY_ENDS.get(opener)
    if end is None or (start > 0 and text[text.rfind("\n", 0, start - 1) + 1:start - 1].strip()):
        return None
    if line != opener:  # on one line ("$$ x $$", "\\[ x \\]"), with no other end inside
        inner = line[2:-2]
        if (len(line) > 4 and line.endswith(end) and line == line.strip() and inner.strip()
                and end not in inner and "$$" not in inner
                and (stop == len(text) or not text[stop + 1:_line_end(text, stop + 1)].strip())):
            return stop
        return None
    first = True
    while stop < len(text):
        start = stop + 1
        stop = _line_end(text, start)
        inner = text[start:stop]
        if inner == end:
            if not first and (stop == len(text)
                              or not text[stop + 1:_line_end(text, stop + 1)].strip()):
                return stop
            return None
        if not inner.strip() or "$$" in inner or "\\]" in inner or _FENCE_LINE.match(inner):
            return None
        first = False
    return None


def _tables_agree(text: str, out: str) -> bool:
    """Whether both engines surely see the same tables: the engines differ on tables
    that interrupt a paragraph, on body rows that start another block, on delimiter
    rows without pipes and on tables inside containers. So every line that could be a
    delimiter row must be one of a table the simple way: its header line, itself and its
    rows all starting with '|' in the first column, after a blank line."""
    if "|" not in text or "-" not in text:
        return "<table>" not in out
    lines = text.split("\n")
    tables = 0
    for i, line in enumerate(lines):
        if "-" not in line or not _ROW_CHARS.issuperset(line):
            continue
        if "|" not in line and ":" not in line and (i == 0 or "|" not in lines[i - 1]):
            continue  # a rule or a setext underline, under a line with no pipe
        if not (line.startswith("|") and i >= 1 and lines[i - 1].startswith("|")
                and (i == 1 or not lines[i - 2].strip())):
            return False
        for row in lines[i + 1:]:
            if not row.strip():
                break
            if not row.startswith("|"):
                return False
        tables += 1
    return out.count("<table>") == tables


def render(text: str, link_open: Callable[[str, str | None], str],
           image: Callable[[str, str], str], cite: Callable[[int, bool], str],
           math: Callable[[str], str], display: Callable[[str], str]) -> str | None:
    """The engine's HTML for ``text`` through markdown-it-pyrs, or None when only the
    engine can render it. The callables are the engine's own rules: ``link_open(href,
    title)``, ``image(src, alt)``, ``cite(number, in_link)``, ``math(latex)`` (inline)
    and ``display(latex)`` (a display block)."""
    if _needs_engine(text):
        return None
    blocks: list[str] = []
    if "$$" in text or "\\[" in text:
        text, blocks = _display_math(text)
        if any(piece in text for piece in _DISPLAY):
            return None
    latex: list[str] = []
    undecided = False
    if "$" in text:
        spans, undecided = _inline_math(text)
        if spans:  # each span becomes "$<open>n<close>$": '$' stays at both ends
            pieces, last = [], 0
            for start, end in spans:
                pieces += [text[last:start], f"${MATH_OPEN}{len(latex)}{MATH_CLOSE}$"]
                latex.append(text[start + 1:end - 1])
                last = end
            pieces.append(text[last:])
            text = "".join(pieces)
    try:
        out = _RS.render(text)
    except BaseException as exc:  # pyo3's PanicException derives from BaseException
        if type(exc).__name__ != "PanicException":
            raise
        return None  # markdown-it-pyrs failed on this text: the engine renders it
    # The one difference in block rendering: an empty quote is written without a line break.
    if ">" in text:  # (no quote without one)
        out = out.replace("<blockquote>\n</blockquote>", "<blockquote></blockquote>")
    if not _tables_agree(text, out) or "`" in text and _BLANK_CODE.search(out):
        return None  # (markdown-it-pyrs trims a code span of spaces only; the engine not)
    if undecided and "$" in _MARK.sub("", _CODE.sub("", out)):
        return None  # a '$' outside code the engine may have taken as math
    if blocks:
        out = _BLOCK_PARAGRAPH.sub(lambda m: display(display_latex(blocks[int(m.group(1))])),
                                   out)
    # (Tests on the text first: no link without '[' or '<', no citation in the output
    # without a sentinel in the text, no display placeholder without a display block.)
    links = ("[" in text or "<" in text) and ("<a href" in out or "<img" in out)
    if not links and not latex and (CITE_OPEN not in text or CITE_OPEN not in out) \
            and (not blocks or BLOCK_OPEN not in out):
        return out
    if links and "%EE%80%8" in out:  # (a URL is only in a link or an image)
        return None  # a placeholder or sentinel inside a URL: the engine decides

    def math_in_code(m: re.Match[str]) -> str:
        if m.group(1) is not None:
            return _escape(f"${latex[int(m.group(1))]}$")
        return _escape(blocks[int(m.group(2))])

    depth = 0  # inside how many links

    def rewrite(m: re.Match[str]) -> str:
        nonlocal depth
        kind = m.lastgroup
        if kind == "code":
            code = m.group(0)
            if MATH_OPEN not in code and BLOCK_OPEN not in code:
                return code
            return _MATH.sub(math_in_code, code)
        if kind == "cite":
            return cite(int(m.group("cite")), depth > 0)
        if kind == "math":
            return math(latex[int(m.group("math"))])
        if kind == "close":
            depth -= 1
            return "</a>"
        whole = m.group(0)
        if kind in ("link", "img") and MATH_OPEN not in whole and BLOCK_OPEN not in whole:
            if kind == "img":
                return image(_unescape(m.group("src")), _unescape(m.group("alt")))
            depth += 1
            title = m.group("title")
            return link_open(_unescape(m.group("href")),
                             None if title is None else _unescape(title))
        # Math in an attribute (alt, title), a display block where the engine would not
        # take it whole, a link or image markdown-it-pyrs does not write: the engine decides.
        raise _EngineDecides

    special = _SPECIAL if latex or blocks or CITE_OPEN in out else _LINKS
    try:
        html = special.sub(rewrite, out)
    except _EngineDecides:
        return None
    # Sentinels left in code, attributes or math are plain numbers, as the engine leaves them.
    return _CITE.sub(lambda m: f"[{m.group(1)}]", html) if CITE_OPEN in html else html
