"""The client against a real RpcServer on 127.0.0.1: multiplexing, errors, streams,
deadlines, endpoints, reconnects, redirects, and the blocking facade."""

from __future__ import annotations

import socket
import threading
from typing import Any

import anyio
import pytest
import test_rpc_server as rpc
from anyio.from_thread import start_blocking_portal
from test_rpc_server import TOKEN, Served, serving, wait_until

import aspen
import aspen.client.aclient
import aspen.client.connection
from aspen import errors, limits
from aspen.client import split_endpoints
from aspen.plugins.types import RpcHandler
from aspen.rpc import MethodRegistry

# The backend x driver fixtures of the server tests: every test runs on each I/O driver.
backend_driver = rpc.backend_driver
anyio_backend = rpc.anyio_backend
driver = rpc.driver


def dead_endpoint() -> str:
    """An endpoint nobody listens on (a port just released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"127.0.0.1:{port}"


# ------------------------------------------------------------------------------ basics
@pytest.mark.anyio
async def test_call_and_concurrent_calls_on_one_connection(driver: str) -> None:
    async with serving(driver) as s, aspen.aconnect(s.endpoint, token=TOKEN) as c:
        assert await c.call("test.echo", {"k": b"v"}) == {"k": b"v"}
        assert c.server_hello["node_id"] == "test-node"
        results: dict[int, Any] = {}

        async def one(i: int) -> None:
            delay = (i * 7 % 10) / 1000
            results[i] = await c.call("test.slow", {"delay": delay, "tag": i})

        async with anyio.create_task_group() as tg:
            for i in range(100):
                tg.start_soon(one, i)
        assert results == {i: i for i in range(100)}
        assert s.server.stats()["connections_total"] == 1


@pytest.mark.anyio
async def test_calls_over_the_inflight_bound_wait_their_turn(driver: str) -> None:
    async with serving(driver) as s, aspen.aconnect(s.endpoint, token=TOKEN) as c:
        conn = c._conn
        assert conn is not None
        conn.max_inflight = 3
        results: dict[int, Any] = {}
        most = 0

        async def one(i: int) -> None:
            nonlocal most
            results[i] = await c.call("test.slow", {"delay": 0.002, "tag": i})
            most = max(most, conn.inflight + 1)  # this call and the ones still running

        async with anyio.create_task_group() as tg:
            for i in range(60):
                tg.start_soon(one, i)
        assert results == {i: i for i in range(60)}
        assert most <= 3
        assert s.server.stats()["connections_total"] == 1


@pytest.mark.anyio
async def test_calls_waiting_behind_a_timed_out_call_time_out(driver: str) -> None:
    async with serving(driver) as s, aspen.aconnect(s.endpoint, token=TOKEN) as c:
        conn = c._conn
        assert conn is not None
        conn.max_inflight = 1
        outcomes: dict[str, BaseException] = {}

        async def call(name: str, timeout: float) -> None:
            try:
                await c.call("test.slow", {"delay": 60}, timeout=timeout)
            except errors.AspenError as exc:
                outcomes[name] = exc

        async with anyio.create_task_group() as tg:
            tg.start_soon(call, "first", 0.2)
            await wait_until(lambda: conn.inflight == 1)
            tg.start_soon(call, "second", 60)
        assert isinstance(outcomes["first"], errors.TimeoutError)
        assert isinstance(outcomes["second"], errors.TimeoutError)
        assert "not sent" in outcomes["second"].message
        assert s.server.stats()["requests"] == 1


@pytest.mark.anyio
async def test_errors_are_raised_as_their_classes(driver: str) -> None:
    async with serving(driver) as s, aspen.aconnect(s.endpoint, token=TOKEN) as c:
        with pytest.raises(errors.NotFoundError) as info:
            await c.call("test.fail")
        assert info.value.details == {"key": b"k"}
        with pytest.raises(errors.InternalError, match="kaboom"):
            await c.call("test.boom")
        with pytest.raises(errors.UnavailableError) as unavailable:
            await c.call("secrets.read", {"path": "x"})
        assert unavailable.value.details["plugin"] == "secrets"
        assert await c.call("test.echo", {}) == {}


@pytest.mark.anyio
async def test_bad_token_and_missing_token(driver: str, monkeypatch: pytest.MonkeyPatch) -> None:
    async with serving(driver) as s:
        with pytest.raises(errors.UnauthorizedError):
            async with aspen.aconnect(s.endpoint, token="nope"):
                pass
        monkeypatch.delenv("ASPEN_TOKEN", raising=False)
        with pytest.raises(errors.UnauthorizedError, match=r"no token"):
            async with aspen.aconnect(s.endpoint):
                pass
        monkeypatch.setenv("ASPEN_TOKEN", TOKEN)
        async with aspen.aconnect(s.endpoint) as c:
            assert await c.call("test.echo", {"env": True}) == {"env": True}


@pytest.mark.anyio
async def test_request_deadline_raises_timeout_and_cancels_on_server(driver: str) -> None:
    async with serving(driver) as s, aspen.aconnect(s.endpoint, token=TOKEN) as c:
        with pytest.raises(errors.TimeoutError, match=r"test\.slow"):
            await c.call("test.slow", {"delay": 30}, timeout=0.1)
        with anyio.fail_after(5):
            await s.state.slow_cancelled.wait()
        assert await c.call("test.echo", {"after": 1}) == {"after": 1}


@pytest.mark.anyio
async def test_oversized_request_is_refused_locally(driver: str) -> None:
    async with serving(driver) as s, aspen.aconnect(s.endpoint, token=TOKEN) as c:
        with pytest.raises(errors.InvalidArgumentError, match="MAX_FRAME_BYTES"):
            await c.call("test.echo", {"v": b"x" * (limits.MAX_FRAME_BYTES + 1)})
        assert await c.call("test.echo", {}) == {}


# ------------------------------------------------------------------------------ streams
@pytest.mark.anyio
async def test_stream_iterates_to_the_end(driver: str) -> None:
    async with serving(driver) as s, aspen.aconnect(s.endpoint, token=TOKEN) as c:
        assert [i async for i in c.stream("test.count", {"n": 5})] == [0, 1, 2, 3, 4]
        with pytest.raises(errors.UnavailableError):
            async for _ in c.stream("nope.stream"):
                pass


@pytest.mark.anyio
async def test_closing_a_stream_cancels_it_on_the_server(driver: str) -> None:
    async with serving(driver) as s, aspen.aconnect(s.endpoint, token=TOKEN) as c:
        async with c.stream("test.count", {"n": 10**6, "delay": 0.001}) as stream:
            seen = []
            async for item in stream:
                seen.append(item)
                if len(seen) == 3:
                    break
        assert seen == [0, 1, 2]
        with anyio.fail_after(5):
            await s.state.stream_closed.wait()
        assert await c.call("test.echo", {}) == {}


@pytest.mark.anyio
async def test_stream_whose_consumer_falls_behind_is_cancelled(
    driver: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(aspen.client.connection, "CLIENT_MAX_STREAM_BUFFERED_ITEMS", 50)
    async with serving(driver) as s, aspen.aconnect(s.endpoint, token=TOKEN) as c:
        stream = c.stream("test.flood", {"n": 10_000})
        await stream.__aenter__()
        await wait_until(lambda: stream._inner.done())
        # the client cancelled it: nothing stays in flight on the server
        await wait_until(lambda: not any(x.inflight for x in s.server._sessions))
        items = []
        with pytest.raises(errors.ResourceExhaustedError, match="CLIENT_MAX_STREAM_BUFFERED_ITEMS"):
            async for item in stream:
                items.append(item)
        assert len(items) == 50
        assert await c.call("test.echo", {"still": "usable"}) == {"still": "usable"}


# ------------------------------------------------------------------------------ endpoints
def test_split_endpoints() -> None:
    assert split_endpoints("tcp://a:1, b:2,[::1]:3") == ["a:1", "b:2", "[::1]:3"]
    with pytest.raises(ValueError):
        split_endpoints("nohost")
    with pytest.raises(ValueError):
        split_endpoints(" , ")


@pytest.mark.anyio
async def test_dead_first_endpoint_is_skipped(driver: str) -> None:
    async with serving(driver) as s:
        endpoints = f"tcp://{dead_endpoint()},{s.endpoint}"
        async with aspen.aconnect(endpoints, token=TOKEN) as c:
            assert c.endpoint == s.endpoint
            assert await c.call("test.echo", {}) == {}


@pytest.mark.anyio
async def test_no_endpoint_answers(driver: str) -> None:
    a, b = dead_endpoint(), dead_endpoint()
    with pytest.raises(errors.UnavailableError) as info:
        async with aspen.aconnect(f"{a},{b}", token=TOKEN):
            pass
    assert a in info.value.message and b in info.value.message


@pytest.mark.anyio
async def test_drop_fails_in_flight_and_next_call_reconnects(driver: str) -> None:
    async with serving(driver) as s, aspen.aconnect(s.endpoint, token=TOKEN) as c:
        async with anyio.create_task_group() as tg:
            failures: list[BaseException] = []

            async def slow() -> None:
                try:
                    await c.call("test.slow", {"delay": 30})
                except errors.AspenError as exc:
                    failures.append(exc)

            tg.start_soon(slow)
            with anyio.fail_after(5):
                await s.state.slow_started.wait()
            for session in list(s.server._sessions):
                session.abort()
        assert len(failures) == 1 and isinstance(failures[0], errors.UnavailableError)
        assert await c.call("test.echo", {"again": 1}) == {"again": 1}
        assert s.server.stats()["connections_total"] == 2


@pytest.mark.anyio
async def test_not_leader_is_followed_to_the_hinted_leader(driver: str) -> None:
    async with serving(driver) as leader:

        async def refuse(ctx: Any, params: dict[str, Any]) -> Any:
            raise errors.NotLeaderError("not the leader", leader=leader.endpoint)

        follower_registry = MethodRegistry([RpcHandler("test.echo", refuse, plugin="testing")])
        async with (
            serving(driver, registry=follower_registry) as follower,
            aspen.aconnect(follower.endpoint, token=TOKEN) as c,
        ):
            assert await c.call("test.echo", {"w": 1}) == {"w": 1}
            assert c.endpoint == leader.endpoint


@pytest.mark.anyio
async def test_too_many_connections_is_reported(driver: str) -> None:
    async with serving(driver, max_connections=1) as s, aspen.aconnect(s.endpoint, token=TOKEN):
        with pytest.raises(errors.UnavailableError, match=r"too many client connections"):
            async with aspen.aconnect(s.endpoint, token=TOKEN):
                pass


# ------------------------------------------------------------------------------ sync facade
@pytest.fixture
def server_thread() -> Any:
    """A test server on its own event loop thread, for plain synchronous tests."""
    with start_blocking_portal("asyncio") as portal:
        cm = portal.wrap_async_context_manager(serving("asyncio"))
        served: Served = cm.__enter__()
        try:
            yield served
        finally:
            cm.__exit__(None, None, None)


def test_sync_client_call_stream_and_errors(server_thread: Served) -> None:
    with aspen.connect(server_thread.endpoint, token=TOKEN) as c:
        assert c.call("test.echo", {"sync": b"yes"}) == {"sync": b"yes"}
        assert list(c.stream("test.count", {"n": 3})) == [0, 1, 2]
        with pytest.raises(errors.NotFoundError):
            c.call("test.fail")
        with pytest.raises(errors.TimeoutError):
            c.call("test.slow", {"delay": 30}, timeout=0.1)
        assert c.endpoint == server_thread.endpoint


def test_sync_stream_can_be_cancelled_from_another_thread(server_thread: Served) -> None:
    with aspen.connect(server_thread.endpoint, token=TOKEN) as c:
        stream = c.stream("test.count", {"n": 10**6, "delay": 0.05})
        assert next(stream) == 0
        closer = threading.Timer(0.1, stream.cancel)
        closer.start()
        rest = list(stream)  # ends when the other thread cancels
        closer.join()
        assert len(rest) < 10**6
        assert c.call("test.echo", {}) == {}


def test_sync_client_with_dead_first_endpoint(server_thread: Served) -> None:
    with aspen.connect([dead_endpoint(), server_thread.endpoint], token=TOKEN) as c:
        assert c.call("test.echo", {"x": 1}) == {"x": 1}


# ------------------------------------------------------------------------------ anyio driver
@pytest.mark.anyio
async def test_portable_client_driver_multiplexes_streams_and_sees_the_server_go(
    driver: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The client's anyio driver (what trio uses), forced on asyncio, over plain TCP: many
    calls in flight on one connection, a stream, errors, and the loss of the server."""
    for module in (aspen.client.aclient, aspen.client.connection):
        monkeypatch.setattr(module, "running_on_asyncio", lambda: False)
    async with serving(driver) as s, aspen.aconnect(s.endpoint, token=TOKEN) as c:
        assert type(c._conn).__name__ == "_AnyioConnection"
        results: dict[int, Any] = {}

        async def one(i: int) -> None:
            results[i] = await c.call("test.echo", {"i": i})

        async with anyio.create_task_group() as tg:
            for i in range(300):
                tg.start_soon(one, i)
        assert results == {i: {"i": i} for i in range(300)}
        assert [i async for i in c.stream("test.count", {"n": 4})] == [0, 1, 2, 3]
        with pytest.raises(errors.NotFoundError, match="no such thing"):
            await c.call("test.fail")
        conn = c._conn
        for session in list(s.server._sessions):
            session.abort()
        await wait_until(lambda: conn.closed)
        with pytest.raises(errors.UnavailableError):
            await conn.request("test.echo", {}, timeout=5)
