"""The input-source contract: recognise an input, convert it into an archive.

A source turns one kind of input (a provider's export ZIP, its unpacked
folder, its JSON file) into a private SQLite archive in the app's schema;
the export pipeline then reads that archive like the app's own, unchanged.
Conversion streams the input (one conversation in memory at a time) and is
cached by the input's identity, so a re-run converts nothing. A source whose
input already *is* an archive (OwnYourChat's) returns its path from
:meth:`Source.archive` and converts nothing.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from zexport.sources.jsonstream import IsConversation, JSONBroken, iter_conversations

if TYPE_CHECKING:
    from zexport.sources.bundle import Bundle
    from zexport.sources.records import ConversationRecord
    from zexport.sources.writer import ArchiveWriter


@dataclass
class Conversion:
    """What :meth:`Source.convert` writes to: the archive, a folder for files, notes.

    ``notes`` go to the run report (a missing shard, missing files). What
    could not be converted (a conversation that does not parse, JSON that
    breaks off) is passed to :meth:`failed`: the rest of the input is still
    converted, and the run reports it as an error (exit status 1).
    ``processes`` is how many processes the conversion may use.
    """

    writer: ArchiveWriter
    files_dir: str
    notes: list[str] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    processes: int = 1
    missing: dict[str, str] = field(default_factory=dict)  # file id -> what the input lacks

    def add(self, conversation: ConversationRecord) -> None:
        if not self.writer.add(conversation):
            self.notes.append(f"conversation {conversation.id!r} appears twice in the input;"
                              " the first was exported")

    def failed(self, where: str, reason: str) -> None:
        self.failures.append(f"{where}: {reason}")

    def read_json(self, bundle: Bundle, name: str, is_conversation: IsConversation,
                  ) -> Iterator[tuple[int, str | None, dict[str, Any]]]:
        """``(index, key, conversation)`` of each conversation in the JSON member ``name``.

        Where the JSON breaks off (a truncated file), the conversations before
        the break have been yielded; the break is recorded with :meth:`failed`,
        naming its byte offset, and the member ends there.
        """
        n = 0
        try:
            with bundle.open(name) as stream:
                for key, conv in iter_conversations(stream, is_conversation, bundle.size(name)):
                    yield n, key, conv
                    n += 1
        except JSONBroken as broken:
            kept = ("no conversation of the file could be exported" if n == 0 else
                    "the conversation before it was exported, the rest of the file was not"
                    if n == 1 else f"the {n:,} conversations before it were exported, the"
                    " rest of the file was not")
            self.failed(name, f"the JSON breaks off {broken.where()} ({broken.reason}); {kept}")


class Source:
    """Base class of an input source (register instances with ``zexport_sources``).

    ``name`` is what ``--source`` selects; ``version`` is part of the cache
    key, so bump it when conversion output changes.
    """

    name: str = ""
    description: str = ""
    version: str = "1"

    def recognise(self, bundle: Bundle) -> bool:
        """Whether ``bundle`` is this source's input, judged by its content."""
        raise NotImplementedError

    def explain_refusal(self, bundle: Bundle) -> str | None:
        """What ``bundle`` is, when it is part of this source's input but not one it reads.

        Asked only when no source recognises the input, so that a side file of
        an export given alone (Claude's ``users.json``) is refused with what it
        is and what to give instead, not as an unknown file. Optional.
        """
        return None

    def archive(self, bundle: Bundle) -> str | None:
        """The input's own path when it already is an archive in the app's schema."""
        return None

    def convert(self, bundle: Bundle, into: Conversion) -> None:
        """Write every conversation of ``bundle`` through ``into``."""
        raise NotImplementedError

    def convert_files(self, bundle: Bundle, into: Conversion, files: list[str]) -> None:
        """Write the conversations of ``files`` only (independent members, such as shards).

        A source that has it can hand its files to
        :func:`zexport.sources.parallel.convert_parts`, which calls it in several
        processes (the source is made there again with no arguments).
        """
        raise NotImplementedError
