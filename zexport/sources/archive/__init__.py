"""Reading an OwnYourChat archive through APSW, read-only and in batches.

One module per job: :mod:`.opening` (read-only, in the archive's text
encoding), :mod:`.listing` (the controller's planning queries),
:mod:`.message_runs` and :mod:`.attachment_copy` (the side files written
once per run, in parts by the workers (:mod:`.index_parts`), because the
app's schema has no index on ``messages.conversation_id`` nor on
``attachments.message_id``),
:mod:`.batch_reader` (a worker's batched read) and :mod:`.repair` (dirty rows
into the model). The names callers use are gathered here, so a caller
imports ``zexport.sources.archive`` without knowing which module holds what.
"""

from zexport.sources.archive.batch_reader import BatchReader
from zexport.sources.archive.index_parts import (
    IndexInterrupted,
    IndexPart,
    PartErrors,
    PlannedParts,
    build_attachment_index,
    build_message_index,
    build_part,
    part_path,
    plan_parts,
)
from zexport.sources.archive.listing import (
    ConversationHead,
    Selection,
    list_conversations,
    unaddressable_conversations,
)
from zexport.sources.archive.opening import open_archive

__all__ = ["BatchReader", "ConversationHead", "IndexInterrupted", "IndexPart", "PartErrors",
           "PlannedParts", "Selection", "build_attachment_index", "build_message_index",
           "build_part", "list_conversations", "open_archive", "part_path", "plan_parts",
           "unaddressable_conversations"]
