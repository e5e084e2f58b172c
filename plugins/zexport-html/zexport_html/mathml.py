"""LaTeX to MathML, offline, with the output re-built from an allow-list.

latex2mathml does the typesetting (browsers render MathML Core natively, so
the page needs no script or font), but it copies ``\\text{...}`` verbatim
and turns ``\\href`` into an attribute: its output is not safe as it is.
So it is parsed again and only MathML elements and presentation attributes
are written back, every text and attribute value escaped. LaTeX that does
not convert is shown as its source in a ``code`` element.
"""

from __future__ import annotations

import html
import re
from html.parser import HTMLParser

from latex2mathml.converter import convert

ELEMENTS = frozenset("""
math maction annotation annotation-xml menclose merror mfenced mfrac mi mmultiscripts mn mo
mover mpadded mphantom mprescripts mroot mrow ms mspace msqrt mstyle msub msubsup msup mtable
mtd mtext mtr munder munderover none semantics
""".split())
ATTRIBUTES = frozenset("""
accent accentunder align columnalign columnlines columnspacing columnspan denomalign depth
dir display displaystyle fence form frame height largeop linethickness lspace mathbackground
mathcolor mathsize mathvariant maxsize minsize movablelimits notation numalign rowalign
rowlines rowspacing rowspan rspace scriptlevel separator separators stretchy symmetric voffset
width xmlns open close encoding
""".split())
_SAFE_VALUE = re.compile(r"[#\w .,%:/()+-]*")


class _Rebuild(HTMLParser):
    """Writes back the allowed elements and attributes of parsed MathML."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.out: list[str] = []
        self.open: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag not in ELEMENTS:
            return
        kept = "".join(f' {name}="{html.escape(value, quote=True)}"' for name, value in attrs
                       if name in ATTRIBUTES and value is not None
                       and _SAFE_VALUE.fullmatch(value))
        self.out.append(f"<{tag}{kept}>")
        self.open.append(tag)

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.handle_starttag(tag, attrs)
        self.handle_endtag(tag)

    def handle_endtag(self, tag: str) -> None:
        if tag in self.open:
            while self.open:
                top = self.open.pop()
                self.out.append(f"</{top}>")
                if top == tag:
                    break

    def handle_data(self, data: str) -> None:
        self.out.append(html.escape(data, quote=False))

    def result(self) -> str:
        self.close()
        self.out += [f"</{t}>" for t in reversed(self.open)]
        return "".join(self.out)


def to_mathml(latex: str, display: bool) -> str:
    """MathML for ``latex`` (a block when ``display``), or its escaped source."""
    try:
        raw = convert(latex, display="block" if display else "inline")
    except Exception:  # noqa: BLE001 - any LaTeX the converter cannot read shows as source
        raw = ""
    if "<math" not in raw:
        tag = "pre" if display else "code"
        inner = html.escape(latex, quote=False)
        return (f'<pre class="math-source"><code>{inner}</code></pre>' if tag == "pre"
                else f'<code class="math-source">{inner}</code>')
    parser = _Rebuild()
    parser.feed(raw)
    return parser.result()
