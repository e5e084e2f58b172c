"""Input sources: what ``zexport run --input`` reads (see docs/sources.md).

Public for plugins: :class:`Source` (subclass it), :class:`Conversion` (what
``convert`` writes to), the records it takes, :class:`Bundle` (the input's
files), and two helpers for recognising content: :func:`sniff_keys` (the
first keys of a JSON stream) and :func:`sniff_mime` (a file's type from its
first bytes).
"""

from zexport.sources.base import Conversion, Source
from zexport.sources.bundle import Bundle
from zexport.sources.jsonstream import sniff_keys
from zexport.sources.records import AttachmentRecord, ConversationRecord, MessageRecord
from zexport.sources.sniff import SNIFF_BYTES, sniff_mime

__all__ = ["SNIFF_BYTES", "AttachmentRecord", "Bundle", "ConversationRecord", "Conversion",
           "MessageRecord", "Source", "sniff_keys", "sniff_mime"]
