"""One client connection to a node: hello, request multiplexing, streams, deadlines.

The protocol (hello, frames, their validation) is the sans-IO
:class:`~aspen.transport.wire.WireConnection`; this module multiplexes requests over it.
Requests carry ids chosen here; a response is matched to its waiter by id, so many
requests may be in flight on one connection. Two drivers share the logic of
:class:`Connection`: an ``asyncio.Protocol`` (the fast path under asyncio and uvloop: no
task per connection, a timer handle per deadline) and a portable one on anyio byte streams
with a reader and a writer task (trio).

A token of the form ``aspen1.<ca-public-key>.<secret>`` (a cluster) makes the connection TLS
1.3: the server certificate must be signed by that CA key (checked after the handshake,
:func:`aspen.transport.tls.verify_server_certificate`), else the connection is refused with
:class:`~aspen.errors.UnauthorizedError`. Legacy ``aspen_...`` tokens use plain TCP.

Invariants: ``pending`` maps every unanswered request id to its waiter (a future-like
object) or :class:`ClientStream`; an entry leaves it once, when its final frame arrives,
when its caller gives up (then a ``cancel`` frame is sent), or when the connection is lost
(then every waiter fails with :class:`~aspen.errors.UnavailableError`).

Flow control: at most ``CLIENT_MAX_INFLIGHT_PER_CONNECTION`` unary requests and
``CLIENT_MAX_INFLIGHT_REQUEST_BYTES`` of their frames are in flight (sent or buffered) on one
connection; further calls wait for room (in order) instead of buffering or failing, so a
client that ``gather``s 20k calls is paced by the server. ``inflight_bytes`` counts them.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import itertools
import ssl
from collections import deque
from collections.abc import Generator
from typing import Any

import anyio
import anyio.abc

from aspen.errors import (
    AspenError,
    InvalidArgumentError,
    ResourceExhaustedError,
    UnavailableError,
)
from aspen.errors import TimeoutError as AspenTimeoutError
from aspen.limits import (
    CLIENT_MAX_INFLIGHT_PER_CONNECTION,
    CLIENT_MAX_INFLIGHT_REQUEST_BYTES,
    CLIENT_MAX_STREAM_BUFFERED_ITEMS,
)
from aspen.transport.aio import FramedProtocol
from aspen.transport.framed import StreamAdapter
from aspen.transport.framing import running_on_asyncio
from aspen.transport.tokens import parse_cluster_token
from aspen.transport.wire import (
    PROTOCOL_VERSION,
    Cancel,
    ConnectionFailed,
    Failure,
    Hello,
    Item,
    Request,
    Role,
    WireConnection,
    WireError,
)

__all__ = [
    "CLIENT_NAME",
    "PROTOCOL_VERSION",
    "ClientStream",
    "Connection",
    "NotSentError",
    "open_connection",
    "parse_endpoint",
]

#: What the client calls itself in its hello.
CLIENT_NAME = "aspen-py/0.1.0"
#: Bytes asked for per receive on the anyio driver.
_READ_CHUNK_BYTES = 64 * 1024
_INF = float("inf")


def parse_endpoint(endpoint: str) -> tuple[str, int]:
    """Split ``[tcp://]host:port`` (or ``[v6addr]:port``) into host and port."""
    text = endpoint.strip()
    if "://" in text:
        scheme, text = text.split("://", 1)
        if scheme != "tcp":
            raise ValueError(f"endpoint {endpoint!r}: only tcp:// is supported")
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit():
        raise ValueError(f"endpoint {endpoint!r} is not host:port")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    return host, int(port)


class NotSentError(UnavailableError):
    """The connection closed before the request was sent: retrying it is always safe."""


class _Waiter:
    """A future for the anyio driver: ``set_result``/``set_exception`` once, then ``await``."""

    __slots__ = ("_event", "_exc", "_result")

    def __init__(self) -> None:
        self._event = anyio.Event()
        self._result: Any = None
        self._exc: BaseException | None = None

    def done(self) -> bool:
        """Whether a result or exception was set."""
        return self._event.is_set()

    def set_result(self, result: Any) -> None:
        """Resolve with ``result``."""
        if not self._event.is_set():
            self._result = result
            self._event.set()

    def set_exception(self, exc: BaseException) -> None:
        """Resolve with ``exc``."""
        if not self._event.is_set():
            self._exc = exc
            self._event.set()

    def __await__(self) -> Generator[Any, None, Any]:
        """Wait for the resolution; return the result or raise the exception."""
        yield from self._event.wait().__await__()
        if self._exc is not None:
            raise self._exc
        return self._result


class ClientStream:
    """The items of one streaming request, in arrival order; an async iterator.

    Closing it (``aclose``) before the end sends ``cancel`` to the server. At most
    ``CLIENT_MAX_STREAM_BUFFERED_ITEMS`` unread items are held: a consumer that falls further
    behind (or a stream that was abandoned without being closed) has its stream cancelled, and
    gets ``resource_exhausted`` after the buffered items, so it never stalls the connection.
    """

    __slots__ = (
        "conn",
        "error",
        "finished",
        "items",
        "method",
        "result",
        "rid",
        "waiter",
    )

    def __init__(self, conn: Connection, rid: int, method: str) -> None:
        self.conn = conn
        self.rid = rid
        self.method = method
        self.items: deque[Any] = deque()
        self.finished = False
        self.result: Any = None
        self.error: BaseException | None = None
        self.waiter: Any = None

    def done(self) -> bool:
        """Whether the stream has ended (or was closed)."""
        return self.finished

    def _wake(self) -> None:
        """Wake a consumer waiting in :meth:`__anext__`."""
        waiter = self.waiter
        if waiter is not None:
            self.waiter = None
            if not waiter.done():  # its consumer may have been cancelled
                waiter.set_result(None)

    def push(self, item: Any) -> None:
        """Add an item received from the server."""
        items = self.items
        items.append(item)
        if len(items) >= CLIENT_MAX_STREAM_BUFFERED_ITEMS:
            self.conn._forget(self.rid)
            self.set_exception(
                ResourceExhaustedError(
                    f"{self.method} stream cancelled: its consumer fell "
                    f"{len(items)} items behind (CLIENT_MAX_STREAM_BUFFERED_ITEMS)",
                    limit=CLIENT_MAX_STREAM_BUFFERED_ITEMS,
                )
            )
        self._wake()

    def set_result(self, result: Any) -> None:
        """The server ended the stream normally."""
        self.finished = True
        self.result = result
        self._wake()

    def set_exception(self, exc: BaseException) -> None:
        """The stream ended with an error (or the connection was lost)."""
        self.finished = True
        self.error = exc
        self._wake()

    def __aiter__(self) -> ClientStream:
        """Return self."""
        return self

    async def __anext__(self) -> Any:
        """Return the next item; raise the stream's error, or stop at its end."""
        while True:
            items = self.items
            if items:
                return items.popleft()
            if self.finished:
                if self.error is not None:
                    raise self.error
                raise StopAsyncIteration
            waiter = self.waiter = self.conn._new_waiter()
            await waiter

    async def aclose(self) -> None:
        """Stop the stream; tell the server to cancel it if it is still running."""
        self.items.clear()
        if not self.finished:
            self.finished = True
            self.conn._forget(self.rid)
        self._wake()


class Connection:
    """One connection to one endpoint; see :func:`open_connection`."""

    def __init__(self, endpoint: str) -> None:
        self.endpoint = endpoint
        self.pending: dict[int, Any] = {}
        self.wire = WireConnection(Role.CLIENT)
        self.closed = False
        #: The server's hello reply (``node_id``, ``server``, ``features``).
        self.server_hello: dict[str, Any] = {}
        self.hello_waiter: Any = None
        self.close_when_idle = False
        #: The server's node id from its TLS certificate (``None`` on plain TCP).
        self.server_node_id: str | None = None
        self._ids = itertools.count(1)
        #: Unary requests in flight and the bytes of their frames (flow control).
        self.inflight = 0
        self.inflight_bytes = 0
        self.max_inflight = CLIENT_MAX_INFLIGHT_PER_CONNECTION
        self.max_inflight_bytes = CLIENT_MAX_INFLIGHT_REQUEST_BYTES
        #: Calls waiting for room, oldest first.
        self.room_waiters: deque[Any] = deque()

    # ------------------------------------------------------------------ driver hooks
    def _send(self, data: bytes) -> None:
        """Queue one encoded frame for sending."""
        raise NotImplementedError

    def _new_waiter(self) -> Any:
        """Return a fresh future-like waiter."""
        raise NotImplementedError

    async def _wait(self, waiter: Any, timeout: float, what: str) -> Any:
        """Await ``waiter`` for at most ``timeout`` seconds (then raise ``timeout``)."""
        raise NotImplementedError

    def _close_transport(self) -> None:
        """Close the socket (its loss is reported through :meth:`_lost`)."""
        raise NotImplementedError

    # ------------------------------------------------------------------ requests
    async def hello(self, token: str | None, timeout: float) -> dict[str, Any]:
        """Say hello with ``token``; return the server's hello or raise its error."""
        self.hello_waiter = self._new_waiter()
        self._send(self.wire.send(Hello({"token": token, "client": CLIENT_NAME, "features": []})))
        self.server_hello = await self._wait(self.hello_waiter, timeout, "hello")
        return self.server_hello

    async def request(self, method: str, params: dict[str, Any], timeout: float) -> Any:
        """Send one request and return its result (or raise its error).

        Waits for room on the connection (as long as the requests ahead make progress:
        when one of them times out, the waiting ones fail with ``timeout`` too), then up to
        ``timeout`` for the answer. Raises :class:`NotSentError` if the connection closed
        before the request went out.
        """
        if self.closed:
            raise self._not_sent_error()
        rid = next(self._ids)
        data = self.wire.send(Request(rid, method, params))
        size = len(data)
        if not self._has_room(size):
            await self._wait_for_room()
        self.inflight += 1
        self.inflight_bytes += size
        try:
            waiter = self._new_waiter()
            self.pending[rid] = waiter
            self._send(data)
            try:
                return await self._wait(waiter, timeout, method)
            except AspenTimeoutError as exc:
                self._fail_room_waiters(exc)
                raise
            finally:
                self._forget(rid)
        finally:
            self.inflight -= 1
            self.inflight_bytes -= size
            self._wake_room()

    def _has_room(self, size: int) -> bool:
        """Whether a request of ``size`` bytes may be sent now (one always may alone)."""
        if self.inflight == 0:
            return not self.room_waiters
        return (
            self.inflight < self.max_inflight
            and self.inflight_bytes + size <= self.max_inflight_bytes
            and not self.room_waiters
        )

    async def _wait_for_room(self) -> None:
        """Wait, in turn, until there is room to send a request."""
        waiter = self._new_waiter()
        self.room_waiters.append(waiter)
        try:
            await waiter
        except BaseException:
            if waiter in self.room_waiters:  # timed out or cancelled (rare: O(n) is fine)
                self.room_waiters.remove(waiter)
            self._wake_room()
            raise
        if self.closed:
            raise self._not_sent_error()

    def _wake_room(self) -> None:
        """Let the oldest waiting call go if there is room for it."""
        waiters = self.room_waiters
        while waiters and (self.closed or self.inflight < self.max_inflight):
            if self.inflight and self.inflight_bytes >= self.max_inflight_bytes:
                return
            waiter = waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                if not self.closed:
                    return

    def _fail_room_waiters(self, exc: AspenTimeoutError) -> None:
        """A request timed out: the calls queued behind it fail too (not sent)."""
        waiters, self.room_waiters = self.room_waiters, deque()
        for waiter in waiters:
            if not waiter.done():
                waiter.set_exception(
                    AspenTimeoutError(
                        f"not sent: a request ahead of it on {self.endpoint} timed out "
                        f"({exc.message})",
                        endpoint=self.endpoint,
                    )
                )

    def _not_sent_error(self) -> NotSentError:
        """The error for a request that never left because the connection is closed."""
        return NotSentError(
            f"connection to {self.endpoint} is closed (the request was not sent)",
            endpoint=self.endpoint,
        )

    def stream(self, method: str, params: dict[str, Any]) -> ClientStream:
        """Start a streaming request; iterate the returned stream, ``aclose`` it to cancel."""
        if self.closed:
            raise self._closed_error()
        rid = next(self._ids)
        data = self.wire.send(Request(rid, method, params))
        stream = ClientStream(self, rid, method)
        self.pending[rid] = stream
        self._send(data)
        return stream

    def _forget(self, rid: int) -> None:
        """Drop ``rid``; if it was still unanswered, ask the server to cancel it."""
        if self.pending.pop(rid, None) is not None and not self.closed:
            self._send(self.wire.send(Cancel(rid)))
        if self.close_when_idle and not self.pending:
            self.close()

    def _closed_error(self) -> UnavailableError:
        """The error for using a closed connection."""
        return UnavailableError(f"connection to {self.endpoint} is closed", endpoint=self.endpoint)

    # ------------------------------------------------------------------ input
    def _on_data(self, data: bytes | memoryview) -> None:
        """Parse received bytes and resolve the waiters they answer."""
        try:
            events = self.wire.receive_data(data)
        except WireError as exc:
            self._lost(
                UnavailableError(f"bad frame from {self.endpoint}: {exc}", endpoint=self.endpoint)
            )
            self._close_transport()
            return
        pending = self.pending
        for event in events:
            kind = type(event)
            if kind is Item:
                target = pending.get(event.id)  # type: ignore[attr-defined]
                if type(target) is ClientStream:
                    target.push(event.item)  # type: ignore[attr-defined]
                continue
            if kind is Hello or kind is ConnectionFailed:
                self._on_connection_event(event)
                continue
            target = pending.pop(event.id, None)  # type: ignore[attr-defined]
            if target is None or target.done():  # timed out or cancelled meanwhile
                continue
            if kind is Failure:
                target.set_exception(event.error)  # type: ignore[attr-defined]
            else:
                target.set_result(event.result)  # type: ignore[attr-defined]
        if self.close_when_idle and not pending:
            self.close()

    def _on_connection_event(self, event: Any) -> None:
        """The server's hello (resolve the hello waiter) or its connection-level error."""
        waiter, self.hello_waiter = self.hello_waiter, None
        if type(event) is Hello:
            if waiter is not None and not waiter.done():  # else: timed out already
                version = event.version
                waiter.set_result({"type": "hello", "version": version, **event.fields})
        elif waiter is not None:
            if not waiter.done():
                waiter.set_exception(event.error)
        else:
            self._lost(event.error)

    def _lost(self, exc: AspenError) -> None:
        """The connection is gone: fail every waiter with ``exc``."""
        self.closed = True
        waiter, self.hello_waiter = self.hello_waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_exception(exc)
        pending, self.pending = self.pending, {}
        for target in pending.values():
            if not target.done():
                # one instance per waiter: each is raised (and gets a traceback) separately
                target.set_exception(type(exc)(exc.message, **exc.details))
        self._wake_room()

    def _lost_error(self, cause: BaseException | None) -> UnavailableError:
        """The error in-flight requests get when the connection drops."""
        reason = f": {cause}" if cause else ""
        if self.hello_waiter is not None and self.server_node_id is None:
            reason += (
                " before it answered the hello (a cluster node takes TLS only: use the "
                "cluster's token, aspen1.<ca-key>.<secret>)"
            )
        return UnavailableError(
            f"connection to {self.endpoint} lost{reason}", endpoint=self.endpoint
        )

    # ------------------------------------------------------------------ closing
    def close(self) -> None:
        """Close the connection; in-flight requests fail with ``unavailable``."""
        if not self.closed:
            self._lost(self._closed_error())
        self._close_transport()

    async def aclose(self) -> None:
        """Close the connection (async form of :meth:`close`)."""
        self.close()


class _AsyncioConnection(Connection, FramedProtocol):
    """A connection on the shared asyncio adapter (no tasks of its own)."""

    def __init__(self, endpoint: str, loop: asyncio.AbstractEventLoop) -> None:
        Connection.__init__(self, endpoint)
        FramedProtocol.__init__(self, loop)
        #: waiter -> (deadline, what, timeout): one timer per connection, not per request.
        self.deadlines: dict[Any, tuple[float, str, float]] = {}
        self.timer: asyncio.TimerHandle | None = None
        self.timer_at = _INF

    def received(self, data: memoryview) -> None:
        """Feed received bytes."""
        self._on_data(data)

    def lost(self, exc: Exception | None) -> None:
        """Fail everything still waiting."""
        if not self.closed:
            self._lost(self._lost_error(exc))
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None

    def _send(self, data: bytes) -> None:
        """Write at once when this is the only request in flight, else coalesce the frames
        queued in this loop iteration into one write."""
        self.wire.bytes_queued -= len(data)  # the transport's buffer counts from here
        if self._flush_pending or len(self.pending) > 1:
            self.queue(data)
            return
        transport = self.transport
        if transport is not None and not transport.is_closing():
            transport.write(data)

    def _new_waiter(self) -> asyncio.Future[Any]:
        """An asyncio future."""
        return self.loop.create_future()

    async def _wait(self, waiter: Any, timeout: float, what: str) -> Any:
        """Await the future; deadlines share one timer per connection (re-armed lazily)."""
        deadline = self.loop.time() + timeout
        deadlines = self.deadlines
        deadlines[waiter] = (deadline, what, timeout)
        if deadline < self.timer_at:
            self._arm(deadline)
        try:
            return await waiter
        finally:
            del deadlines[waiter]

    def _arm(self, when: float) -> None:
        """(Re)arm the deadline timer for ``when``."""
        if self.timer is not None:
            self.timer.cancel()
        self.timer = self.loop.call_at(when, self._check_deadlines)
        self.timer_at = when

    def _check_deadlines(self) -> None:
        """Fail every waiter past its deadline; re-arm for the earliest remaining one."""
        self.timer = None
        self.timer_at = _INF
        now = self.loop.time()
        earliest = _INF
        for waiter, (deadline, what, timeout) in list(self.deadlines.items()):
            if deadline <= now:
                _expire(waiter, what, timeout, self.endpoint)
            elif deadline < earliest:
                earliest = deadline
        if earliest < _INF and not self.closed:
            self._arm(earliest)

    def _close_transport(self) -> None:
        """Close the transport after writing what is queued."""
        if self.transport is not None:
            self.flush()
            self.transport.close()


def _nothing() -> None:
    """Nothing to do after a send."""


def _expire(waiter: Any, what: str, timeout: float, endpoint: str) -> None:
    """Fail ``waiter`` with ``timeout`` if it is still waiting."""
    if not waiter.done():
        waiter.set_exception(
            AspenTimeoutError(
                f"{what} to {endpoint} did not complete within {timeout:g} s",
                endpoint=endpoint,
                timeout=timeout,
            )
        )


class _AnyioConnection(Connection):
    """A connection on the shared anyio adapter (a reader and a writer task)."""

    def __init__(self, endpoint: str, stream: anyio.abc.ByteStream) -> None:
        super().__init__(endpoint)
        self.io = StreamAdapter(stream, _READ_CHUNK_BYTES)
        self.scope = anyio.CancelScope()

    async def run(self) -> None:
        """Read and write until the connection closes; report its loss."""
        cause: BaseException | None = None
        with self.scope:
            try:
                async with anyio.create_task_group() as tg:
                    tg.start_soon(self.io.write_loop, self.io.take_queued, _nothing)
                    with contextlib.suppress(
                        anyio.EndOfStream, anyio.BrokenResourceError, anyio.ClosedResourceError
                    ):
                        await self.io.read_loop(self._on_data)
                    tg.cancel_scope.cancel()
            except Exception as exc:
                cause = exc
        if not self.closed:
            self._lost(self._lost_error(cause))
        with anyio.CancelScope(shield=True):
            await self.io.stream.aclose()

    def _send(self, data: bytes) -> None:
        """Queue ``data`` for the writer."""
        self.wire.bytes_queued -= len(data)  # the adapter's queue counts from here
        self.io.queue(data)

    def _new_waiter(self) -> _Waiter:
        """An anyio-based waiter."""
        return _Waiter()

    async def _wait(self, waiter: Any, timeout: float, what: str) -> Any:
        """Await ``waiter`` under a ``move_on_after`` deadline."""
        with anyio.move_on_after(timeout):
            return await waiter
        _expire(waiter, what, timeout, self.endpoint)
        return await waiter

    def _close_transport(self) -> None:
        """Stop the reader and writer (the stream is closed by :meth:`run`)."""
        self.scope.cancel()


@functools.cache
def _tls_context() -> ssl.SSLContext:
    """The client TLS context (shared: it holds no keys, the pin is checked per connection)."""
    from aspen.transport.tls import client_context  # cryptography: only for cluster tokens

    return client_context()


def _tls_failed(endpoint: str, exc: BaseException) -> UnavailableError:
    """The error for a failed TLS handshake."""
    reason = exc.reason if isinstance(exc, ssl.SSLError) and exc.reason else exc
    return UnavailableError(
        f"TLS handshake with {endpoint} failed ({reason}); does it serve a cluster? "
        "A node started without `aspen cluster init` takes its aspen_... token over plain TCP",
        endpoint=endpoint,
    )


async def open_connection(
    endpoint: str,
    token: str | None,
    *,
    connect_timeout: float,
    hello_timeout: float,
    task_group: anyio.abc.TaskGroup | None = None,
) -> Connection:
    """Connect to ``endpoint`` and say hello; raise the server's error if it refuses.

    A cluster token (``aspen1.``) makes the connection TLS, pinned to the token's CA key.
    Under asyncio no task is needed; other backends need ``task_group`` to run the
    connection's reader and writer in.
    """
    host, port = parse_endpoint(endpoint)
    try:
        cluster = parse_cluster_token(token) if token else None
    except ValueError as exc:
        raise InvalidArgumentError(f"malformed token: {exc}") from None
    tls = _tls_context() if cluster is not None else None
    conn: Connection
    try:
        if running_on_asyncio():
            loop = asyncio.get_running_loop()
            extra: dict[str, Any] = {}
            if tls is not None:
                extra = {"ssl": tls, "ssl_handshake_timeout": connect_timeout}
            with anyio.fail_after(connect_timeout):
                transport, conn = await loop.create_connection(
                    lambda: _AsyncioConnection(endpoint, loop), host, port, **extra
                )
            ssl_object = transport.get_extra_info("ssl_object")
        else:
            if task_group is None:
                raise RuntimeError("open_connection needs a task group outside asyncio")
            with anyio.fail_after(connect_timeout):
                stream = await anyio.connect_tcp(
                    host,
                    port,
                    ssl_context=tls,  # type: ignore[arg-type]  # None: plain TCP
                    tls_standard_compatible=False,
                )
            from anyio.streams.tls import TLSAttribute

            ssl_object = stream.extra(TLSAttribute.ssl_object, None)
            conn = _AnyioConnection(endpoint, stream)
            task_group.start_soon(conn.run)
    except ssl.SSLError as exc:
        raise _tls_failed(endpoint, exc) from exc
    try:
        if cluster is not None:
            from aspen.transport.tls import verify_server_certificate

            conn.server_node_id = verify_server_certificate(
                ssl_object, cluster.ca_public_raw, endpoint=endpoint
            )
        await conn.hello(token, hello_timeout)
    except BaseException:
        conn.close()
        raise
    return conn
