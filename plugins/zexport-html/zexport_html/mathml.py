"""LaTeX to MathML, offline, with the output re-built from an allow-list.

latex2mathml does the typesetting (browsers render MathML Core natively, so
the page needs no script or font), but it copies ``\\text{...}`` verbatim
and turns ``\\href`` into an attribute: its output is not safe as it is.
So its element tree is written out here instead, keeping only MathML
elements and presentation attributes, every text and attribute value
escaped. LaTeX that does not convert is shown as its source in ``code``.
"""

from __future__ import annotations

import functools
import html
import re
from xml.etree.ElementTree import Element

from latex2mathml.converter import convert_to_element

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


def _write(elem: Element, out: list[str]) -> None:
    """Serialise ``elem`` keeping only allowed elements and attributes.

    latex2mathml puts character references (``&#x222B;``) in element text,
    so text is unescaped first, then escaped once. A disallowed element is
    left out with its content kept as text.
    """
    tag = elem.tag if isinstance(elem.tag, str) else ""
    allowed = tag in ELEMENTS
    if allowed:
        kept = "".join(f' {name}="{html.escape(value, quote=True)}"'
                       for name, value in elem.attrib.items()
                       if name in ATTRIBUTES and _SAFE_VALUE.fullmatch(value))
        out.append(f"<{tag}{kept}>")
    if elem.text:
        out.append(html.escape(html.unescape(elem.text), quote=False))
    for child in elem:
        _write(child, out)
        if child.tail:
            out.append(html.escape(html.unescape(child.tail), quote=False))
    if allowed:
        out.append(f"</{tag}>")


@functools.lru_cache(maxsize=4096)
def to_mathml(latex: str, display: bool) -> str:
    """MathML for ``latex`` (a block when ``display``), or its escaped source.

    Cached: the same formulas come back within a conversation and across
    them, and a conversion costs about a millisecond.
    """
    try:
        tree = convert_to_element(latex, display="block" if display else "inline")
    except Exception:  # noqa: BLE001 - any LaTeX the converter cannot read shows as source
        inner = html.escape(latex, quote=False)
        return (f'<pre class="math-source"><code>{inner}</code></pre>' if display
                else f'<code class="math-source">{inner}</code>')
    out: list[str] = []
    _write(tree, out)
    return "".join(out)
