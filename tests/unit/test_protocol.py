"""Frames: round trip, and rejection of everything that is not a valid frame."""

from __future__ import annotations

import pickle

import msgpack
import pytest

from zexport import protocol
from zexport.errors import ProtocolError
from zexport.run.commands import commands

commands()  # registers the control commands' frames (status, cancel_request...)


def test_round_trip() -> None:
    frame = protocol.encode("batch", batch=3, items=[["id", "folder"]])
    msg = protocol.decode(frame)
    assert msg == {"v": 1, "t": "batch", "batch": 3, "items": [["id", "folder"]]}


@pytest.mark.parametrize("frame", [
    b"", b"\xff\xfe garbage", protocol.encode("batch", batch=1, items=[])[:-3],
    msgpack.packb([1, 2, 3]), msgpack.packb({"v": 2, "t": "hb"}),
    msgpack.packb({"v": 1, "t": "nope"}), msgpack.packb({"v": 1, "t": "batch"}),
    msgpack.packb({"v": 1, "t": "batch", "batch": "1", "items": []}),
    pickle.dumps({"v": 1, "t": "hb"}),
])
def test_bad_frames_are_rejected(frame: bytes) -> None:
    with pytest.raises(ProtocolError):
        protocol.decode(frame)


def test_oversized_frame_is_rejected_before_parsing() -> None:
    with pytest.raises(ProtocolError, match="exceeds"):
        protocol.decode(b"\x00" * (protocol.MAX_FRAME_BYTES + 1))


def test_pickle_is_never_unpickled() -> None:
    class Boom:
        def __reduce__(self) -> tuple[object, tuple[str]]:
            return (exec, ("raise SystemExit('unpickled!')",))

    with pytest.raises(ProtocolError):
        protocol.decode(pickle.dumps(Boom()))


GOOD_RESULT = {"id": "c1", "ok": True, "title": "t", "error": None, "warnings": ["w"],
               "attachments_ok": 1, "attachments_failed": [["a1", "gone"]]}


@pytest.mark.parametrize(("change", "complaint"), [
    ({"attachments_ok": "x"}, "field 'attachments_ok': int expected, got a str"),
    ({"attachments_ok": True}, "field 'attachments_ok': int expected, got a boolean"),
    ({"ok": 1}, "field 'ok': bool expected, got an int"),
    ({"warnings": "w"}, "field 'warnings': list expected"),
    ({"warnings": [1]}, "field 'warnings': item 0: str expected"),
    ({"attachments_failed": [["a1"]]}, "field 'attachments_failed': item 0: a list of 2 expected"),
    ({"attachments_failed": [["a1", 3]]}, "field 'attachments_failed': item 0: item 1: str"),
    ({"error": 3}, "field 'error': str or nil expected"),
    ({"skipped": "yes"}, "field 'skipped': bool expected"),
    ({"id": None}, "field 'id': str expected, got nil"),
    ({"title": b"t"}, "field 'title': str expected, got bytes"),
    ({"files": [["p", 1]]}, "field 'files': item 0: item 1: str expected"),
    ({"files": [["p", "h", "x"]]}, "field 'files': item 0: a list of 2 expected"),
    ({"conflicts": "x"}, "field 'conflicts': list expected"),
])
def test_a_done_frame_with_one_wrong_nested_field_is_rejected(
        change: dict[str, object], complaint: str) -> None:
    good = protocol.encode("done", w=0, batch=1, results=[GOOD_RESULT])
    assert protocol.decode(good)["results"] == [GOOD_RESULT]
    bad = protocol.encode("done", w=0, batch=1, results=[GOOD_RESULT, {**GOOD_RESULT, **change}])
    with pytest.raises(ProtocolError) as caught:
        protocol.decode(bad)
    assert f"done: field 'results': item 1: {complaint}" in str(caught.value)


@pytest.mark.parametrize("name", sorted(protocol.RESULT.required))
def test_a_done_result_without_a_required_field_is_rejected(name: str) -> None:
    partial = {key: value for key, value in GOOD_RESULT.items() if key != name}
    with pytest.raises(ProtocolError) as caught:
        protocol.decode(protocol.encode("done", w=0, batch=1, results=[partial]))
    assert f"done: field 'results': item 0: field {name!r} missing" in str(caught.value)


def test_a_done_result_with_every_optional_field_is_accepted() -> None:
    full = {**GOOD_RESULT, "skipped": False, "files": [["a/conversation.md", "ab"]],
            "conflicts": [["a/conversation.md", "edited"]]}
    assert protocol.decode(protocol.encode("done", w=0, batch=1, results=[full]))[
        "results"] == [full]


def test_a_plain_result_is_its_id_ok_title_and_files() -> None:
    from zexport.work.exporter import Outcome

    plain = Outcome("c1", True, "t", files=[("a/conversation.md", "ab")]).to_wire()
    assert plain == {"id": "c1", "ok": True, "title": "t",
                     "files": [["a/conversation.md", "ab"]]}
    failed = Outcome("c2", False, error="boom", warnings=["w"],
                     attachments_failed=[("a1", "gone")]).to_wire()
    assert failed == {"id": "c2", "ok": False, "error": "boom", "warnings": ["w"],
                      "attachments_failed": [["a1", "gone"]]}
    decoded = protocol.decode(protocol.encode("done", w=0, batch=1, results=[plain, failed]))
    assert decoded["results"] == [plain, failed]


def test_the_fast_result_check_never_passes_what_the_map_refuses() -> None:
    import random

    rng = random.Random(3)
    values: list[object] = [None, True, False, 0, 1, "s", b"b", [], ["s"], [1], [["a", "b"]],
                            [["a"]], [["a", 1]], {"k": "v"}, 1.5]
    slow = protocol.Map(protocol.RESULT.required, protocol.RESULT.optional)
    names = [*protocol.RESULT.required, *protocol.RESULT.optional, "unknown"]
    accepted = 0
    for _ in range(20000):
        result = {name: rng.choice(values) for name in rng.sample(names, rng.randint(0, 6))}
        if rng.random() < 0.5:
            result.update(id="c", ok=True)
        if protocol.RESULT.fast_ok(result):
            assert slow.problem(result) is None, result
            accepted += 1
        assert (protocol.RESULT.problem(result) is None) == (slow.problem(result) is None)
    assert accepted > 100  # (the fast test accepts the valid ones)


def test_the_fast_result_check_refuses_a_map_with_a_field_it_does_not_check() -> None:
    """A field added to ``done`` results but not to the fast test would pass unchecked:
    the shape refuses to be built instead."""
    with pytest.raises(TypeError, match="change both"):
        protocol.ResultShape({**protocol.RESULT.required, "extra": protocol.STR},
                             protocol.RESULT.optional)
    with pytest.raises(TypeError, match="change both"):
        protocol.ResultShape(protocol.RESULT.required, {})


def test_a_boolean_is_not_version_1() -> None:
    with pytest.raises(ProtocolError, match="unsupported protocol version True"):
        protocol.decode(msgpack.packb({"v": True, "t": "hb"}))


@pytest.mark.parametrize("fields", [
    {"id": [1]}, {"id": True}, {"id": 1.5}, {"reason": 5}, {"reason": None},
])
def test_a_wrong_typed_optional_field_is_rejected_not_ignored(fields: dict[str, object]) -> None:
    assert protocol.decode(protocol.encode("cancel_request", id=3, reason="r"))["reason"] == "r"
    assert "id" not in protocol.decode(protocol.encode("cancel_request"))
    with pytest.raises(ProtocolError, match="cancel_request: field '(id|reason)'"):
        protocol.decode(protocol.encode("cancel_request", **fields))


@pytest.mark.parametrize(("msg_type", "fields"), [
    ("batch", {"batch": 1, "items": [["id", 2]]}),
    ("batch", {"batch": 1, "items": [["id"]]}),
    ("config", {"config": {"db": "a"}}),
    ("config", {"config": {"db": "a", "out": "o", "format": "markdown", "tz": "UTC",
                           "branches": "active", "exported_at": "x", "downloads": "yes"}}),
    ("fetch", {"req": 1, "conversation_id": "c", "attachment": {"id": 5}}),
    ("fetched", {"req": 1, "path": 7}),
    ("timed_out", {"w": 0, "batch": 0, "conversation_id": "c", "seconds": "1"}),
    ("hello", {"w": 0, "pid": False}),
])
def test_every_internal_frame_is_checked_field_by_field(msg_type: str,
                                                        fields: dict[str, object]) -> None:
    with pytest.raises(ProtocolError, match=f"^{msg_type}: "):
        protocol.decode(protocol.encode(msg_type, **fields))


def test_a_malformed_item_of_fetched_many_is_dropped_alone(
        caplog: pytest.LogCaptureFixture) -> None:
    frame = protocol.encode("fetched_many", items=[
        {"req": 1, "path": None, "error": "no"}, "not a map", {"req": "2"},
        {"req": 3, "path": "/x", "name": None, "error": None}])
    with caplog.at_level("WARNING", logger="zexport.protocol"):
        msg = protocol.decode(frame)
    assert [item["req"] for item in msg["items"]] == [1, 3]
    assert "fetched_many: dropped 2 malformed item(s) of 'items'" in caplog.text
