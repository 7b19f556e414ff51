"""Peer links over real mutual TLS on 127.0.0.1: who may connect, framing faults,
reconnects, bounded queues, and streams next to small messages.

The helpers (``Node``, ``running``, ``wait_until``, ``raw_peer``) are reused by
``test_transport_join.py``.
"""

from __future__ import annotations

import hashlib
import logging
import struct
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import anyio
import pytest

from aspen import errors
from aspen.testing import async_wait_for as wait_until
from aspen.transport.framed import FramedStream, open_tls
from aspen.transport.framing import encode_frame
from aspen.transport.identity import NodeIdentity
from aspen.transport.peer import PEER_PROTOCOL_VERSION, PeerTransport
from aspen.transport.tls import (
    ClusterCA,
    NodeCredentials,
    client_context,
    issue_node_cert,
    peer_client_context,
)

#: The peer I/O driver the transports of a test use (set per test by ``driver``).
DRIVER = "auto"


#: (peer I/O driver, event loop): the fast path on uvloop (as nodes run) and on asyncio's
#: own loop, and the portable anyio path.
CASES = [("asyncio", "uvloop"), ("asyncio", "asyncio"), ("anyio", "asyncio")]


@pytest.fixture(params=CASES, ids=[f"{d}-{loop}" for d, loop in CASES])
def driver_loop(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> tuple:
    """Run every test on each (driver, loop) case."""
    monkeypatch.setattr(sys.modules[__name__], "DRIVER", request.param[0])
    return request.param


@pytest.fixture
def anyio_backend(driver_loop: tuple[str, str]) -> tuple[str, dict[str, Any]]:
    """asyncio, on uvloop or not."""
    return ("asyncio", {"use_uvloop": driver_loop[1] == "uvloop"})


@dataclass
class Node:
    """One test node: credentials, a membership set, what it received."""

    creds: NodeCredentials
    members: set[str]
    received: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    streams: list[tuple[str, dict[str, Any], bytes]] = field(default_factory=list)
    transport: PeerTransport | None = None

    @property
    def id(self) -> str:
        """The node id."""
        return self.creds.node_id

    @property
    def address(self) -> str:
        """Its peer address once serving."""
        assert self.transport is not None and self.transport.port is not None
        return f"127.0.0.1:{self.transport.port}"

    def on_message(self, peer_id: str, msg: dict[str, Any]) -> None:
        """Record a message."""
        self.received.append((peer_id, msg))

    def make(self, listen: str = "127.0.0.1:0", **options: Any) -> PeerTransport:
        """Create (and remember) this node's transport."""
        self.transport = PeerTransport(
            self.creds,
            listen,
            is_member=self.members.__contains__,
            on_message=self.on_message,
            **{"driver": DRIVER, **options},
        )
        return self.transport


def cluster(n: int, ca: ClusterCA | None = None) -> list[Node]:
    """``n`` nodes of one cluster, each knowing all as members."""
    ca = ca or ClusterCA.generate()
    members: set[str] = set()
    nodes = []
    for _ in range(n):
        creds = NodeCredentials.issue(ca, NodeIdentity.generate())
        members.add(creds.node_id)
        nodes.append(Node(creds, members))
    return nodes


@asynccontextmanager
async def running(*transports: PeerTransport) -> AsyncIterator[None]:
    """Serve the transports until the block ends."""
    async with anyio.create_task_group() as tg:
        for transport in transports:
            await tg.start(transport.serve)
        yield
        tg.cancel_scope.cancel()


async def raw_peer(
    address: str, creds: NodeCredentials | None, hello: dict[str, Any] | None
) -> FramedStream:
    """Open a TLS connection by hand (with ``creds``' certificate, or none) and send
    ``hello`` if given."""
    host, port = address.rsplit(":", 1)
    ctx = peer_client_context(creds) if creds is not None else client_context()
    tls = await open_tls(host, int(port), ctx, connect_timeout=3, handshake_timeout=3)
    framed = FramedStream(tls)
    if hello is not None:
        await framed.send(hello)
    return framed


def hello_of(creds: NodeCredentials, kind: str = "messages") -> dict[str, Any]:
    """The hello ``creds``' node would send."""
    return {
        "type": "hello",
        "version": PEER_PROTOCOL_VERSION,
        "cluster_id": creds.cluster_id,
        "node_id": creds.node_id,
        "kind": kind,
    }


async def closed_with(framed: FramedStream) -> list[dict[str, Any]]:
    """Every frame until the other side closes (or breaks) the connection."""
    frames = []
    try:
        with anyio.fail_after(5):
            while True:
                frames.append(await framed.recv())
    except (anyio.EndOfStream, anyio.BrokenResourceError, OSError):
        return frames
    finally:
        await framed.aclose()


# ------------------------------------------------------------------------------ admission
@pytest.mark.anyio
async def test_members_exchange_messages_over_mutual_tls() -> None:
    a, b = cluster(2)
    ta, tb = a.make(), b.make()
    async with running(ta, tb):
        ta.update_addresses({b.id: b.address})
        for i in range(1000):
            assert ta.send(b.id, None, {"i": i, "data": b"x" * 100})
        tb.send(a.id, a.address, {"hello": "back"})
        await wait_until(lambda: len(b.received) == 1000 and len(a.received) == 1)
        assert [m["i"] for _, m in b.received] == list(range(1000))
        assert {p for p, _ in b.received} == {a.id}
        assert a.received == [(b.id, {"hello": "back"})]
        stats = ta.stats()
        assert stats["peers"][b.id]["sent"] == 1000 and stats["peers"][b.id]["connects"] == 1
        assert stats["peers"][b.id]["connected"] and stats["refused"] == 0
        assert tb.stats()["peers"][a.id]["received"] == 1000
        # frames queued in one loop turn leave in one socket write; every byte is counted
        link = stats["peers"][b.id]
        assert 1 <= link["writes"] < 1000
        frame = len(encode_frame({"i": 999, "data": b"x" * 100}))
        assert link["sent_bytes"] >= 1000 * (frame - 2)  # small ints pack shorter


@pytest.mark.anyio
async def test_peer_with_a_certificate_of_another_ca_is_refused(caplog) -> None:
    a, b = cluster(2)
    foreign = ClusterCA.generate()
    # trusts our CA (so it accepts a's certificate) but presents one from another CA
    cert = issue_node_cert(foreign, b.creds.identity)
    intruder = NodeCredentials(b.creds.identity, a.creds.ca, cert)
    ta = a.make()
    ti = PeerTransport(
        intruder, "127.0.0.1:0", is_member=lambda _: True, on_message=b.on_message, driver=DRIVER
    )
    with caplog.at_level(logging.WARNING, "aspen.transport.peer"):
        async with running(ta, ti):
            ti.send(a.id, a.address, {"evil": True})
            await wait_until(lambda: ta.stats()["refused"] >= 1)
            await wait_until(lambda: ti.stats()["peers"][a.id]["connect_failures"] >= 1)
            assert a.received == []
    assert "refused peer connection" in caplog.text


@pytest.mark.anyio
async def test_connection_without_certificate_is_refused_unless_joining() -> None:
    (a,) = cluster(1)
    ta = a.make()
    async with running(ta):
        framed = await raw_peer(a.address, None, hello_of(a.creds))
        frames = await closed_with(framed)
        assert frames and frames[0]["type"] == "error"
        assert frames[0]["error"]["code"] == "unauthorized"
        assert "certificate" in frames[0]["error"]["message"]
        # no join handler on this node: a join is refused as well
        framed = await raw_peer(a.address, None, {"type": "join", "version": 1})
        frames = await closed_with(framed)
        assert frames[0]["error"]["code"] == "unauthorized"
        assert ta.stats()["refused"] == 2 and a.received == []


@pytest.mark.anyio
async def test_node_that_is_not_a_member_is_refused(caplog) -> None:
    a, b = cluster(2)
    stranger = NodeCredentials.issue(a.creds.ca, NodeIdentity.generate())  # valid cert
    ta = a.make()
    with caplog.at_level(logging.WARNING, "aspen.transport.peer"):
        async with running(ta):
            framed = await raw_peer(a.address, stranger, hello_of(stranger))
            frames = await closed_with(framed)
            assert frames[0]["error"]["code"] == "unauthorized"
            assert "not a member" in frames[0]["error"]["message"]
            # a member lying about its id in the hello is refused as well
            framed = await raw_peer(a.address, b.creds, {**hello_of(b.creds), "node_id": a.id})
            frames = await closed_with(framed)
            assert "certificate is" in frames[0]["error"]["message"]
    assert f"node {stranger.node_id} is not a member" in caplog.text
    assert a.received == []


@pytest.mark.anyio
async def test_dialer_checks_the_node_it_reaches() -> None:
    a, b, c = cluster(3)
    ta, tc = a.make(), c.make()
    async with running(ta, tc):
        ta.send(b.id, c.address, {"for": "b"})  # b's id, c's address
        await wait_until(lambda: ta.stats()["peers"][b.id]["connect_failures"] >= 1)
        assert f"is node {c.id}, not {b.id}" in ta.stats()["peers"][b.id]["last_error"]
        assert c.received == []


# ------------------------------------------------------------------------------ faults
@pytest.mark.anyio
@pytest.mark.parametrize(
    "garbage",
    [b"\x00\x00\x00\x05notmp", struct.pack(">I", 64 * 1024 * 1024) + b"x", b"\x00\x00\x00\x01\x05"],
    ids=["not-msgpack", "oversize", "not-a-map"],
)
async def test_garbage_closes_only_that_link(garbage: bytes) -> None:
    a, b = cluster(2)
    ta, tb = a.make(), b.make()
    async with running(ta, tb):
        tb.send(a.id, a.address, {"n": 1})
        await wait_until(lambda: len(a.received) == 1)
        bad = await raw_peer(a.address, b.creds, hello_of(b.creds))
        assert (await bad.recv())["type"] == "hello"
        await bad.stream.send(garbage)
        assert await closed_with(bad) == []
        await wait_until(lambda: ta.stats()["bad_frames"] == 1)
        tb.send(a.id, None, {"n": 2})  # the proper link is untouched
        await wait_until(lambda: len(a.received) == 2)
        assert tb.stats()["peers"][a.id]["connects"] == 1


@pytest.mark.anyio
async def test_link_reconnects_after_the_remote_restarts() -> None:
    a, b = cluster(2)
    ta = a.make(reconnect_min=0.01, reconnect_max=0.05)
    async with running(ta):
        async with anyio.create_task_group() as tg:
            tb = b.make()
            await tg.start(tb.serve)
            port = tb.port
            ta.send(b.id, b.address, {"n": 1})
            await wait_until(lambda: len(b.received) == 1)
            tg.cancel_scope.cancel()
        await wait_until(lambda: not ta.stats()["peers"][b.id]["connected"])
        async with running(b.make(listen=f"127.0.0.1:{port}")):
            n = 2

            def delivered() -> bool:  # resend until one gets through, like Raft does
                nonlocal n
                ta.send(b.id, None, {"n": n})
                n += 1
                return len(b.received) >= 2

            await wait_until(delivered)
            stats = ta.stats()["peers"][b.id]
            assert stats["connects"] == 2 and stats["connected"]


@pytest.mark.anyio
async def test_queue_is_bounded_while_the_peer_is_down() -> None:
    a, b = cluster(2)
    ta = a.make(queue_messages=10, queue_bytes=1 << 20)
    down = await anyio.create_tcp_listener(local_host="127.0.0.1")
    port = down.extra(anyio.abc.SocketAttribute.local_port)
    await down.aclose()  # nobody listens there now
    async with running(ta):
        accepted = [ta.send(b.id, f"127.0.0.1:{port}", {"i": i}) for i in range(50)]
        assert accepted.count(True) <= 11  # the link may have taken one batch already
        stats = ta.stats()["peers"][b.id]
        assert stats["dropped"] == accepted.count(False) >= 39
        assert stats["queued"] <= 10
        await wait_until(lambda: ta.stats()["peers"][b.id]["connect_failures"] >= 2)
        big = {"blob": b"x" * 600_000}
        assert [ta.send(b.id, None, big) for _ in range(3)].count(False) >= 1


# ------------------------------------------------------------------------------ streams
@pytest.mark.anyio
async def test_stream_of_many_mib_while_small_messages_flow() -> None:
    a, b = cluster(2)
    payload = bytes(range(256)) * (12 * 4096)  # 12 MiB
    small_seen = anyio.Event()

    def on_message(peer_id: str, msg: dict[str, Any]) -> None:
        b.received.append((peer_id, msg))
        if len(b.received) >= 100:
            small_seen.set()

    async def on_stream(peer_id: str, header: dict[str, Any], chunks: AsyncIterator[bytes]) -> Any:
        digest, size, first = hashlib.sha256(), 0, True
        async for chunk in chunks:
            digest.update(chunk)
            size += len(chunk)
            if first:  # hold the stream until small messages got through beside it
                first = False
                await small_seen.wait()
        b.streams.append((peer_id, header, digest.digest()))
        return {"size": size}

    ta = a.make()
    tb = PeerTransport(
        b.creds,
        "127.0.0.1:0",
        is_member=b.members.__contains__,
        on_message=on_message,
        on_stream=on_stream,
        driver=DRIVER,
    )
    b.transport = tb

    async def chunks() -> AsyncIterator[bytes]:
        for start in range(0, len(payload), 3 * 1024 * 1024):  # split by the transport
            yield payload[start : start + 3 * 1024 * 1024]

    async with running(ta, tb):
        result: dict[str, Any] = {}

        async def stream() -> None:
            result.update(await ta.send_stream(b.id, b.address, {"kind": "snap"}, chunks()))

        async with anyio.create_task_group() as tg:
            tg.start_soon(stream)
            for i in range(100):
                ta.send(b.id, b.address, {"i": i})
                await anyio.sleep(0)
        assert result == {"size": len(payload)}
        assert b.streams == [(a.id, {"kind": "snap"}, hashlib.sha256(payload).digest())]
        assert ta.stats()["streams_sent"] == 1 and tb.stats()["streams_received"] == 1


@pytest.mark.anyio
async def test_stream_errors_reach_the_sender() -> None:
    a, b = cluster(2)

    async def on_stream(peer_id: str, header: dict[str, Any], chunks: AsyncIterator[bytes]) -> Any:
        async for _ in chunks:
            raise errors.InvalidArgumentError("not a snapshot I want")

    ta = a.make()
    tb = b.make(on_stream=on_stream)

    async def chunks() -> AsyncIterator[bytes]:
        for _ in range(64):
            yield b"z" * 1024 * 1024

    async with running(ta, tb):
        with anyio.fail_after(10), pytest.raises(errors.InvalidArgumentError, match="I want"):
            await ta.send_stream(b.id, b.address, {}, chunks())
        no_streams = a.make()  # a node without on_stream refuses streams up front
        async with running(no_streams):
            with pytest.raises(errors.UnavailableError, match="streams"):
                await tb.send_stream(a.id, a.address, {}, chunks())
        with pytest.raises(errors.UnavailableError, match="cannot stream"):
            await ta.send_stream(b.id, "127.0.0.1:1", {}, chunks())


@pytest.mark.anyio
async def test_a_fetch_streams_many_mib_back_and_carries_errors() -> None:
    a, b, outsider = cluster(3)
    b.members.discard(outsider.id)
    payload = bytes(range(256)) * 4096 * 6  # 6 MiB

    async def on_fetch(peer_id: str, header: dict[str, Any]) -> AsyncIterator[bytes]:
        if header.get("name") != "payload":
            raise errors.NotFoundError(f"no {header.get('name')!r} here")
        for start in range(0, len(payload), 1024 * 1024):
            yield payload[start : start + 1024 * 1024]

    ta = a.make()
    tb = b.make(on_fetch=on_fetch)
    tc = outsider.make()
    async with running(ta, tb, tc):
        with anyio.fail_after(20):
            got = b"".join([c async for c in ta.fetch(b.id, b.address, {"name": "payload"})])
        assert got == payload
        with pytest.raises(errors.NotFoundError, match="no 'other' here"):
            async for _ in ta.fetch(b.id, b.address, {"name": "other"}):
                pass
        with pytest.raises(errors.UnauthorizedError, match="not a member"):
            async for _ in tc.fetch(b.id, b.address, {"name": "payload"}):
                pass
        with pytest.raises(errors.UnavailableError, match="does not serve fetches"):
            async for _ in tb.fetch(a.id, a.address, {}):
                pass
