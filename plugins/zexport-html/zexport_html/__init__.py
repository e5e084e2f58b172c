"""zexport-html: readable HTML pages per conversation and a searchable index.

A zexport format plugin (entry point ``html`` in the ``zexport`` group). It
is written only against zexport's public API (``zexport.Format``,
``zexport.hookimpl`` and the model), as any third-party format would be.

Pages are self-contained: CSS (and on the index, JS) is inline, nothing is
fetched, so an export opens from ``file://`` offline. Each page sets a
Content Security Policy allowing exactly its own inline style and script
(by SHA-256 hash), local images, and nothing else: even if some text
escaped the escaping, it could not run.

This module is only the format's description: zexport imports every installed
format's package in every run (to list, check and name them), so the page
(:mod:`.page`, with the Markdown engine) and the index (:mod:`.index`) are
imported when a page or the index is first written.
"""

from __future__ import annotations

from zexport import Conversation, Format, Option, RenderContext, RunContext, hookimpl

__version__ = "0.1.0"

SEARCH_DIR = "index-search"  # the text index's shards, beside index.html (see .index)


class HtmlFormat(Format):
    """One HTML page per conversation, plus ``index.html`` in the finish step."""

    name = "html"
    extension = "html"
    # 3: documents (canvas, artifacts) rendered, not a JSON part; 4: text the fast path wrote
    # otherwise than markdown-it-py (a tight item's fence, a lazy quote line in code, "[a]("),
    # and search words folded as the query is beside a sigma only NFKD makes (Ϲ)
    version = "4"
    description = "Readable HTML pages, offline, with a searchable index.html"
    # No conversation folder may take the place of the index or its search shards.
    reserved_names = ("index.html", SEARCH_DIR)
    options = {
        "theme": Option("colour scheme", default="auto", choices=("auto", "light", "dark")),
        "index": Option.flag("write index.html listing every conversation", default=True),
    }

    def render(self, conversation: Conversation, ctx: RenderContext) -> bytes:
        """The conversation's page: the active branch, alternatives folded away."""
        from .page import render_page  # the engine loads with the first page

        return render_page(conversation, ctx)

    def finish(self, run: RunContext) -> None:
        """Write ``index.html``: every exported conversation, searchable, in export order."""
        from .index import write_index

        write_index(run)


@hookimpl
def zexport_formats() -> list[Format]:
    """Register the html format."""
    return [HtmlFormat()]
