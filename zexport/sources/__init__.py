"""Input sources: what ``zexport run --input`` reads (see docs/sources.md).

Public for plugins: :class:`Source` (subclass it), :class:`Conversion` (what
``convert`` writes to), the records it takes, and :class:`Bundle` (the
input's files).
"""

from zexport.sources.base import Conversion, Source
from zexport.sources.bundle import Bundle
from zexport.sources.records import AttachmentRecord, ConversationRecord, MessageRecord

__all__ = ["AttachmentRecord", "Bundle", "ConversationRecord", "Conversion", "MessageRecord",
           "Source"]
