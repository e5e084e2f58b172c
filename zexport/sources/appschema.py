"""The app's own schema, as OwnYourChat's ``app-empty-sqlite.db`` declares it.

A converted export is written in exactly these tables and columns, so the
reader, the controller and every format handle it as they handle the app's
archive (``zexport/app_schema.sql``, which tests compare with the app's empty
database). The one addition is an index on ``messages.conversation_id``: the
app's archive has none, and a converted archive is ours to index.
"""

from __future__ import annotations

from zexport.schema import DDL as APP_DDL  # app_schema.sql: one copy of the app's SQL

__all__ = ["APP_DDL", "EXTRA_INDEXES"]

EXTRA_INDEXES = "CREATE INDEX zexport_messages_conversation ON messages(conversation_id);"
