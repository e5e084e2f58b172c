"""``zexport run --dry-run``: what an export would do, before it writes anything.

Why: on a large archive a user wants to know, before committing minutes and
gigabytes, how many conversations would be written (and how many a re-run
would leave alone), how many folders would be renamed because a title
changed, and how many attachments are on disk, would have to be downloaded,
or cannot be had at all (BRIEF §6 selection; peers ask for it: "a plan
showing counts and estimated attachment size before writing").

The plan is made exactly as a real run makes it (:func:`dry_run`, with
:func:`zexport.run.planning.plan_run`), so the numbers are the run's, not an
estimate; this module makes it, holds the result and says it.
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

from zexport.net.options import human_size

if TYPE_CHECKING:
    from collections.abc import Collection

    import apsw

    from zexport.core.attachment_files import AttachmentSources
    from zexport.run.plan import Plan
    from zexport.run.setup import RunSetup


def dry_run(setup: RunSetup, conn: apsw.Connection) -> DryRun:
    """Plan the export and say what it would do: no output, no lock, no worker.

    The plan, a copy of the output folder's manifest (for what a re-run
    would skip) and the attachment index live in a temporary folder that
    is removed before returning; ``conn`` (the archive) is closed.
    """
    import tempfile

    import apsw

    from zexport.errors import ArchiveError
    from zexport.run.plan import Plan
    from zexport.run.planning import manifest_copy, plan_run
    from zexport.run.report import RunReport
    from zexport.sources.archive import build_attachment_index

    spec = setup.spec
    with tempfile.TemporaryDirectory(prefix="zexport-dry-run-") as tmp:
        plan: Plan | None = None
        try:
            plan = Plan(os.path.join(tmp, "plan.db"))
            planned = plan_run(setup, conn, plan, RunReport(options={}, started=setup.started),
                               lambda: False, manifest_copy(setup.state_dir, tmp), dry_run=True)
            planned.resume.manifest.close()
            summary = DryRun(
                out=setup.out, selected=planned.total, render=plan.todo,
                unchanged=plan.total - plan.todo, moved=planned.resume.moved,
                suffixed=plan.suffixed(), unexportable=planned.total - plan.total)
            if spec.attachments != "off":
                index = os.path.join(tmp, "attachments.db")
                build_attachment_index(spec.db, index)
                summary.count_attachments(
                    plan, index, setup.attachment_sources(), spec.downloads.enabled,
                    refused=setup.refused_providers())
        except apsw.Error as exc:
            raise ArchiveError(f"cannot plan the export: {exc}") from None
        finally:
            if plan is not None:
                plan.close()
            conn.close()
    return summary


@dataclass
class DryRun:
    """What ``zexport run`` would do with the same options."""

    out: str
    selected: int  # conversations the filters select
    render: int  # would be rendered (written)
    unchanged: int  # left as they are: unchanged since the run that wrote them
    moved: int  # conversations whose files would move (their title changed)
    suffixed: int  # conversations named `` (id8)`` because another took the name
    unexportable: int = 0  # rows whose id is not text: reported as failed, never written
    attachments: int = 0  # of the conversations to render
    on_disk: int = 0  # of which the archive's folder has the file
    on_disk_bytes: int = 0
    to_download: int = 0  # missing here, with a URL or file id to try
    to_download_bytes: int = 0  # as far as the archive knows their size
    unavailable: int = 0  # missing, and nowhere to get them from (or downloads off)
    # of which, per provider: a source, but a provider that has no credentials (and
    # nothing cached): a run fails them at once, as it will
    unavailable_no_credentials: dict[str, int] = field(default_factory=dict)
    # of which: on disk but not copied (outside the allowed folders, or unreadable)
    unavailable_not_copied: int = 0
    downloads: bool = True

    def count_attachments(self, plan: Plan, index_path: str, sources: AttachmentSources,
                          downloads: bool, refused: Collection[str] = ()) -> None:
        """Classify the attachments of the conversations to render (stats each file).

        ``sources`` decides, as in a run, where a file may be copied from: a file
        outside the allowed folders (or unreadable) is unavailable, not on disk.
        ``refused``: providers whose downloads a run refuses at once (no credentials,
        nothing cached): their missing files are unavailable, not "to download".
        """
        self.downloads = downloads
        previous = ""
        for cid, att, size, has_source, provider in plan.todo_attachments(index_path):
            if cid != previous:  # rows come conversation by conversation
                sources.forget(previous)
                previous = cid
            self.attachments += 1
            found = sources.locate(cid, att)
            if found.path is not None:
                self.on_disk += 1
                with contextlib.suppress(OSError):
                    self.on_disk_bytes += os.path.getsize(found.path)
            elif found.reason is not None:
                self.unavailable += 1
                self.unavailable_not_copied += 1
            elif has_source and downloads and provider in refused:
                self.unavailable += 1
                self.unavailable_no_credentials[provider] = \
                    self.unavailable_no_credentials.get(provider, 0) + 1
            elif has_source and downloads:
                self.to_download += 1
                self.to_download_bytes += size or 0
            else:
                self.unavailable += 1
        sources.forget(previous)

    def to_dict(self) -> dict[str, Any]:
        """The JSON document (``--progress json``)."""
        return {"dry_run": True, **asdict(self)}

    def lines(self) -> list[str]:
        """What a person reads."""
        said = [
            f"Dry run: nothing written. {self.selected:,} conversations selected.",
            f"  would write {self.render:,} to {self.out}"
            + (f"; {self.unchanged:,} unchanged since the last run, left as they are"
               if self.unchanged else ""),
        ]
        if self.unexportable:
            said.append(f"  {self.unexportable:,} cannot be exported (their id is not text);"
                        " a run reports each as failed")
        if self.moved:
            whose = ("conversation whose title changed to its new name" if self.moved == 1
                     else "conversations whose titles changed to their new names")
            said.append(f"  would move {self.moved:,} {whose}")
        if self.suffixed:
            said.append(f"  {self.suffixed:,} share a name with another and get an id suffix")
        if self.attachments:
            said.append(f"  attachments: {self.attachments:,}: {self.on_disk:,} on disk"
                        f" ({human_size(self.on_disk_bytes)})")
            if self.to_download:
                known = f", {human_size(self.to_download_bytes)} known" if self.to_download_bytes \
                    else ""
                said.append(f"    {self.to_download:,} to download{known}")
            refused = sum(self.unavailable_no_credentials.values())
            if self.unavailable_not_copied:
                said.append(f"    {self.unavailable_not_copied:,} not copied (outside the"
                            " allowed folders, or unreadable: see --attachment-root)")
            if self.unavailable - refused - self.unavailable_not_copied:
                why = "no URL or file id" if self.downloads else "downloads are off"
                said.append(f"    {self.unavailable - refused - self.unavailable_not_copied:,}"
                            f" unavailable ({why})")
            if refused:
                names = ", ".join(sorted(self.unavailable_no_credentials))
                said.append(f"    {refused:,} unavailable (no credentials for {names}:"
                            " see --auth)")
        return said

