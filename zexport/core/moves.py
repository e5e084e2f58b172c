"""Moving a conversation's files when its place changes (its title changed).

A place is more than one path in some layouts: with ``--layout note`` a
conversation is its note (``<place>.md``) and its attachments folder
(``attachments/<name>/``), and the two move together or not at all. Moves whose
targets are free go first; chains and cycles (A takes B's old name while B
takes A's) go through temporary names in the output folder. A target held by
something that is not moving is left alone: that conversation is rendered afresh
under its new name and its old files stay (they are not ours to delete). The
folders a move needs are made (a template's ``{year}``), without following a
link, and the folders it leaves empty are removed.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import stat

from zexport.core.layouts import Layout
from zexport.core.output import ensure_dirs

log = logging.getLogger("zexport.run.manifest")

MOVE_PREFIX = ".zexport-move-"

Unit = list[tuple[str, str]]  # (old, new) paths relative to the output folder


def _kind(path: str) -> str | None:
    try:
        mode = os.lstat(path).st_mode
    except OSError:
        return None
    return "dir" if stat.S_ISDIR(mode) else "file" if stat.S_ISREG(mode) else "other"


def units(out: str, moves: dict[str, tuple[str, str]], layout: Layout,
          extension: str) -> dict[str, Unit]:
    """What moving each conversation means on disk: its main file or folder (which
    must be there, or nothing moves) and, for a note, its own folder if it has one."""
    result: dict[str, Unit] = {}
    for cid, (old, new) in moves.items():
        before, after = layout.files(old, extension), layout.files(new, extension)
        if layout.folders or not extension:
            if _kind(os.path.join(out, old)) == "dir":
                result[cid] = [(old, new)]
            continue
        if _kind(os.path.join(out, before.main)) != "file":
            continue
        unit = [(before.main, after.main)]
        if _kind(os.path.join(out, before.own_dir)) == "dir":
            unit.append((before.own_dir, after.own_dir))
        result[cid] = unit
    return result


def move_places(out: str, moves: dict[str, tuple[str, str]], layout: Layout,
                extension: str) -> dict[str, str]:
    """Move ``{id: (old place, new place)}`` under ``out``; return ``{id: new}`` that moved."""
    pending = units(out, moves, layout, extension)
    moved: dict[str, str] = {}

    def free_pass() -> None:
        progress = True
        while progress:
            progress = False
            for cid, unit in list(pending.items()):
                if any(os.path.lexists(os.path.join(out, new)) for _old, new in unit):
                    continue
                del pending[cid]
                if _rename_all(out, unit):
                    moved[cid] = moves[cid][1]
                    progress = True

    free_pass()
    olds = {old for unit in pending.values() for old, _new in unit}
    parked: dict[str, Unit] = {}  # id -> (temporary, original) to put back if still stuck
    for cid, unit in list(pending.items()):
        if not any(new in olds for _old, new in unit):
            continue  # blocked by something that is not moving
        token = hashlib.blake2b(cid.encode(), digest_size=8).hexdigest()
        staged: Unit = []
        for i, (old, new) in enumerate(unit):
            tmp = f"{MOVE_PREFIX}{token}-{i}"
            try:
                os.rename(os.path.join(out, old), os.path.join(out, tmp))
            except OSError:
                break
            staged.append((tmp, new))
        if len(staged) != len(unit):  # put back what was parked; this one stays
            for (tmp, _new), (old, _n) in zip(staged, unit, strict=False):
                os.rename(os.path.join(out, tmp), os.path.join(out, old))
            del pending[cid]
            continue
        pending[cid] = staged
        parked[cid] = [(tmp, old) for (tmp, _new), (old, _n) in zip(staged, unit, strict=True)]
    free_pass()
    for cid in pending:  # could not move: put temporaries back where they were
        for tmp, original in parked.get(cid, []):
            if not os.path.lexists(os.path.join(out, original)):
                os.rename(os.path.join(out, tmp), os.path.join(out, original))
    return moved


def _rename_all(out: str, unit: Unit) -> bool:
    """Rename every pair of ``unit``; on a failure, put back what moved and say False."""
    done: Unit = []
    for old, new in unit:
        try:
            ensure_dirs(out, os.path.dirname(new))
            os.rename(os.path.join(out, old), os.path.join(out, new))
        except (OSError, ValueError) as exc:
            log.warning("could not move %s to %s: %s", old, new, exc)
            for back_old, back_new in reversed(done):
                with contextlib.suppress(OSError):
                    os.rename(os.path.join(out, back_new), os.path.join(out, back_old))
            return False
        done.append((old, new))
    for old, _new in unit:
        _remove_empty_parents(out, old)
    return True


def _remove_empty_parents(out: str, relative: str) -> None:
    """Remove the folders above ``relative`` that a move left empty (up to ``out``)."""
    parts = relative.split("/")[:-1]
    while parts:
        try:
            os.rmdir(os.path.join(out, *parts))
        except OSError:
            return
        parts.pop()
