"""The manifest's pieces on their own: fingerprints and folder moves."""

from __future__ import annotations

from pathlib import Path

import pytest

from zexport.core.timezones import resolve_tz
from zexport.run.manifest import MANIFEST_NAME, Manifest, move_folders, tz_identity


def test_tz_identity_is_stable_across_runs() -> None:
    for name in ("local", "UTC", "Europe/Paris"):
        assert tz_identity(resolve_tz(name)) == tz_identity(resolve_tz(name))
    assert tz_identity(resolve_tz("Europe/Paris")) == "Europe/Paris"


def test_moves_handle_chains_cycles_and_occupied_targets(tmp_path: Path) -> None:
    for name in ("a", "b", "c", "keep", "x"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "f").write_text(name)
    moved = move_folders(str(tmp_path), {
        "1": ("a", "b"), "2": ("b", "a"),  # a swap (cycle)
        "3": ("c", "d"),                   # free target
        "4": ("x", "keep"),                # target held by a folder that is not moving
        "5": ("gone", "y"),                # old folder missing
    })
    assert moved == {"1": "b", "2": "a", "3": "d"}
    assert (tmp_path / "b" / "f").read_text() == "a"
    assert (tmp_path / "a" / "f").read_text() == "b"
    assert (tmp_path / "d" / "f").read_text() == "c"
    assert (tmp_path / "x" / "f").read_text() == "x"
    assert (tmp_path / "keep" / "f").read_text() == "keep"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a", "b", "d", "keep", "x"]


def test_a_corrupt_manifest_is_replaced_not_fatal(tmp_path: Path) -> None:
    path = tmp_path / "manifest.db"
    path.write_bytes(b"this is not sqlite" * 100)
    m = Manifest(str(path))
    m.record([("id", "folder", "s", "o", "r", None, None)])
    assert m.load()["id"].folder == "folder"
    assert m.notes and "unreadable" in m.notes[0]
    m.close()


def test_manifest_commits_at_most_once_a_second_and_on_close(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Finished batches are committed in groups (one commit per batch cost 1.4 s at
    100k conversations); nothing noted is lost when the run closes the manifest."""
    import zexport.run.manifest as manifest_module
    from zexport.run.manifest import Resume

    clock = [1000.0]
    monkeypatch.setattr(manifest_module.time, "monotonic", lambda: clock[0])
    resume = Resume(str(tmp_path), str(tmp_path), "md", "opts", "r1", force=False)

    def committed() -> set[str]:
        return set(Manifest(str(tmp_path / MANIFEST_NAME)).load())

    resume.done("a", "A", "src-a")
    resume.flush_due()
    assert committed() == set()  # within the second: still pending
    clock[0] += 1.5
    resume.done("b", "B", "src-b")
    resume.flush_due()
    assert committed() == {"a", "b"}
    resume.done("c", "C", "src-c")
    resume.flush_due()
    assert committed() == {"a", "b"}
    resume.close()
    assert committed() == {"a", "b", "c"}


def test_files_are_kept_per_conversation_and_a_damaged_value_claims_nothing(
        tmp_path: Path) -> None:
    from zexport.run.manifest import files_json

    m = Manifest(str(tmp_path / "manifest.db"))
    m.record([("a", "A", "s", "o", "r", None, files_json([("A/c.md", "h1"), ("A/x.png", "h2")])),
              ("b", "B", "s", "o", "r", None, None),
              ("c", "C", "s", "o", "r", None, b"[not json"),
              ("d", "D", "s", "o", "r", None, b'{"D/c.md": 7, "D/ok.md": "h3"}')])
    assert m.known_files(["a", "b", "c", "d", "missing"]) == {
        "a": {"A/c.md": "h1", "A/x.png": "h2"}, "c": {}, "d": {"D/ok.md": "h3"}}
    m.set_folders([("a", "A", "A2")])
    assert m.known_files(["a"]) == {"a": {"A2/c.md": "h1", "A2/x.png": "h2"}}
    assert m.load()["a"].folder == "A2"
    m.close()
