"""The private runtime folder: where a run's sockets and registration live.

Per user, mode 0700, checked to be owned by us (never trusted if not): only
the same user can reach a controller's ipc endpoints. Each run gets a short
folder (ipc paths are capped at ~107 bytes on Linux) holding its sockets,
and a registration file ``<base>/<run>.json`` that ``zexport status`` and
``zexport cancel`` read to find running exports.

``zexport status`` imports this module on its way to a 50 ms answer, so
what only a controller needs (:mod:`secrets`, :mod:`shutil`) is imported
where it is used, and :mod:`tempfile` (15 ms) not at all: see
:func:`default_tempdir`.
"""

from __future__ import annotations

import json
import os
import stat

from zexport.errors import ZexportError

TYPE_CHECKING = False  # typing's, without importing typing (3 ms of `zexport status`)
if TYPE_CHECKING:
    from typing import Any

REGISTRATION_VERSION = 1
REGISTRATION_SUFFIX = ".json"
OWNER_FILE = "owner"  # in a run folder: the pid of the process that made it


# sun_path holds 108 bytes on Linux (104 on macOS), NUL included; the longest socket
# path zexport binds is "<base>/<run_id>/results" (worker channels, w<N>, are shorter).
MAX_SOCKET_PATH_BYTES = 103
_LONGEST_IN_BASE = len("/00000000/results")


class RuntimeDirError(ZexportError):
    """The runtime folder cannot be used (someone else's, too open, or its path too long)."""


def _base_path() -> str:
    """The runtime folder to use (created or not).

    The shared default, ``<tmp>/zexport-<uid>``, can be made first by any
    local user, to block or to watch another's exports: when it is there and
    not a folder of ours, ours is ``<cache>/runtime`` instead (in our home,
    where no one else can make it). Clients and controllers reach the same
    answer, so ``zexport status`` finds runs in either.
    """
    override = os.environ.get("ZEXPORT_RUNTIME_DIR")
    if override:
        return os.path.abspath(override)
    if os.environ.get("XDG_RUNTIME_DIR") and os.path.isdir(os.environ["XDG_RUNTIME_DIR"]):
        return os.path.join(os.environ["XDG_RUNTIME_DIR"], "zexport")
    shared = os.path.join(default_tempdir(), f"zexport-{os.getuid()}")
    try:
        st = os.lstat(shared)
    except OSError:
        return shared
    if stat.S_ISDIR(st.st_mode) and st.st_uid == os.getuid():
        return shared
    return _private_fallback()


def _private_fallback() -> str:
    from zexport.core.locations import cache_dir

    return os.path.join(cache_dir(), "runtime")


def _refuse_unless_private(base: str, st: os.stat_result) -> None:
    """A folder zexport did not create is used only if it is a 0700 folder of ours.

    Never chmod-ed into shape: ``ZEXPORT_RUNTIME_DIR=$HOME`` must not lock a home folder.
    """
    if not stat.S_ISDIR(st.st_mode) or st.st_uid != os.getuid():
        raise RuntimeDirError(
            f"runtime folder {base} is not a folder owned by you; refusing it "
            "(set ZEXPORT_RUNTIME_DIR to a private folder)")
    mode = stat.S_IMODE(st.st_mode)
    if mode != 0o700:
        raise RuntimeDirError(
            f"runtime folder {base} has mode {mode:04o}, not 0700; refusing it (zexport does"
            " not change it: `chmod 700` it, or set ZEXPORT_RUNTIME_DIR to a private folder)")


def _check_length(base: str) -> None:
    size = len(os.fsencode(base)) + _LONGEST_IN_BASE
    if size > MAX_SOCKET_PATH_BYTES:
        raise RuntimeDirError(
            f"runtime folder {base} is too long for its sockets ({size} bytes, at most "
            f"{MAX_SOCKET_PATH_BYTES}): set ZEXPORT_RUNTIME_DIR to a shorter folder, e.g. "
            f"/tmp/zexport-{os.getuid()}")


_TEMP_CANDIDATES = ("/tmp", "/var/tmp", "/usr/tmp")  # tempfile's list on POSIX
_PROBE_FLAGS = os.O_RDWR | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0)


def default_tempdir() -> str:
    """What ``tempfile.gettempdir()`` answers, without importing :mod:`tempfile`.

    Importing it (with :mod:`shutil` and :mod:`random`) costs ~15 ms, a third
    of what ``zexport status`` may take, on every machine without
    ``XDG_RUNTIME_DIR`` (macOS, containers). The choice must be exactly
    tempfile's, or a client and a controller (of this or another zexport
    version) would look in different folders: the same candidates in the same
    order (``TMPDIR``, ``TEMP``, ``TMP``, ``/tmp``, ``/var/tmp``, ``/usr/tmp``,
    the current folder), each tried as tempfile does, by creating and removing
    a file in it. Tests compare the two under several environments.
    """
    dirs = [os.environ[name] for name in ("TMPDIR", "TEMP", "TMP") if os.environ.get(name)]
    dirs.extend(_TEMP_CANDIDATES)
    try:
        dirs.append(os.getcwd())
    except OSError:
        dirs.append(os.curdir)
    for folder in dirs:
        if folder != os.curdir:
            folder = os.path.abspath(folder)
        for _ in range(100):
            probe = os.path.join(folder, "tmp" + os.urandom(6).hex())
            try:
                fd = os.open(probe, _PROBE_FLAGS, 0o600)
                try:
                    try:
                        os.write(fd, b"blat")
                    finally:
                        os.close(fd)
                finally:
                    os.unlink(probe)
                return folder
            except FileExistsError:
                continue
            except OSError:
                break
    raise FileNotFoundError(2, f"No usable temporary directory found in {dirs}")


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
    _refuse_unless_private(base, st)
    return base


def runtime_base() -> str:
    """The per-user runtime folder: created 0700 if missing, refused if not private.

    Checked before anything is made: a path too long for a socket fails here,
    in one line, not later in ``bind`` with a run folder left behind.
    """
    base = _base_path()
    _check_length(base)
    created = False
    try:
        if base == _private_fallback():  # in our cache folder, which may not exist yet
            os.makedirs(os.path.dirname(base), exist_ok=True)
        os.mkdir(base, 0o700)
        created = True
    except FileExistsError:
        pass
    except OSError as exc:
        raise RuntimeDirError(
            f"cannot create the runtime folder {base}: {exc.strerror or exc}") from None
    if created:
        os.chmod(base, 0o700)  # ours, just made: only the umask could have narrowed it
    _refuse_unless_private(base, os.lstat(base))
    return base


def new_run_dir() -> tuple[str, str]:
    """Create a fresh private folder for one run; return (run_id, path)."""
    import secrets

    base = runtime_base()
    while True:
        run_id = secrets.token_hex(4)
        path = os.path.join(base, run_id)
        try:
            os.mkdir(path, 0o700)
        except FileExistsError:
            continue
        with open(os.path.join(path, OWNER_FILE), "w", encoding="ascii") as fh:
            fh.write(str(os.getpid()))
        return run_id, path


def sweep_orphan_run_dirs() -> int:
    """Remove run folders whose maker died before registering the run; return how many.

    A run folder exists from before the run is registered (workers are
    started first, :mod:`zexport.run.launch`) to after it is unregistered, so a
    ``zexport run`` killed in between leaves one that :func:`list_runs`,
    which goes by registrations, never sees. Its ``owner`` file names the
    process that made it; a folder without one (being made right now, or by
    another version) is left alone.
    """
    base = existing_runtime_base()
    if base is None:
        return 0
    removed = 0
    for name in os.listdir(base):
        path = os.path.join(base, name)
        if name.startswith(".") or os.path.exists(path + REGISTRATION_SUFFIX):
            continue
        try:
            st = os.lstat(path)
            if not stat.S_ISDIR(st.st_mode) or st.st_uid != os.getuid():
                continue
            with open(os.path.join(path, OWNER_FILE), encoding="ascii") as fh:
                owner = int(fh.read())
        except (OSError, ValueError):
            continue
        if owner != os.getpid() and not pid_alive(owner):
            remove_run_dir(path)
            removed += 1
    return removed


def endpoint(run_dir: str, name: str) -> str:
    """The ipc endpoint ``name`` inside a run folder."""
    return f"ipc://{os.path.join(run_dir, name)}"


def remove_run_dir(path: str) -> None:
    """Delete a run folder and everything in it (sockets, side index)."""
    import shutil

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
            # What status and cancel read: a registration without them (another
            # version's, or hand-made) is foreign, not a KeyError traceback in a client.
            if not all(isinstance(info.get(key), str) for key in ("control", "out")):
                continue
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
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
