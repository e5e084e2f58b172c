"""Where zexport keeps its own files in the output folder, and what a run will render.

A module of its own, importing nothing heavy, because the CLI needs it before
it imports the controller (to decide whether to start workers early:
:mod:`zexport.run.launch`), and the controller, the manifest and the record
shards need the same names.
"""

from __future__ import annotations

import os

STATE_DIR = ".zexport"  # inside the output folder: lock, manifest, report, logs, shards
MANIFEST_NAME = "manifest.db"  # inside STATE_DIR


def renders_everything(out: str, force: bool) -> bool:
    """Whether a run into ``out`` renders every selected conversation: forced, or no
    manifest yet. Otherwise a re-run may have nothing to render, and workers are
    started only once the plan says there is work."""
    return force or not os.path.exists(os.path.join(out, STATE_DIR, MANIFEST_NAME))
