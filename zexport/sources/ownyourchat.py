"""The OwnYourChat archive itself: the identity source (nothing to convert)."""

from __future__ import annotations

from zexport.sources.base import Source
from zexport.sources.bundle import SQLITE_MAGIC, Bundle, FileBundle


class OwnYourChatSource(Source):
    name = "ownyourchat"
    description = "OwnYourChat's SQLite archive (read in place, read-only)"

    def recognise(self, bundle: Bundle) -> bool:
        if not isinstance(bundle, FileBundle):
            return False
        return bundle.head(bundle.names()[0], len(SQLITE_MAGIC)) == SQLITE_MAGIC

    def archive(self, bundle: Bundle) -> str | None:
        return bundle.path
