"""The private runtime folder: where a run's sockets and registration live.

Per user, mode 0700, checked to be owned by us (never trusted if not): only
the same user can reach a controller's ipc endpoints. Each run gets a short
folder (ipc paths are capped at ~107 bytes on Linux) holding its sockets,
and a registration file ``<base>/<run>.json`` that ``zexport status`` and
``zexport cancel`` read to find running exports.
"""

from __future__ import annotations

import os
import secrets
import shutil
import stat
import tempfile

from .errors import ZexportError


def runtime_base() -> str:
    """The per-user runtime folder, created 0700 if missing, verified if present."""
    override = os.environ.get("ZEXPORT_RUNTIME_DIR")
    if override:
        base = override
    elif os.environ.get("XDG_RUNTIME_DIR") and os.path.isdir(os.environ["XDG_RUNTIME_DIR"]):
        base = os.path.join(os.environ["XDG_RUNTIME_DIR"], "zexport")
    else:
        base = os.path.join(tempfile.gettempdir(), f"zexport-{os.getuid()}")
    try:
        os.mkdir(base, 0o700)
    except FileExistsError:
        pass
    st = os.lstat(base)
    if not stat.S_ISDIR(st.st_mode) or st.st_uid != os.getuid():
        raise ZexportError(f"runtime folder {base} is not a folder owned by you; refusing it")
    if stat.S_IMODE(st.st_mode) != 0o700:
        os.chmod(base, 0o700)
    return base


def new_run_dir() -> tuple[str, str]:
    """Create a fresh private folder for one run; return (run_id, path)."""
    base = runtime_base()
    while True:
        run_id = secrets.token_hex(4)
        path = os.path.join(base, run_id)
        try:
            os.mkdir(path, 0o700)
            return run_id, path
        except FileExistsError:
            continue


def endpoint(run_dir: str, name: str) -> str:
    """The ipc endpoint ``name`` inside a run folder."""
    return f"ipc://{os.path.join(run_dir, name)}"


def remove_run_dir(path: str) -> None:
    """Delete a run folder and everything in it (sockets, side index)."""
    shutil.rmtree(path, ignore_errors=True)
