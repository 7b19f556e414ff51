"""The client protocol server over real sockets on 127.0.0.1, spoken to byte by byte.

Every test runs on each I/O driver (asyncio Protocol, anyio streams; trio too when it is
installed). The helpers here (``serving``, ``RawClient``, the test handlers and the
backend/driver fixtures) are reused by ``test_client_*.py``.
"""

from __future__ import annotations

import importlib.util
import logging
from collections import deque
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import anyio
import pytest

from aspen.errors import NotFoundError
from aspen.plugins.types import RpcHandler
from aspen.rpc import MethodRegistry, RpcServer
from aspen.rpc.context import RpcContext
from aspen.testing import async_wait_for as wait_until
from aspen.transport.framing import FrameDecoder, encode_frame

TOKEN = "s3cret"
NODE = object()
HAVE_TRIO = importlib.util.find_spec("trio") is not None

CASES = [("asyncio", "asyncio"), ("asyncio", "anyio")] + ([("trio", "anyio")] if HAVE_TRIO else [])


@pytest.fixture(params=CASES, ids=[f"{b}-{d}" for b, d in CASES])
def backend_driver(request: pytest.FixtureRequest) -> tuple[str, str]:
    """(anyio backend, server I/O driver) pairs."""
    return request.param


@pytest.fixture
def anyio_backend(backend_driver: tuple[str, str]) -> str:
    """The event loop the test runs on."""
    return backend_driver[0]


@pytest.fixture
def driver(backend_driver: tuple[str, str]) -> str:
    """The server's I/O driver."""
    return backend_driver[1]


# ------------------------------------------------------------------------------ handlers
@dataclass
class State:
    """What the test handlers saw; events are created inside the running loop."""

    slow_started: anyio.Event = field(default_factory=anyio.Event)
    slow_cancelled: anyio.Event = field(default_factory=anyio.Event)
    stream_closed: anyio.Event = field(default_factory=anyio.Event)
    contexts: list[RpcContext] = field(default_factory=list)
    big_calls: int = 0
    holding: int = 0
    most_holding: int = 0


def make_registry(state: State) -> MethodRegistry:
    """Small handlers: echo, slow, failing, buggy, streaming, context, big."""

    async def echo(ctx: RpcContext, params: dict[str, Any]) -> Any:
        return params

    async def slow(ctx: RpcContext, params: dict[str, Any]) -> Any:
        state.slow_started.set()
        try:
            await anyio.sleep(params.get("delay", 60))
        except anyio.get_cancelled_exc_class():
            state.slow_cancelled.set()
            raise
        return params.get("tag", "done")

    async def fail(ctx: RpcContext, params: dict[str, Any]) -> Any:
        raise NotFoundError("no such thing", key=b"k")

    async def boom(ctx: RpcContext, params: dict[str, Any]) -> Any:
        raise ValueError("kaboom")

    async def count(ctx: RpcContext, params: dict[str, Any]) -> AsyncIterator[int]:
        try:
            for i in range(params.get("n", 3)):
                yield i
                await anyio.sleep(params.get("delay", 0))
        finally:
            state.stream_closed.set()

    async def flood(ctx: RpcContext, params: dict[str, Any]) -> AsyncIterator[bytes]:
        for _ in range(params["n"]):
            yield b"f" * params.get("size", 100)

    async def whoami(ctx: RpcContext, params: dict[str, Any]) -> Any:
        state.contexts.append(ctx)
        return {"peer": ctx.peer, "identity": ctx.identity, "connection_id": ctx.connection_id}

    async def hold(ctx: RpcContext, params: dict[str, Any]) -> Any:
        state.holding += 1
        state.most_holding = max(state.most_holding, state.holding)
        try:
            await anyio.sleep(params.get("delay", 0.01))
        finally:
            state.holding -= 1
        return len(params.get("pad", b""))

    async def big(ctx: RpcContext, params: dict[str, Any]) -> Any:
        state.big_calls += 1
        return b"x" * params["n"]

    handlers = [
        RpcHandler("test.echo", echo, plugin="testing"),
        RpcHandler("test.slow", slow, plugin="testing"),
        RpcHandler("test.fail", fail, plugin="testing"),
        RpcHandler("test.boom", boom, plugin="testing"),
        RpcHandler("test.count", count, streaming=True, plugin="testing"),
        RpcHandler("test.flood", flood, streaming=True, plugin="testing"),
        RpcHandler("test.whoami", whoami, plugin="testing"),
        RpcHandler("test.big", big, plugin="testing"),
        RpcHandler("test.hold", hold, plugin="testing"),
    ]
    return MethodRegistry(handlers)


@dataclass
class Served:
    """A running test server."""

    server: RpcServer
    port: int
    state: State

    @property
    def endpoint(self) -> str:
        """``127.0.0.1:port``."""
        return f"127.0.0.1:{self.port}"


def authenticate(token: str | None) -> str | None:
    """Accept only ``TOKEN``."""
    return "root" if token == TOKEN else None


@asynccontextmanager
async def serving(
    driver: str = "auto", registry: MethodRegistry | None = None, **options: Any
) -> AsyncIterator[Served]:
    """Run an RpcServer on 127.0.0.1, port 0, until the block ends."""
    state = State()
    server = RpcServer(
        registry or make_registry(state),
        node=NODE,
        authenticate=authenticate,
        node_id="test-node",
        features=("echo",),
        driver=driver,  # type: ignore[arg-type]
        **options,
    )
    async with anyio.create_task_group() as tg:
        port = await tg.start(server.serve, "127.0.0.1", 0)
        yield Served(server, port, state)
        tg.cancel_scope.cancel()


class RawClient:
    """Speaks frames (or raw bytes) to the server, no Aspen client involved."""

    def __init__(self, stream: Any) -> None:
        self.stream = stream
        self.decoder = FrameDecoder()
        self.frames: deque[dict[str, Any]] = deque()

    @classmethod
    async def connect(cls, port: int, *, hello: bool = True) -> RawClient:
        """Connect; say hello with the right token unless ``hello`` is false."""
        client = cls(await anyio.connect_tcp("127.0.0.1", port))
        if hello:
            await client.send({"type": "hello", "version": 1, "token": TOKEN, "features": []})
            reply = await client.recv()
            assert reply["type"] == "hello", reply
        return client

    async def send(self, obj: Any) -> None:
        """Send one frame."""
        await self.stream.send(encode_frame(obj))

    async def recv(self, timeout: float = 5.0) -> dict[str, Any]:
        """Receive the next frame (EndOfStream if the server closed)."""
        with anyio.fail_after(timeout):
            while not self.frames:
                self.frames.extend(self.decoder.feed(await self.stream.receive()))
        return self.frames.popleft()

    async def recv_until_closed(self, timeout: float = 5.0) -> list[dict[str, Any]]:
        """Every frame until the server closes the connection."""
        got: list[dict[str, Any]] = []
        with anyio.fail_after(timeout):
            while True:
                try:
                    got.append(await self.recv(timeout))
                except (anyio.EndOfStream, anyio.BrokenResourceError, ConnectionError):
                    return got

    async def aclose(self) -> None:
        """Close the socket."""
        await self.stream.aclose()


# ------------------------------------------------------------------------------ hello
@pytest.mark.anyio
async def test_hello_reply_names_node_and_features(driver: str) -> None:
    async with serving(driver) as s:
        raw = await RawClient.connect(s.port, hello=False)
        await raw.send({"type": "hello", "version": 1, "token": TOKEN, "client": "t"})
        reply = await raw.recv()
        assert reply["type"] == "hello" and reply["version"] == 1
        assert reply["node_id"] == "test-node" and reply["features"] == ["echo"]
        assert reply["server"].startswith("aspen/")
        await raw.aclose()


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("hello", "code"),
    [
        ({"type": "hello", "version": 1}, "unauthorized"),
        ({"type": "hello", "version": 1, "token": "wrong"}, "unauthorized"),
        ({"type": "hello", "version": 1, "token": 42}, "unauthorized"),
        ({"type": "hello", "version": 2, "token": TOKEN}, "invalid_argument"),
        ({"type": "hello", "version": True, "token": TOKEN}, "invalid_argument"),
        ({"id": 1, "method": "test.echo", "params": {}}, "invalid_argument"),
    ],
    ids=[
        "no-token",
        "wrong-token",
        "token-not-str",
        "wrong-version",
        "version-bool",
        "request-first",
    ],
)
async def test_bad_hello_gets_error_frame_then_close(
    driver: str, hello: dict[str, Any], code: str
) -> None:
    async with serving(driver) as s:
        raw = await RawClient.connect(s.port, hello=False)
        await raw.send(hello)
        frames = await raw.recv_until_closed()
        assert [f["type"] for f in frames] == ["error"]
        assert frames[0]["error"]["code"] == code
        assert frames[0]["error"]["message"]


@pytest.mark.anyio
async def test_error_frame_instead_of_hello_closes_at_once(driver: str) -> None:
    async with serving(driver, hello_timeout=60) as s:
        raw = await RawClient.connect(s.port, hello=False)
        await raw.send({"type": "error", "error": {"code": "internal", "message": "bye"}})
        assert await raw.recv_until_closed(timeout=5) == []
        await wait_until(lambda: s.server.stats()["connections"] == 0)


@pytest.mark.anyio
async def test_no_hello_within_timeout_closes(driver: str) -> None:
    async with serving(driver, hello_timeout=0.2) as s:
        raw = await RawClient.connect(s.port, hello=False)
        frames = await raw.recv_until_closed(timeout=5)
        assert frames and frames[0]["error"]["code"] == "timeout"
        await wait_until(lambda: s.server.stats()["connections"] == 0)


# ------------------------------------------------------------------------------ requests
@pytest.mark.anyio
async def test_request_response_keeps_bytes_and_str(driver: str) -> None:
    async with serving(driver) as s:
        raw = await RawClient.connect(s.port)
        params = {"b": b"\x00\xff", "s": "ünïcode", "n": [1, None, True]}
        await raw.send({"id": 7, "method": "test.echo", "params": params})
        assert await raw.recv() == {"id": 7, "result": params}
        await raw.aclose()


@pytest.mark.anyio
async def test_context_carries_identity_peer_and_connection(driver: str) -> None:
    async with serving(driver) as s:
        a = await RawClient.connect(s.port)
        b = await RawClient.connect(s.port)
        for raw in (a, b):
            await raw.send({"id": 1, "method": "test.whoami", "params": {}})
        ra, rb = (await a.recv())["result"], (await b.recv())["result"]
        assert ra["identity"] == rb["identity"] == "root"
        assert ra["peer"].startswith("127.0.0.1:")
        assert ra["connection_id"] != rb["connection_id"]
        assert all(ctx.node is NODE for ctx in s.state.contexts)


@pytest.mark.anyio
async def test_many_requests_in_one_write_all_answered(driver: str) -> None:
    async with serving(driver) as s:
        raw = await RawClient.connect(s.port)
        batch = b"".join(
            encode_frame({"id": i, "method": "test.echo", "params": {"i": i}}) for i in range(200)
        )
        await raw.stream.send(batch)
        got = {}
        for _ in range(200):
            frame = await raw.recv()
            got[frame["id"]] = frame["result"]["i"]
        assert got == {i: i for i in range(200)}
        await raw.aclose()


@pytest.mark.anyio
async def test_unknown_method_is_unavailable_naming_the_plugin(driver: str) -> None:
    async with serving(driver) as s:
        raw = await RawClient.connect(s.port)
        await raw.send({"id": 1, "method": "forge.clone", "params": {}})
        err = (await raw.recv())["error"]
        assert err["code"] == "unavailable" and err["details"]["plugin"] == "forge"
        assert "forge" in err["message"] and "install" in err["message"]
        await raw.send({"id": 2, "method": "test.nope", "params": {}})
        err = (await raw.recv())["error"]
        assert err["code"] == "unavailable" and "test.echo" in err["message"]
        await raw.send({"id": 3, "method": ["not", "a", "str"], "params": {}})
        assert (await raw.recv())["error"]["code"] == "invalid_argument"
        await raw.aclose()


@pytest.mark.anyio
async def test_params_not_a_map_is_invalid_argument(driver: str) -> None:
    async with serving(driver) as s:
        raw = await RawClient.connect(s.port)
        await raw.send({"id": 1, "method": "test.echo", "params": [1, 2]})
        err = (await raw.recv())["error"]
        assert err["code"] == "invalid_argument" and "map" in err["message"]
        await raw.send({"id": 2, "method": "test.echo"})
        assert await raw.recv() == {"id": 2, "result": {}}
        await raw.aclose()


@pytest.mark.anyio
async def test_handler_errors_and_bugs(driver: str, caplog: pytest.LogCaptureFixture) -> None:
    async with serving(driver) as s:
        raw = await RawClient.connect(s.port)
        await raw.send({"id": 1, "method": "test.fail", "params": {}})
        err = (await raw.recv())["error"]
        assert err == {"code": "not_found", "message": "no such thing", "details": {"key": b"k"}}
        with caplog.at_level(logging.ERROR, logger="aspen.rpc"):
            await raw.send({"id": 2, "method": "test.boom", "params": {}})
            err = (await raw.recv())["error"]
        assert err["code"] == "internal" and "kaboom" in err["message"]
        assert err["details"]["plugin"] == "testing"
        logged = [r for r in caplog.records if r.name == "aspen.rpc"]
        assert logged and "testing" in logged[0].getMessage() and logged[0].exc_info
        await raw.send({"id": 3, "method": "test.echo", "params": {"still": "here"}})
        assert await raw.recv() == {"id": 3, "result": {"still": "here"}}
        assert s.server.stats()["internal_errors"] == 1
        await raw.aclose()


@pytest.mark.anyio
async def test_oversized_response_is_an_error_not_a_dead_connection(driver: str) -> None:
    async with serving(driver, max_frame=64 * 1024) as s:
        raw = await RawClient.connect(s.port)
        await raw.send({"id": 1, "method": "test.big", "params": {"n": 100_000}})
        err = (await raw.recv())["error"]
        assert err["code"] == "resource_exhausted" and "too large" in err["message"]
        await raw.send({"id": 2, "method": "test.big", "params": {"n": 10}})
        assert await raw.recv() == {"id": 2, "result": b"x" * 10}
        await raw.aclose()


# ------------------------------------------------------------------------------ bad input
@pytest.mark.anyio
@pytest.mark.parametrize(
    "payload",
    [
        b"\x00\x00\x00\x02\xc1\xc1",  # 0xc1 is never valid msgpack
        b"\x00\x00\x00\x03\x92\x01\x02",  # a list, not a map
        b"\x00\x00\x00\x03\x81\x01\x02",  # a map with an int key
        b"\xff\xff\xff\xff",  # length prefix far over MAX_FRAME_BYTES, no body
        encode_frame({"method": "test.echo"}),  # neither an int id nor a cancel
    ],
    ids=["garbage", "not-a-map", "int-key", "oversize-prefix", "no-id"],
)
async def test_bad_frame_closes_only_that_connection(driver: str, payload: bytes) -> None:
    async with serving(driver) as s:
        good = await RawClient.connect(s.port)
        bad = await RawClient.connect(s.port)
        await bad.stream.send(payload)
        frames = await bad.recv_until_closed()
        assert all(f.get("type") == "error" for f in frames)
        await good.send({"id": 1, "method": "test.echo", "params": {"ok": True}})
        assert await good.recv() == {"id": 1, "result": {"ok": True}}
        await wait_until(lambda: s.server.stats()["connections"] == 1)
        await good.aclose()


# ------------------------------------------------------------------------------ streams, cancel
@pytest.mark.anyio
async def test_stream_items_then_end(driver: str) -> None:
    async with serving(driver) as s:
        raw = await RawClient.connect(s.port)
        await raw.send({"id": 5, "method": "test.count", "params": {"n": 4}})
        frames = [await raw.recv() for _ in range(5)]
        assert frames == [{"id": 5, "item": i} for i in range(4)] + [{"id": 5, "result": None}]
        await raw.aclose()


@pytest.mark.anyio
async def test_cancel_stream_and_request(driver: str) -> None:
    async with serving(driver) as s:
        raw = await RawClient.connect(s.port)
        await raw.send({"id": 1, "method": "test.count", "params": {"n": 10**6, "delay": 0.01}})
        assert await raw.recv() == {"id": 1, "item": 0}
        await raw.send({"cancel": 1})
        frame = await raw.recv()
        while "item" in frame:
            frame = await raw.recv()
        assert frame == {"id": 1, "result": {"canceled": True}}
        with anyio.fail_after(5):
            await s.state.stream_closed.wait()
        await raw.send({"id": 2, "method": "test.slow", "params": {"delay": 60}})
        with anyio.fail_after(5):
            await s.state.slow_started.wait()
        await raw.send({"cancel": 2})
        assert await raw.recv() == {"id": 2, "result": {"canceled": True}}
        with anyio.fail_after(5):
            await s.state.slow_cancelled.wait()
        await raw.send({"cancel": 99})  # unknown id: ignored
        await raw.send({"id": 3, "method": "test.echo", "params": {}})
        assert await raw.recv() == {"id": 3, "result": {}}
        await raw.aclose()


@pytest.mark.anyio
async def test_cancel_in_the_same_write_as_its_request(driver: str) -> None:
    async with serving(driver, max_inflight=2) as s:
        raw = await RawClient.connect(s.port)
        batch = b"".join(
            encode_frame({"id": i, "method": "test.slow", "params": {"delay": 60}})
            + encode_frame({"cancel": i})
            for i in range(10)
        )
        await raw.stream.send(batch)
        replies = [await raw.recv() for _ in range(10)]
        assert sorted(r["id"] for r in replies) == list(range(10))
        assert all(r["result"] == {"canceled": True} for r in replies)
        await raw.send({"id": 11, "method": "test.echo", "params": {}})
        assert await raw.recv() == {"id": 11, "result": {}}
        await raw.aclose()


@pytest.mark.anyio
async def test_client_disconnect_mid_stream_leaves_server_healthy(
    driver: str, caplog: pytest.LogCaptureFixture
) -> None:
    async with serving(driver) as s:
        with caplog.at_level(logging.WARNING):
            raw = await RawClient.connect(s.port)
            await raw.send({"id": 1, "method": "test.count", "params": {"n": 10**6, "delay": 0}})
            await raw.recv()
            await raw.aclose()
            with anyio.fail_after(5):
                await s.state.stream_closed.wait()
            await wait_until(lambda: s.server.stats()["connections"] == 0)
        assert not [r for r in caplog.records if r.levelno >= logging.WARNING]
        fresh = await RawClient.connect(s.port)
        await fresh.send({"id": 1, "method": "test.echo", "params": {}})
        assert await fresh.recv() == {"id": 1, "result": {}}
        await fresh.aclose()


# ------------------------------------------------------------------------------ bounds
@pytest.mark.anyio
async def test_inflight_bound_pauses_reading_but_serves_everything(driver: str) -> None:
    async with serving(driver, max_inflight=2) as s:
        raw = await RawClient.connect(s.port)
        batch = b"".join(
            encode_frame({"id": i, "method": "test.slow", "params": {"delay": 0.01, "tag": i}})
            for i in range(20)
        )
        await raw.stream.send(batch)
        got = sorted([(await raw.recv())["result"] for _ in range(20)])
        assert got == list(range(20))
        await raw.aclose()


@pytest.mark.anyio
async def test_client_that_does_not_read_is_paused_then_served(driver: str) -> None:
    # 200 pipelined 512 KiB replies that are not read: the server stops reading the
    # connection after a few (queued reply bytes over the bound), serves others meanwhile,
    # and answers every request once the client reads
    limit = 1024 * 1024
    async with serving(driver, max_queued_bytes=limit) as s:
        raw = await RawClient.connect(s.port)
        n, size = 200, 512 * 1024
        request = {"method": "test.big", "params": {"n": size}}
        await raw.stream.send(b"".join(encode_frame({"id": i, **request}) for i in range(n)))
        await wait_until(lambda: s.server.stats()["connections_paused"] == 1, timeout=20)
        other = await RawClient.connect(s.port)
        await other.send({"id": 1, "method": "test.echo", "params": {"ok": True}})
        assert await other.recv() == {"id": 1, "result": {"ok": True}}
        await wait_until(lambda: s.server.stats()["connections_paused"] == 1, timeout=20)
        # socket buffers took a few replies; the other requests were never started
        assert s.state.big_calls < n // 2
        frames = [await raw.recv(timeout=20) for _ in range(n)]
        assert sorted(f["id"] for f in frames) == list(range(n))
        assert all(len(f["result"]) == size for f in frames)
        assert s.server.stats()["connections"] == 2
        await raw.aclose()
        await other.aclose()


@pytest.mark.anyio
async def test_big_pipelined_requests_run_a_few_at_a_time(driver: str) -> None:
    # 40 pipelined 512 KiB requests with a 1 MiB bound on running request bytes: their
    # params wait in the socket, not in handlers; every one is answered
    async with serving(driver, max_request_bytes=1024 * 1024) as s:
        raw = await RawClient.connect(s.port)
        n, size = 40, 512 * 1024
        request = {"method": "test.hold", "params": {"pad": b"p" * size}}
        await raw.stream.send(b"".join(encode_frame({"id": i, **request}) for i in range(n)))
        frames = [await raw.recv(timeout=20) for _ in range(n)]
        assert sorted(f["id"] for f in frames) == list(range(n))
        assert all(f["result"] == size for f in frames)
        assert s.state.most_holding <= 2
        await raw.aclose()


@pytest.mark.anyio
async def test_connection_over_the_unread_bound_is_closed(driver: str) -> None:
    # the last resort: replies already running when the client stops reading may pile up
    # past the back-pressure bound; past MAX_UNREAD_REPLY_BYTES the connection is closed
    async with serving(driver, max_queued_bytes=64 * 2**20, max_unread_bytes=2 * 2**20) as s:
        raw = await RawClient.connect(s.port)
        n = 200
        request = {"method": "test.big", "params": {"n": 512 * 1024}}
        await raw.stream.send(b"".join(encode_frame({"id": i, **request}) for i in range(n)))
        await wait_until(lambda: s.server.stats()["connections"] == 0, timeout=20)
        frames = await raw.recv_until_closed(timeout=20)
        assert len(frames) < n


@pytest.mark.anyio
async def test_fast_stream_is_throttled_not_disconnected(driver: str) -> None:
    async with serving(driver, max_queued_bytes=256 * 1024) as s:
        raw = await RawClient.connect(s.port)
        n = 20_000
        await raw.send({"id": 1, "method": "test.flood", "params": {"n": n, "size": 1000}})
        # not reading yet: the server must come to wait for the socket, not queue or drop
        await wait_until(lambda: s.server.stats()["streams_blocked"] == 1, timeout=10)
        frames = [await raw.recv(timeout=20) for _ in range(n + 1)]
        assert sum(1 for f in frames if "item" in f) == n
        assert frames[-1] == {"id": 1, "result": None}
        assert s.server.stats()["streams_blocked"] == 0
        await raw.aclose()


@pytest.mark.anyio
async def test_connection_limit(driver: str) -> None:
    async with serving(driver, max_connections=1) as s:
        first = await RawClient.connect(s.port)
        second = await RawClient.connect(s.port, hello=False)
        frames = await second.recv_until_closed()
        assert frames[0]["error"]["code"] == "resource_exhausted"
        await first.send({"id": 1, "method": "test.echo", "params": {}})
        assert await first.recv() == {"id": 1, "result": {}}
        await first.aclose()


@pytest.mark.anyio
async def test_stopping_the_server_cancels_running_handlers(driver: str) -> None:
    async with serving(driver) as s:
        raw = await RawClient.connect(s.port)
        await raw.send({"id": 1, "method": "test.slow", "params": {"delay": 60}})
        with anyio.fail_after(5):
            await s.state.slow_started.wait()
    with anyio.fail_after(5):
        await s.state.slow_cancelled.wait()
    assert await raw.recv_until_closed() == []


@pytest.mark.anyio
async def test_stats_count_requests_and_errors(driver: str) -> None:
    async with serving(driver) as s:
        raw = await RawClient.connect(s.port)
        await raw.send({"id": 1, "method": "test.echo", "params": {}})
        await raw.send({"id": 2, "method": "test.fail", "params": {}})
        await raw.recv()
        await raw.recv()
        stats = s.server.stats()
        assert stats["requests"] == 2 and stats["errors"] == 1
        assert stats["connections"] == 1 and stats["connections_total"] == 1
        await raw.aclose()
