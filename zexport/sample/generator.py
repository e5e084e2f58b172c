"""The sample's rows: conversations, messages and attachments shaped as the app writes them.

What the app's sync leaves in an archive, per provider (BRIEF §3, and the
app's own ``realistic.db``):

- **ChatGPT**: a message tree; a root has no parent; ``sibling_ids`` lists
  the siblings (``["<own id>"]`` when there are none) and ``sibling_index``
  the position; ``current_node_id`` is the active leaf.
- **Claude**: a tree whose roots hang under the all-zero UUID
  (:data:`zexport.schema.CLAUDE_ROOT_PARENT`); ``sibling_ids`` is ``'[]'``
  and ``sibling_index`` 0 everywhere, even at a branch point.
- **Perplexity**: query/answer pairs (``<uuid>-query``, ``<uuid>-answer``)
  without ``parent_id`` and without ``current_node_id``.
- Message ``updated_at`` is NULL; an answer that is only an image is
  ``[{"type":"text","text":""}]`` plus an attachment row.
- **Citations are inline**: the answer text is cut at each citation and a
  ``source-url`` part (with the provider's own keys) sits in the cut, also
  inside list items and table cells (:func:`text.cut_points`).

On top of that the dirt of real archives: NULL timestamps, wrong counters,
unparseable parts, missing parents and current nodes, unknown part types.
"""

from __future__ import annotations

import random
import string
from collections.abc import Sequence
from typing import Any

import apsw
import orjson

from zexport.sample.attachments import Attachments, uuid_like
from zexport.sample.content import Content
from zexport.sample.specials import BAD_PARTS, NEW_CHAT_RATE, SPECIAL_TITLES, SPECIALS
from zexport.schema import CLAUDE_ROOT_PARENT, DDL

#: Fixed "now" of every sample (2023-11-14T22:13:20Z): never the wall clock,
#: so that two runs give the same bytes.
BASE_TS = 1_700_000_000

#: The export settings the sample's user saved in the app (``user_preferences``):
#: zexport's defaults (Markdown, date prefix, no output folder chosen), so
#: ``zexport run`` on the sample does what the README says.
DEFAULT_EXPORT_SETTINGS: dict[str, Any] = {
    "format": "markdown", "includeAttachments": True, "prefixTimestamp": True,
    "outputPath": "",
}

_TWO_YEARS = 730 * 86_400
_BATCH = 500  # conversations per executemany round: bounds memory, keeps rounds large
_MAX_MESSAGES = 1_000
_PROVIDERS = ("chatgpt", "claude", "perplexity")
_PROVIDER_WEIGHTS = (55, 30, 15)
_SLUG = string.ascii_letters + string.digits + "._-"

# Rows are plain lists so that branch bookkeeping can patch them in place.
_Row = list[Any]


class Generator:
    """Builds rows from one rng and writes them; holds the per-run text pools."""

    def __init__(self, rng: random.Random, final_dir: str, tmp_dir: str) -> None:
        self.rng = rng
        self.conv_rows: list[_Row] = []
        self.msg_rows: list[_Row] = []
        self.n_conversations = 0
        self.n_messages = 0
        # Per-conversation state used by _emit.
        self.cid = ""
        self.provider = ""
        self.t = 0
        self.order = 0
        self.sibling_null = False
        self.force: frozenset[str] = frozenset()
        self.pair_id = ""  # Perplexity: the uuid a query and its answer share
        self.text = Content(rng)
        self.files = Attachments(rng, final_dir, tmp_dir, self.text.user_texts)

    # -- messages ----------------------------------------------------------

    def _message_id(self, role: str) -> str:
        if self.provider != "perplexity":
            return uuid_like(self.rng)
        if role == "user":
            self.pair_id = uuid_like(self.rng)
            return f"{self.pair_id}-query"
        return f"{self.pair_id or uuid_like(self.rng)}-answer"

    def _emit(self, role: str, parent: str | None) -> str:
        """Append one message row (and maybe attachments); return its id."""
        rng = self.rng
        mid = self._message_id(role)
        image_only = False
        if role == "assistant":
            image_only = self.provider == "chatgpt" and (
                "image-only" in self.force and self.order == 2
                or "image-only" not in self.force and rng.random() < 0.01)
            parts = ([{"type": "text", "text": ""}] if image_only
                     else self.text.assistant_parts(self.provider, self.force))
        elif role == "user":
            parts = [{"type": "text", "text": self.text.user_text()}]
        else:
            parts = [{"type": "text", "text": "You are a helpful assistant. " +
                      rng.choice(self.text.user_texts)}]
        self.t += rng.randrange(2, 400)
        created: int | None = None if rng.random() < 0.004 else self.t
        if self.provider == "chatgpt":
            siblings: str | None = f'["{mid}"]'
        else:
            siblings = "[]"
        if self.sibling_null:
            siblings = None
        if parent is None and self.provider == "claude":
            parent = CLAUDE_ROOT_PARENT
        self.msg_rows.append([mid, self.cid, role, orjson.dumps(parts).decode(), created,
                              None, self.order, parent, siblings, 0])
        self.order += 1
        if image_only:
            self.files.add(self.provider, self.cid, mid, "image", filename=f"{uuid_like(rng)}.png",
                           ext=".png")
        elif (rng.random() < (0.075 if role == "user" else 0.025)
              and (role == "user" or self.provider != "perplexity")):
            self.files.add(self.provider, self.cid, mid)
            if rng.random() < 0.1:
                self.files.add(self.provider, self.cid, mid)
        return mid

    def _chain(self, roles: Sequence[str], parent: str | None) -> str | None:
        """Emit messages in a line below ``parent``; return the last id.

        Perplexity threads have no tree: every message is emitted without a parent.
        """
        linked = self.provider != "perplexity"
        last = parent
        for role in roles:
            last = self._emit(role, parent)
            parent = last if linked else None
        return last

    def _special_attachments(self, user_ids: list[str]) -> None:
        """Every attachment state and the nastiest filenames, on a few messages."""
        a, b = user_ids[0], user_ids[1 % len(user_ids)]
        add = self.files.add
        p, c = self.provider, self.cid
        add(p, c, a, "image", "cached", "image.png", ".png")
        add(p, c, a, "image", "cached", "image.png", ".png")  # same name twice
        add(p, c, a, "image", "cached", "😀 photo.jpg", ".jpg")
        add(p, c, a, "file", "cached", "../../etc/passwd", ".txt")
        add(p, c, a, "file", "cached", "x" * 300 + ".pdf", ".pdf")
        add(p, c, a, "image", "resynced", "resynced.png", ".png")  # '' but on disk
        add(p, c, b, "image", "missing", "a/b.png", ".png")
        add(p, c, b, "file", "gone", "CON.txt", ".txt")
        add(p, c, b, "file", "missing", None, ".pdf")
        add(p, c, b, "image", "gone", "..\\..\\windows\\win.ini", ".jpg")

    # -- conversations -----------------------------------------------------

    def _length(self) -> int:
        """Heavy-tailed message count: median ~13, mean ~20, a few in the hundreds."""
        n = int(self.rng.lognormvariate(2.55, 0.95))
        return min(max(n, 2), _MAX_MESSAGES)

    def _title(self, index: int) -> str:
        rng = self.rng
        if index < len(SPECIAL_TITLES):
            return SPECIAL_TITLES[index]
        r = rng.random()
        if r < NEW_CHAT_RATE:
            return "New chat"
        if r < 0.45:
            return rng.choice(self.text.titles_common)
        return rng.choice(self.text.titles_rare)

    def _conversation(self, index: int) -> None:
        rng = self.rng
        spec = SPECIALS[index] if index < len(SPECIALS) else None
        title = self._title(index)
        if spec is not None:
            provider = spec.provider
            n = spec.n if spec.n is not None else self._length()
            force = spec.flags
            system_first = spec.system_first
            branch = spec.branch
        else:
            provider = rng.choices(_PROVIDERS, _PROVIDER_WEIGHTS)[0]
            n = 0 if rng.random() < 0.003 else self._length()
            force = frozenset()
            system_first = provider != "perplexity" and rng.random() < 0.03
            branch = None
            if provider != "perplexity" and n >= 3 and rng.random() < 0.10:
                branch = "assistant" if rng.random() < 0.75 else "user"
        cid = ("".join(rng.choices(_SLUG, k=22)) if provider == "perplexity"
               else uuid_like(rng))
        created = BASE_TS - rng.randrange(_TWO_YEARS)
        self.cid, self.provider, self.t, self.order = cid, provider, created, 0
        self.force = force
        self.sibling_null = "sibling-null" in force or (
            spec is None and provider != "perplexity" and rng.random() < 0.03)
        first_row = len(self.msg_rows)

        roles = ["system"] if system_first else []
        roles += ["user" if i % 2 == 0 else "assistant" for i in range(n - len(roles))]
        leaf = self._chain(roles, None) if branch is None else self._branched(roles, branch)

        rows = self.msg_rows[first_row:]
        count = len(rows)
        if "attachments" in force:
            self._special_attachments([r[0] for r in rows if r[2] == "user"])
        self._dirty_messages(rows, force, spec is not None)

        current: str | None = None if provider == "perplexity" else leaf
        if "node-null" in force or (spec is None and rng.random() < 0.005):
            current = None
        elif "node-missing" in force or (
                spec is None and provider != "perplexity" and rng.random() < 0.002):
            current = uuid_like(rng)
        updated: int | None = self.t + rng.randrange(0, 3_600)
        conv_created: int | None = created
        r = rng.random()
        if "null-times" in force:
            conv_created = updated = None
        elif spec is None and r < 0.01:
            conv_created = None
        elif spec is None and r < 0.03:
            updated = None
        message_count: int | None = count
        r = rng.random()
        if "count-null" in force or (spec is None and r < 0.02):
            message_count = None
        elif "count-wrong" in force or (spec is None and r < 0.05):
            message_count = max(0, count + rng.choice((-5, -2, -1, 1, 3, 7)))
        sync_error: str | None = None
        retries = 0
        if "sync-error" in force or (spec is None and rng.random() < 0.01):
            sync_error = rng.choice(("HTTP 500: upstream error", "rate limited (429)",
                                     "conversation not found"))
            retries = rng.randint(1, 5)
        synced: int | None = None if rng.random() < 0.02 else BASE_TS + rng.randrange(86_400)
        self.conv_rows.append([cid, title, provider, conv_created, updated, synced,
                               message_count, current, sync_error, retries])
        self.n_conversations += 1
        self.n_messages += count

    def _branched(self, roles: list[str], branch: str) -> str | None:
        """Emit a tree with one branch point; return the leaf of the active branch.

        At one message (an assistant answer that was regenerated, or a user
        message that was edited) 2-3 siblings share a parent, each followed by
        its own continuation; they are created one after another, so
        order_index and timestamps grow branch by branch. The active branch is
        usually the newest but not always, as when the user flips back.
        ChatGPT lists the siblings in ``sibling_ids``; Claude does not.
        """
        rng = self.rng
        want = "user" if branch.startswith("user") else "assistant"
        other = "user" if want == "assistant" else "assistant"
        candidates = [i for i in range(1, len(roles)) if roles[i] == want] or [len(roles) - 1]
        b = rng.choice(candidates)
        parent = self._chain(roles[:b], None)
        k = 3 if branch == "assistant-not-last" or rng.random() < 0.3 else 2
        sib_rows: list[int] = []
        leaves: list[str | None] = []
        for j in range(k):
            sib_rows.append(len(self.msg_rows))
            tail = roles[b:] if j == 0 else [want] + [
                other if i % 2 == 0 else want for i in range(rng.randint(0, 4))]
            leaves.append(self._chain(tail, parent))
        if self.provider == "chatgpt" and not self.sibling_null:
            sib_json = orjson.dumps([self.msg_rows[i][0] for i in sib_rows]).decode()
            for pos, i in enumerate(sib_rows):
                self.msg_rows[i][8] = sib_json
                self.msg_rows[i][9] = pos
        if branch == "assistant-not-last" or (branch != "user-last" and rng.random() < 0.35):
            return leaves[rng.randrange(k - 1)]
        return leaves[k - 1]

    def _dirty_messages(self, rows: list[_Row], force: frozenset[str], special: bool) -> None:
        """Corrupt a few rows: forced for the specials, at random (rarely) otherwise."""
        if not rows:
            return
        rng = self.rng
        if not special:
            r = rng.random()
            force = frozenset(("bad-parts",) if r < 0.002 else ("orphan",) if r < 0.004 else ())
        if "bad-parts" in force:
            # The special conversation gets every variant; a random one gets one.
            variants = BAD_PARTS if special else (rng.choice(BAD_PARTS),)
            victims = rng.sample(range(len(rows)), min(len(rows), len(variants)))
            for v, text in zip(victims, variants[:len(victims)], strict=True):
                rows[v][3] = text
        if "orphan" in force and len(rows) >= 2 and self.provider != "perplexity":
            rows[rng.randrange(1, len(rows))][7] = uuid_like(rng)
        if "null-times" in force:
            for row in rows[::2]:
                row[4] = None

    # -- writing -----------------------------------------------------------

    def write(self, db_path: str, conversations: int,
              export_settings: dict[str, Any] | None) -> None:
        """Create the database at ``db_path`` and fill it in one transaction."""
        conn = apsw.Connection(db_path)
        try:
            conn.execute("PRAGMA page_size=4096; PRAGMA journal_mode=DELETE;"
                         " PRAGMA synchronous=OFF; PRAGMA cache_size=-131072;"
                         " PRAGMA foreign_keys=OFF")
            conn.execute("BEGIN")
            conn.execute(DDL)
            self._app_state(conn, export_settings)
            for start in range(0, conversations, _BATCH):
                for index in range(start, min(start + _BATCH, conversations)):
                    self._conversation(index)
                self._flush(conn)
            conn.execute("COMMIT")
        finally:
            conn.close()

    @staticmethod
    def _app_state(conn: apsw.Connection, export_settings: dict[str, Any] | None) -> None:
        """The app's own bookkeeping rows: sync cursors, provider status, preferences."""
        conn.executemany(
            "INSERT INTO sync_state (key, value, created_at, updated_at) VALUES (?, ?, ?, ?)", [
                ("lastFullSync", str(BASE_TS), BASE_TS - _TWO_YEARS, BASE_TS),
                ("schemaVersion", "1", BASE_TS - _TWO_YEARS, BASE_TS - _TWO_YEARS)])
        conn.executemany(
            "INSERT INTO provider_state (provider_name, is_connected, last_sync_at, status,"
            " error_message, metadata, created_at, updated_at) VALUES (?,?,?,?,?,?,?,?)", [
                ("chatgpt", 1, BASE_TS, "connected", None, None, BASE_TS - _TWO_YEARS, BASE_TS),
                ("claude", 0, BASE_TS - 86_400, "logged_out", None,
                 '{"lastCompletedOffset":120,"isFullSyncComplete":true,"lastSyncPageSize":30}',
                 BASE_TS - _TWO_YEARS, BASE_TS - 86_400),
                ("perplexity", 1, BASE_TS - 3_600, "error", "HTTP 429: rate limited", None,
                 BASE_TS - _TWO_YEARS, BASE_TS - 3_600)])
        settings = None if export_settings is None else orjson.dumps(export_settings).decode()
        conn.execute(
            "INSERT INTO user_preferences (id, has_completed_onboarding, created_at, updated_at,"
            " show_debug_panel, export_settings) VALUES ('default', 1, ?, ?, 0, ?)",
            (BASE_TS - _TWO_YEARS, BASE_TS, settings))

    def _flush(self, conn: apsw.Connection) -> None:
        conn.executemany("INSERT INTO conversations VALUES (?,?,?,?,?,?,?,?,?,?)",
                         self.conv_rows)
        conn.executemany("INSERT INTO messages VALUES (?,?,?,?,?,?,?,?,?,?)", self.msg_rows)
        conn.executemany("INSERT INTO attachments VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)",
                         self.files.rows)
        self.conv_rows.clear()
        self.msg_rows.clear()
        self.files.rows.clear()
