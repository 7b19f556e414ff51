"""Length-prefixed msgpack frames: encoding, incremental decoding, and refusals."""

from __future__ import annotations

import struct

import msgpack
import pytest

from aspen.errors import InvalidArgumentError
from aspen.limits import MAX_FRAME_BYTES
from aspen.transport.framing import FrameDecoder, FrameError, encode_frame


def test_round_trip_keeps_bytes_and_str() -> None:
    msg = {"id": 1, "params": {"key": b"\x00\xff", "name": "ünï", "n": [1, None, True, 2.5]}}
    frame = encode_frame(msg)
    assert struct.unpack(">I", frame[:4])[0] == len(frame) - 4
    assert FrameDecoder().feed(frame) == [msg]


def test_many_frames_in_one_feed_and_split_frames() -> None:
    msgs = [{"id": i, "v": b"x" * i} for i in range(50)]
    stream = b"".join(encode_frame(m) for m in msgs)
    assert FrameDecoder().feed(stream) == msgs
    decoder = FrameDecoder()
    got = []
    for i in range(len(stream)):  # one byte at a time
        got.extend(decoder.feed(stream[i : i + 1]))
    assert got == msgs and decoder.buffered == 0
    decoder = FrameDecoder()
    cut = len(stream) // 3
    assert decoder.feed(stream[:cut]) + decoder.feed(bytearray(stream[cut:])) == msgs


def test_large_frames_decode_from_a_view() -> None:
    msg = {"value": b"v" * (1024 * 1024)}
    frame = encode_frame(msg)
    decoder = FrameDecoder()
    assert decoder.feed(frame[:100]) == []
    assert decoder.feed(memoryview(frame)[100:]) == [msg]


def test_oversize_prefix_is_refused_before_the_body_arrives() -> None:
    decoder = FrameDecoder(max_frame=1000)
    with pytest.raises(FrameError, match="exceeds MAX_FRAME_BYTES") as info:
        decoder.feed(struct.pack(">I", 1001))
    assert info.value.details == {"size": 1001, "limit": 1000}
    assert isinstance(info.value, InvalidArgumentError)


@pytest.mark.parametrize(
    ("body", "match"),
    [
        (b"\xc1", "not valid msgpack"),
        (msgpack.packb([1, 2]), "not a msgpack map"),
        (msgpack.packb({b"k": 1}, use_bin_type=True), "non-string key"),
        (msgpack.packb({"a": 1}) + b"\x01", "not valid msgpack"),
        (b"", "not valid msgpack"),
    ],
    ids=["garbage", "list", "bytes-key", "trailing", "empty"],
)
def test_bad_bodies_are_refused(body: bytes, match: str) -> None:
    with pytest.raises(FrameError, match=match) as info:
        FrameDecoder().feed(struct.pack(">I", len(body)) + body)
    reason = info.value.message.split(":", 1)[-1].strip()
    assert reason, f"no reason given: {info.value.message!r}"


def test_encode_refuses_oversize_and_unencodable() -> None:
    with pytest.raises(FrameError, match="MAX_FRAME_BYTES") as info:
        encode_frame({"v": b"x" * 100}, max_frame=50)
    assert info.value.details["limit"] == 50
    with pytest.raises(FrameError, match="cannot encode"):
        encode_frame({"v": object()})
    assert len(encode_frame({"v": b"x" * (MAX_FRAME_BYTES - 20)})) <= MAX_FRAME_BYTES + 4
