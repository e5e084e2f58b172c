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

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from zexport.sources.bundle import Bundle
    from zexport.sources.records import ConversationRecord
    from zexport.sources.writer import ArchiveWriter


@dataclass
class Conversion:
    """What :meth:`Source.convert` writes to: the archive, a folder for files, notes.

    ``notes`` go to the run report (a missing shard, missing files); a
    conversation that cannot be converted is passed to :meth:`failed`, and the
    rest of the input is still converted.
    """

    writer: ArchiveWriter
    files_dir: str
    notes: list[str] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)

    def add(self, conversation: ConversationRecord) -> None:
        if not self.writer.add(conversation):
            self.notes.append(f"conversation {conversation.id!r} appears twice in the input;"
                              " the first was exported")

    def failed(self, where: str, reason: str) -> None:
        self.failures.append(f"{where}: {reason}")


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

    def archive(self, bundle: Bundle) -> str | None:
        """The input's own path when it already is an archive in the app's schema."""
        return None

    def convert(self, bundle: Bundle, into: Conversion) -> None:
        """Write every conversation of ``bundle`` through ``into``."""
        raise NotImplementedError
