"""The attachment cache: ``<root>/<provider>/<key>/<file name>``.

Keyed by provider and file id (or a hash of the URL when there is no file
id), so the next run finds a file without asking any server, whatever
conversation or attachment row refers to it. One file per key folder; the
file keeps the name the provider gave it, so a cache hit yields the same
name as the download did (deterministic output). Files arrive by rename
from a staging folder on the same file system, so a reader never sees a
partial file. Folders are created 0700: attachments are private data.
"""

from __future__ import annotations

import hashlib
import os
import shutil

from zexport.core.naming import sanitize_component
from zexport.core.output import TEMP_PREFIX
from zexport.core.runtime import pid_alive

STAGING = ".staging"


def _component(text: str) -> str:
    """A safe folder name that still identifies ``text`` uniquely."""
    safe = sanitize_component(text, 100)
    if safe != text or not safe:
        digest = hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:16]
        safe = f"{safe[:80]}-{digest}" if safe else digest
    return safe


def cache_key(file_id: str | None, original_url: str | None) -> str | None:
    """The cache key of an attachment: its file id, else a hash of its URL, else None."""
    if file_id:
        return file_id
    if original_url:
        return "url-" + hashlib.sha256(original_url.encode("utf-8", "surrogatepass")).hexdigest()
    return None


class AttachmentCache:
    """Lookup and store of downloaded attachment files."""

    def __init__(self, root: str) -> None:
        self.root = os.path.abspath(root)
        self.staging = os.path.join(self.root, STAGING)
        # Providers whose folder did not exist when first asked about: nothing of theirs
        # is cached, so their lookups need no file system call (a run without credentials
        # asks about every missing attachment: 6,313 on the 10k sample). A file another
        # run stores meanwhile is found by the next run; store() here clears the mark.
        self._holds: dict[str, bool] = {}
        self._provider_dirs: dict[str, str] = {}

    def _provider_dir(self, provider: str) -> str:
        path = self._provider_dirs.get(provider)
        if path is None:
            path = self._provider_dirs[provider] = os.path.join(self.root, _component(provider))
        return path

    def folder(self, provider: str, key: str) -> str:
        """The folder that holds the file for ``(provider, key)``."""
        return os.path.join(self._provider_dir(provider), _component(key))

    def version(self, provider: str) -> int | None:
        """A number that changes when files of ``provider`` are added to the cache or
        removed (its folder's mtime), None when it has none: whether conversations
        with missing attachments are worth rendering again (zexport.run.manifest)."""
        try:
            return os.stat(self._provider_dir(provider)).st_mtime_ns
        except OSError:
            return None

    def holds_any(self, provider: str) -> bool:
        """Whether anything of ``provider`` may be cached (its folder exists)."""
        return os.path.isdir(self._provider_dir(provider))

    def lookup(self, provider: str, key: str) -> str | None:
        """The cached file for ``(provider, key)``, or None."""
        holds = self._holds.get(provider)
        if holds is None:
            holds = self._holds[provider] = self.holds_any(provider)
        if not holds:
            return None
        return self._find(self.folder(provider, key))

    @staticmethod
    def _find(folder: str) -> str | None:
        """The file in a key's folder, if any (temporaries and symlinks skipped)."""
        try:
            names = sorted(n for n in os.listdir(folder) if not n.startswith(TEMP_PREFIX))
        except OSError:
            return None
        for name in names:
            path = os.path.join(folder, name)
            if os.path.isfile(path) and not os.path.islink(path):
                return path
        return None

    def store(self, provider: str, key: str, staged: str, name: str) -> str:
        """Move a finished download into the cache; return its path.

        If another run stored the same key meanwhile, its file wins and
        ``staged`` is removed: one file per key, always.
        """
        folder = self.folder(provider, key)
        existing = self._find(folder)  # on disk, whatever lookup() decided for this run
        if existing is not None:
            os.unlink(staged)
            return existing
        os.makedirs(folder, mode=0o700, exist_ok=True)
        self._holds[provider] = True
        target = os.path.join(folder, name)
        os.replace(staged, target)
        return target

    def run_staging(self) -> str:
        """A staging folder private to this process; stale ones of dead runs are swept.

        Per process, so two runs sharing a cache never delete each other's
        partial downloads.
        """
        try:
            for name in os.listdir(self.staging):
                pid = name.rpartition("-")[2]
                if pid.isdigit() and not pid_alive(int(pid)):
                    shutil.rmtree(os.path.join(self.staging, name), ignore_errors=True)
        except OSError:
            pass
        return os.path.join(self.staging, f"run-{os.getpid()}")
