"""Frames: round trip, and rejection of everything that is not a valid frame."""

from __future__ import annotations

import pickle

import msgpack
import pytest

from zexport import protocol
from zexport.errors import ProtocolError


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
