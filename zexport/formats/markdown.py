"""The built-in ``markdown`` format (BRIEF §4), Obsidian-friendly.

YAML front matter, one section per message with its role, text verbatim,
sources as links, attachments embedded or linked (URL-encoded), a visible
placeholder for an attachment that could not be had, reasoning ("thinking")
as a folded callout and other parts as JSON blocks (``-o reasoning=hide``,
``-o tool_calls=hide`` leave those out, for search indexes). By default only the
active branch is rendered and the file says how many messages it left out;
``--branches all`` renders every branch, depth first, each marked.
Nothing in the file depends on when the export ran.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import quote

import orjson

from zexport.core.timezones import formatter_for
from zexport.formats.base import Format, Option, RenderContext, iso_time
from zexport.formats.markdown_units import UnitOptions, closed_unit, one_line
from zexport.hookspecs import hookimpl
from zexport.model import Attachment, Conversation, Message, Part
from zexport.textparts import Source, join_parts, markdown_sources, part_text

ROLE_NAMES = {"user": "User", "assistant": "Assistant", "system": "System"}
_HEADERS = {role: f"## {name}" for role, name in ROLE_NAMES.items()}
_BACKTICKS = re.compile(r"`{3,}")
_LINK_TEXT = re.compile(r"([\[\]\\])")
_LINE_ENDING = re.compile(r"\r\n?|\n")
_INFO_UNSAFE = re.compile(r"[^A-Za-z0-9_+.#-]")  # what a fence's language may hold
_DEFAULT_UNITS = UnitOptions()


def _yaml_str(value: str) -> str:
    """A YAML double-quoted scalar (JSON strings are valid YAML)."""
    return orjson.dumps(value).decode()


def _fence(body: str) -> str:
    """A code fence longer than any backtick run inside ``body``."""
    longest = max((len(m) for m in _BACKTICKS.findall(body)), default=2)
    return "`" * max(3, longest + 1)


def _link_text(text: str) -> str:
    return _LINK_TEXT.sub(r"\\\1", text.replace("\n", " "))


class MarkdownFormat(Format):
    """Markdown with YAML front matter, one file per conversation."""

    name = "markdown"
    extension = "md"
    # 2: reasoning parts as a folded callout, not a JSON block. 3: text parts joined as
    # one text, each source a numbered link where the app cut the text. 4: each message a
    # closed unit, math in dollars, Obsidian properties (aliases, source, tags). 5: documents
    # (canvas, artifacts) as a callout or a fence of their language, not a JSON block.
    version = "5"
    description = "Markdown with YAML front matter (Obsidian-friendly)"
    options = {
        "reasoning": Option(
            help="reasoning (thinking) parts: show them as a folded callout, or hide them "
                 "(e.g. for search indexes, where they add noise)",
            default="show", choices=("show", "hide")),
        "tool_calls": Option(
            help="tool parts (tool-call, tool-result, ...): show them as JSON blocks, "
                 "or hide them",
            default="show", choices=("show", "hide")),
        "math": Option(
            help="ChatGPT's \\( \\) and \\[ \\] math: 'dollars' turns it into $ $ and $$ $$ "
                 "(which Obsidian renders), outside code; 'keep' leaves the text as stored",
            default="dollars", choices=("dollars", "keep")),
        "properties": Option(
            help="front matter: 'obsidian' adds aliases (the title), source (the "
                 "conversation's web address, where the provider has one) and tags; "
                 "'basic' only id, title, provider, times and message count",
            default="obsidian", choices=("obsidian", "basic")),
    }

    def render(self, conversation: Conversation, ctx: RenderContext) -> str:
        """Render the conversation as Markdown text."""
        conv = conversation
        tz = ctx.tz
        iso = formatter_for(tz)
        hide = _hidden_kinds(ctx.options)
        units = UnitOptions(math=ctx.options.get("math", "dollars"))
        title = one_line(conv.title) or "Untitled"
        out: list[str] = [
            "---",
            f"id: {_yaml_str(conv.id)}",
            f"title: {_yaml_str(conv.title)}",
            f"provider: {_yaml_str(conv.provider)}",
            f"created: {iso_time(conv.created_at, tz) or 'null'}",
            f"updated: {iso_time(conv.updated_at, tz) or 'null'}",
            f"messages: {len(conv.messages)}",
        ]
        if ctx.options.get("properties", "obsidian") == "obsidian":
            out += _obsidian_properties(conv, self.note_stem(ctx))
        out += ["---", "", f"# {title}", ""]
        if ctx.branches == "all":
            entries = conv.tree_order()
            active = {m.id for m in conv.active_branch()}
            branched = any(count > 1 for _, _, count in entries)
            if branched:
                out += ["> This conversation has alternative branches; every branch is shown, "
                        "depth first. Messages on the branch last viewed are marked ★.", ""]
            for msg, number, count in entries:
                label = f" · branch {number} of {count}" if count > 1 else ""
                star = " ★" if branched and msg.id in active else ""
                _message(out.append, msg, label + star, iso, hide, conv.provider, units)
        else:
            path = conv.active_branch()
            left_out = len(conv.messages) - len(path)
            if left_out:
                noun = "message" if left_out == 1 else "messages"
                out += [f"> {left_out} {noun} on other branches not shown "
                        "(export with `--branches all` to include them).", ""]
            for msg in path:
                _message(out.append, msg, "", iso, hide, conv.provider, units)
        # Blocks are separated by a blank line: each ends with "" in ``out``. The last
        # ones are dropped here instead of stripping (and so copying) the whole text.
        while out and out[-1] == "":
            out.pop()
        out.append("")
        return "\n".join(out)

    def note_stem(self, ctx: RenderContext) -> str:
        """The note's file name without ``.md``: Obsidian's name for it."""
        if not ctx.file:
            return "conversation"
        name = os.path.basename(ctx.file)
        return name[:-len(".md")] if name.endswith(".md") else os.path.splitext(name)[0]


# Where each provider shows a conversation on the web. Perplexity's address is a
# slug of the question plus an id the archive does not keep whole: none is made up.
WEB_ADDRESSES = {
    "chatgpt": "https://chatgpt.com/c/{id}",
    "claude": "https://claude.ai/chat/{id}",
}


def _obsidian_properties(conv: Conversation, stem: str) -> list[str]:
    """``aliases`` (the title, when the file is named otherwise), ``source`` and ``tags``.

    Obsidian lists every note of a folder layout as "conversation": the alias
    is how a search or a ``[[link]]`` finds it by its title.
    """
    lines: list[str] = []
    title = one_line(conv.title)
    if title and title != stem:
        lines += ["aliases:", f"  - {_yaml_str(title)}"]
    address = WEB_ADDRESSES.get(conv.provider)
    if address:
        lines.append(f"source: {_yaml_str(address.format(id=quote(conv.id, safe='')))}")
    tag = re.sub(r"[^\w/-]+", "-", conv.provider).strip("-")
    if tag:
        lines += ["tags:", f"  - {_yaml_str(tag)}"]
    return lines


def _hidden_kinds(options: Mapping[str, Any]) -> Callable[[str], bool]:
    """Which non-text part types the options leave out (``-o reasoning=hide`` ...)."""
    no_reasoning = options.get("reasoning") == "hide"
    no_tools = options.get("tool_calls") == "hide"

    def hidden(kind: str) -> bool:
        return (no_reasoning and kind == "reasoning") or (no_tools and _is_tool_part(kind))
    return hidden


def _is_tool_part(kind: str) -> bool:
    """``tool-call``, ``tool-result``, ``tool-<name>`` (AI SDK 5), ``dynamic-tool``, ..."""
    return kind.startswith(("tool-", "tool_")) or kind in ("tool", "dynamic-tool")


def _callout(title: str, text: str, folded: bool = True) -> str:
    """An Obsidian callout, folded (``> [!note]- Title``) or open (``+``); elsewhere a
    plain quote.

    Every CommonMark line ending (LF, CRLF, a lone CR) starts a quoted line:
    a line left unquoted could open a code fence that swallows the rest.
    """
    lines = _LINE_ENDING.split(text.strip("\r\n"))
    return f"> [!note]{'-' if folded else '+'} {title}\n" + "\n".join(
        f"> {line}" if line else ">" for line in lines)


# Parts holding a whole document the assistant wrote (ChatGPT's canvas, Grok's artifacts):
# their label, and the fields of the document's name and of its type.
_DOCUMENTS = {"data-canvas": ("Canvas", "name", "textdoc_type"),
              "data-artifact": ("Artifact", "title", "contentType")}
# Document types that are prose, read as Markdown; any other names a code language.
_PROSE = frozenset({"", "document", "text/markdown", "text/plain", "markdown", "text"})


def _document(block: Part, units: UnitOptions) -> str | None:
    """A document part as people read it: prose as an open callout (rendered, closed like a
    message), code in a fence named by its language; None when it holds no text."""
    label, name_field, type_field = _DOCUMENTS[str(block.get("type"))]
    content, kind = block.get("content"), block.get(type_field)
    if type(content) is not str or not content.strip():
        return None
    name = block.get(name_field)
    title = f"{label}: {one_line(name)}" if type(name) is str and name.strip() else label
    kind = kind.strip().lower() if type(kind) is str else ""
    if kind in _PROSE:
        return _callout(title, closed_unit(content.strip("\r\n"), units), folded=False)
    language = kind.rsplit("/", 1)[-1].removeprefix("x-")  # code/python, text/x-python
    fence = _fence(content)
    return f"*{_link_text(title)}*\n\n{fence}{_INFO_UNSAFE.sub('', language)}\n" \
        f"{content.strip(chr(10))}\n{fence}"


def _message(append: Callable[[str], None], msg: Message, label: str,
             iso: Callable[[int | None], str | None],
             hidden: Callable[[str], bool] = lambda kind: False, provider: str = "",
             units: UnitOptions = _DEFAULT_UNITS) -> None:
    # Runs once per message of the export: kept to plain appends, and a text
    # part is appended as it is (a block ends with "", which the join turns
    # into the blank line) rather than copied to add a newline.
    header = _HEADERS.get(msg.role) if not label else None
    if header is None:
        role = ROLE_NAMES.get(msg.role) or msg.role.capitalize() or "Unknown"
        header = f"## {role}{label}"
    append(header)
    append("")
    if msg.created_at is not None:
        when = iso(msg.created_at)
        if when:
            append(f"*{when}*")
            append("")
    if msg.parts_error:
        append(f"> ⚠ The stored parts of this message are not valid JSON "
               f"({msg.parts_error}); the raw text follows.")
        append("")
    parts = msg.parts
    if len(parts) == 1 and parts[0].get("type") == "text":
        # Most messages: one text part, nothing to join (join_parts gives the same).
        _text_block(append, part_text(parts[0].get("text")), units)
    else:
        joined = join_parts(parts, provider)
        _blocks(append, joined.blocks, hidden, units)
        if joined.sources:
            append(_sources(joined.sources))
            append("")
    for att in msg.attachments:
        append(_attachment(att))
        append("")


def _blocks(append: Callable[[str], None], blocks: list[str | Part],
            hidden: Callable[[str], bool], units: UnitOptions) -> None:
    """A message's texts (each source a link at its cut) and its other parts, in order."""
    for block in blocks:
        if type(block) is str:
            _text_block(append, block, units)
            continue
        assert isinstance(block, dict)
        kind = block.get("type")
        if type(kind) is str and hidden(kind):
            continue
        if kind == "reasoning" and type(block.get("text")) is str and (
                block["text"].strip() or block.keys() <= {"type", "text"}):
            # Blank and nothing else: dropped. Blank with other fields (redacted
            # reasoning's data): a JSON block below, as any other part.
            if block["text"].strip():
                append(_callout("Reasoning", block["text"]))
                append("")
        elif kind in _DOCUMENTS and (document := _document(block, units)) is not None:
            append(document)
            append("")
        else:
            body = orjson.dumps(block, option=orjson.OPT_INDENT_2).decode()
            fence = _fence(body)
            append(f"*[{kind} part]*\n\n{fence}json\n{body}\n{fence}")
            append("")


def _text_block(append: Callable[[str], None], text: str, units: UnitOptions) -> None:
    """One text, without the blank lines around it (the blocks' join adds them), closed
    so that nothing in it runs into the next block or passes for a turn."""
    if not text:
        return
    if text[-1] in "\r\n" or text[0] in "\r\n":
        text = text.strip("\r\n")
    if text and not text.isspace():
        append(closed_unit(text, units))
        append("")


def _sources(sources: list[Source]) -> str:
    """Each distinct source once, numbered as the links at the cuts are."""
    return "**Sources**\n\n" + markdown_sources(sources)


def _attachment(att: Attachment) -> str:
    name = att.filename or att.id
    if att.exported_path:
        target = quote(att.exported_path)
        bang = "!" if att.is_image else ""
        return f"{bang}[{_link_text(name)}]({target})"
    reason = att.unavailable_reason or "not available"
    return f"> ⚠ Attachment unavailable: {_link_text(name)}: {reason}"


@hookimpl
def zexport_formats() -> list[Format]:
    """Register the markdown format."""
    return [MarkdownFormat()]
