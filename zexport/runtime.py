"""The private runtime folder: where a run's sockets and registration live.

Per user, mode 0700, checked to be owned by us (never trusted if not): only
the same user can reach a controller's ipc endpoints. Each run gets a short
folder (ipc paths are capped at ~107 bytes on Linux) holding its sockets,
and a registration file ``<base>/<run>.json`` that ``zexport status`` and
``zexport cancel`` read to find running exports.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import stat
import tempfile
from typing import Any

from .errors import ZexportError

REGISTRATION_VERSION = 1
REGISTRATION_SUFFIX = ".json"


def _base_path() -> str:
    override = os.environ.get("ZEXPORT_RUNTIME_DIR")
    if override:
        return override
    if os.environ.get("XDG_RUNTIME_DIR") and os.path.isdir(os.environ["XDG_RUNTIME_DIR"]):
        return os.path.join(os.environ["XDG_RUNTIME_DIR"], "zexport")
    return os.path.join(tempfile.gettempdir(), f"zexport-{os.getuid()}")


def existing_runtime_base() -> str | None:
    """The runtime folder if it exists and is ours; never creates it.

    ``zexport status`` and ``zexport cancel`` use this: a client that finds
    nothing running must leave nothing behind.
    """
    base = _base_path()
    try:
        st = os.lstat(base)
    except FileNotFoundError:
        return None
    if not stat.S_ISDIR(st.st_mode) or st.st_uid != os.getuid():
        raise ZexportError(f"runtime folder {base} is not a folder owned by you; refusing it")
    return base


def runtime_base() -> str:
    """The per-user runtime folder, created 0700 if missing, verified if present."""
    base = _base_path()
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


def register_run(run_id: str, info: dict[str, Any]) -> str:
    """Publish a running export for ``zexport status``/``cancel``; return the file's path.

    The file is written owner-only (0600) to a temporary name and renamed,
    so a reader never sees half of it. Its fields are documented in
    docs/protocol.md ("Registration file").
    """
    base = runtime_base()
    path = os.path.join(base, run_id + REGISTRATION_SUFFIX)
    tmp = os.path.join(base, f".{run_id}.tmp")
    body = {"version": REGISTRATION_VERSION, "run_id": run_id, **info}
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        json.dump(body, fh, indent=1)
    os.replace(tmp, path)
    return path


def unregister_run(run_id: str) -> None:
    """Remove a run's registration (at the very end of the run)."""
    base = existing_runtime_base()
    if base:
        try:
            os.unlink(os.path.join(base, run_id + REGISTRATION_SUFFIX))
        except FileNotFoundError:
            pass


def pid_alive(pid: int) -> bool:
    """Whether ``pid`` is a running (not zombie) process."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            state = fh.read().rsplit(b")", 1)[1].split()[0]
        return state not in (b"Z", b"X")
    except (OSError, IndexError):
        return True  # no /proc (macOS): kill(0) is all we know


def list_runs(sweep: bool = True) -> list[dict[str, Any]]:
    """Registrations of running exports, oldest first.

    With ``sweep``, registrations of dead controllers (killed with SIGKILL,
    say) are removed together with their run folders. Unreadable or foreign
    files are ignored, never trusted. Creates nothing.
    """
    base = existing_runtime_base()
    if base is None:
        return []
    runs: list[dict[str, Any]] = []
    for name in sorted(os.listdir(base)):
        if not name.endswith(REGISTRATION_SUFFIX) or name.startswith("."):
            continue
        path = os.path.join(base, name)
        try:
            st = os.lstat(path)
            if not stat.S_ISREG(st.st_mode) or st.st_uid != os.getuid():
                continue
            with open(path, encoding="utf-8") as fh:
                info = json.load(fh)
            pid = int(info["pid"])
            run_id = str(info["run_id"])
        except (OSError, ValueError, KeyError, TypeError):
            continue
        if run_id + REGISTRATION_SUFFIX != name:
            continue
        if not pid_alive(pid):
            if sweep:
                try:
                    os.unlink(path)
                except OSError:
                    pass
                remove_run_dir(os.path.join(base, run_id))
            continue
        runs.append(info)
    runs.sort(key=lambda r: (float(r.get("started_at") or 0), str(r["run_id"])))
    return runs
