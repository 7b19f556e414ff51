"""The sans-IO wire state machine, with bytes alone (no sockets, no event loop)."""

from __future__ import annotations

import random

import pytest

from aspen.errors import NotFoundError, UnauthorizedError
from aspen.transport.framing import FrameError, encode_frame
from aspen.transport.wire import (
    PROTOCOL_VERSION,
    Cancel,
    ConnectionFailed,
    Failure,
    Hello,
    InvalidRequest,
    Item,
    LocalProtocolError,
    Message,
    Request,
    Result,
    Role,
    WireConnection,
    WireError,
    WireState,
)


def pair() -> tuple[WireConnection, WireConnection]:
    """A client and a server machine that said hello to each other."""
    client, server = WireConnection(Role.CLIENT), WireConnection(Role.SERVER)
    events = server.receive_data(client.send(Hello({"token": "t", "client": "test"})))
    assert events == [Hello({"token": "t", "client": "test"})]
    events = client.receive_data(server.send(Hello({"node_id": "n1", "features": []})))
    assert events == [Hello({"node_id": "n1", "features": []})]
    assert client.state is server.state is WireState.OPEN
    return client, server


def test_hello_then_requests_and_replies_round_trip() -> None:
    client, server = pair()
    wire = client.send(Request(1, "kv.get", {"key": b"k"})) + client.send(Cancel(1))
    events = server.receive_data(wire)
    assert events[0] == Request(1, "kv.get", {"key": b"k"}, events[0].size)
    assert events[0].size > 0
    assert events[1] == Cancel(1)
    out = (
        server.send(Item(2, b"a"))
        + server.send(Result(1, {"v": b"x"}))
        + server.send(Failure(3, NotFoundError("no such key", key="k")))
    )
    got = client.receive_data(out)
    assert got[:2] == [Item(2, b"a"), Result(1, {"v": b"x"})]
    assert isinstance(got[2], Failure) and got[2].error.code == "not_found"


def test_request_before_hello_is_refused_with_a_typed_error() -> None:
    server = WireConnection(Role.SERVER)
    with pytest.raises(WireError, match="hello frame first") as info:
        server.receive_data(encode_frame({"id": 1, "method": "kv.get"}))
    assert info.value.code == "invalid_argument"
    assert server.state is WireState.CLOSING
    assert server.receive_data(b"anything") == []
    server.send(ConnectionFailed(info.value))  # say why, once
    with pytest.raises(LocalProtocolError):
        server.send(ConnectionFailed(info.value))


@pytest.mark.parametrize("version", [2, "1", True, None])
def test_unsupported_version_names_the_supported_ones(version: object) -> None:
    server = WireConnection(Role.SERVER)
    with pytest.raises(WireError, match="not supported") as info:
        server.receive_data(encode_frame({"type": "hello", "version": version}))
    assert info.value.details["supported"] == [PROTOCOL_VERSION]


def test_version_negotiation_accepts_any_listed_version() -> None:
    server = WireConnection(Role.SERVER, versions=(1, 2))
    (hello,) = server.receive_data(encode_frame({"type": "hello", "version": 2}))
    assert hello == Hello({}, 2)


def test_oversized_frame_is_refused_before_its_body_arrives() -> None:
    server = WireConnection(Role.SERVER, max_frame=100)
    with pytest.raises(WireError, match="exceeds MAX_FRAME_BYTES") as info:
        server.receive_data((10_000).to_bytes(4, "big"))
    assert info.value.details == {"size": 10_000, "limit": 100}
    assert server.buffered == 0


def test_garbage_and_bad_frames_are_wire_errors() -> None:
    server = WireConnection(Role.SERVER)
    with pytest.raises(WireError, match="not valid msgpack"):
        server.receive_data(b"\x00\x00\x00\x01\xc1")
    _, server = pair()
    with pytest.raises(WireError, match="integer 'id'"):
        server.receive_data(encode_frame({"method": "x"}))


def test_malformed_params_and_method_answer_the_request_only() -> None:
    _, server = pair()
    events = server.receive_data(
        encode_frame({"id": 1, "method": "kv.get", "params": [1]})
        + encode_frame({"id": 2, "method": 7})
        + encode_frame({"id": 3, "method": "kv.get"})
    )
    assert [type(e) for e in events] == [InvalidRequest, InvalidRequest, Request]
    assert "must be a map" in events[0].error.message
    assert events[2].params == {}
    assert server.state is WireState.OPEN


def test_server_refusing_the_hello_reaches_the_client_as_connection_failed() -> None:
    client, server = WireConnection(Role.CLIENT), WireConnection(Role.SERVER)
    server.receive_data(client.send(Hello({"token": None})))
    data = server.send(ConnectionFailed(UnauthorizedError("no token given")))
    assert server.state is WireState.CLOSING
    (event,) = client.receive_data(data + encode_frame({"id": 1, "result": 2}))
    assert isinstance(event, ConnectionFailed) and event.error.code == "unauthorized"
    assert client.state is WireState.CLOSING
    with pytest.raises(LocalProtocolError):
        server.send(Result(1, None))


def test_sending_out_of_turn_is_a_local_error() -> None:
    client, server = WireConnection(Role.CLIENT), WireConnection(Role.SERVER)
    with pytest.raises(LocalProtocolError, match="before the hello"):
        client.send(Request(1, "m", {}))
    with pytest.raises(LocalProtocolError, match="before the hello"):
        server.send(Result(1, None))
    client.send(Hello({}))
    with pytest.raises(LocalProtocolError, match="already sent"):
        client.send(Hello({}))
    with pytest.raises(LocalProtocolError, match="does not send"):
        client.send(Result(1, None))


def test_too_big_reply_raises_and_changes_nothing() -> None:
    _, server = pair()
    server.max_frame = 1000
    before = server.bytes_queued
    with pytest.raises(FrameError, match="exceeds MAX_FRAME_BYTES"):
        server.send(Result(1, b"x" * 2000))
    assert server.bytes_queued == before
    assert server.state is WireState.OPEN


def test_flow_control_by_queued_bytes() -> None:
    _, server = pair()
    server.max_queued_bytes = 1000
    server.bytes_written(server.bytes_queued)
    assert server.reading_allowed
    data = server.send(Result(1, b"x" * 1500))
    assert server.bytes_queued == len(data)
    assert not server.reading_allowed  # the peer does not read: stop reading it
    server.bytes_written(len(data) - 100)
    assert server.reading_allowed
    server.close()
    assert server.state is WireState.CLOSED and not server.reading_allowed


def test_peer_link_frames_are_opaque_messages() -> None:
    dialer = WireConnection(Role.CLIENT, peer=True)
    acceptor = WireConnection(Role.SERVER, peer=True)
    hello = Hello({"cluster_id": "c", "node_id": "a", "kind": "messages"})
    assert acceptor.receive_data(dialer.send(hello)) == [hello]
    dialer.receive_data(acceptor.send(Hello({"cluster_id": "c", "node_id": "b"})))
    frames = [{"type": "append", "term": 3}, {"anything": [1, 2]}]
    data = b"".join(dialer.send(Message(f)) for f in frames)
    assert acceptor.receive_data(data) == [Message(f) for f in frames]
    with pytest.raises(LocalProtocolError):
        dialer.send(Request(1, "m", {}))


def test_any_split_of_the_byte_stream_gives_the_same_events() -> None:
    """Fuzz: a conversation cut at random places parses to the same events."""
    client = WireConnection(Role.CLIENT)
    wire = client.send(Hello({"token": "t"}))
    for i in range(1, 60):
        wire += client.send(Request(i, "kv.put", {"key": b"k%d" % i, "value": b"v" * (i * 37)}))
        if i % 7 == 0:
            wire += client.send(Cancel(i - 1))
    expected = WireConnection(Role.SERVER).receive_data(wire)
    assert len(expected) == 1 + 59 + 8
    rng = random.Random(1234)
    for _ in range(300):
        server = WireConnection(Role.SERVER)
        got: list = []
        pos = 0
        while pos < len(wire):
            step = rng.choice((1, 2, 3, 5, 64, 500, 4096))
            got += server.receive_data(memoryview(wire)[pos : pos + step])
            pos += step
        assert got == expected
        assert server.buffered == 0


def test_random_bytes_never_crash_only_wire_errors() -> None:
    """Fuzz: garbage after a valid hello raises WireError or parses; nothing else."""
    rng = random.Random(99)
    for _ in range(500):
        server = WireConnection(Role.SERVER, max_frame=4096)
        data = encode_frame({"type": "hello", "version": 1}) + rng.randbytes(rng.randint(0, 300))
        try:
            server.receive_data(data)
        except WireError as exc:
            assert exc.code == "invalid_argument"
