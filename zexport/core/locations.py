"""Where things are by default: the app's folder and archive, zexport's cache."""

from __future__ import annotations

import os
import sys


def app_data_dir() -> str:
    """OwnYourChat's user-data folder on this OS (Electron's ``userData``): its archive
    and its ``attachments/`` live there (it may not exist)."""
    home = os.path.expanduser("~")
    if sys.platform == "darwin":
        base = os.path.join(home, "Library", "Application Support")
    elif sys.platform.startswith("win"):
        base = os.environ.get("APPDATA", os.path.join(home, "AppData", "Roaming"))
    else:
        base = os.environ.get("XDG_CONFIG_HOME") or os.path.join(home, ".config")
    return os.path.join(base, "ownyourchat")


def app_archive_path() -> str:
    """Where OwnYourChat keeps ``ownyourchat.db`` on this OS (it may not exist)."""
    return os.path.join(app_data_dir(), "ownyourchat.db")


def cache_dir() -> str:
    """zexport's cache folder (``ZEXPORT_CACHE_DIR``, else the OS's user cache)."""
    override = os.environ.get("ZEXPORT_CACHE_DIR")
    if override:
        return override
    home = os.path.expanduser("~")
    if sys.platform == "darwin":
        return os.path.join(home, "Library", "Caches", "zexport")
    if sys.platform.startswith("win"):
        return os.path.join(os.environ.get("LOCALAPPDATA", home), "zexport", "Cache")
    return os.path.join(os.environ.get("XDG_CACHE_HOME") or os.path.join(home, ".cache"),
                        "zexport")
