"""The client protocol server (docs/protocol.md).

:class:`RpcServer` accepts client connections and serves the methods of a
:class:`~aspen.rpc.registry.MethodRegistry`. The protocol logic lives in
:class:`~aspen.rpc.session.ServerSession`; this module supplies two I/O drivers:

* ``asyncio``: an ``asyncio.Protocol`` per connection, one ``loop.create_task`` per
  request and one coalesced ``transport.write`` per loop iteration. Chosen automatically
  when the node runs on asyncio or uvloop; measured several times cheaper per request than
  anyio byte streams with ``TaskGroup.start_soon`` (about 15 µs per spawn alone).
* ``anyio``: portable (trio), on anyio byte streams with a reader, a writer and one task
  per request in a per-connection task group.

Both are driven from :meth:`RpcServer.serve`, an anyio coroutine that runs until cancelled.
With an ``ssl_context`` (a cluster node: :func:`aspen.transport.tls.server_context`) every
connection is TLS 1.3: asyncio's SSL transport on the first driver, anyio's ``TLSStream``
on the second; the handshake must finish within the hello timeout.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import ssl
from collections.abc import Callable, Coroutine, Sequence
from typing import Any, Literal

import anyio
import anyio.abc

from aspen.auth.access import Authority
from aspen.errors import (
    AspenError,
    ResourceExhaustedError,
    UnauthorizedError,
)
from aspen.errors import TimeoutError as AspenTimeoutError
from aspen.limits import (
    HELLO_TIMEOUT_SECONDS,
    MAX_CLIENT_CONNECTIONS,
    MAX_FRAME_BYTES,
    MAX_INFLIGHT_PER_CONNECTION,
    MAX_INFLIGHT_REQUEST_BYTES_PER_CONNECTION,
    MAX_QUEUED_REPLY_BYTES_PER_CONNECTION,
    MAX_UNREAD_REPLY_BYTES_PER_CONNECTION,
)
from aspen.rpc.registry import MethodRegistry
from aspen.rpc.session import Cancellable, ServerSession
from aspen.transport.aio import FramedProtocol
from aspen.transport.framed import LINK_ERRORS, StreamAdapter, describe_error, wrap_tls
from aspen.transport.framing import running_on_asyncio

__all__ = ["READ_CHUNK_BYTES", "SHUTDOWN_GRACE_SECONDS", "Driver", "RpcServer"]

log = logging.getLogger("aspen.rpc")

#: Bytes asked for per receive on the anyio driver.
READ_CHUNK_BYTES = 64 * 1024
#: Seconds :meth:`RpcServer.serve` waits for cancelled handlers when it stops.
SHUTDOWN_GRACE_SECONDS = 5.0
#: Seconds a closing connection may take to flush its last frames (the anyio driver).
_CLOSE_FLUSH_SECONDS = 1.0
#: Stream items queued in one loop iteration before they are handed to the transport.
_STREAM_BATCH_FRAMES = 64

Driver = Literal["auto", "asyncio", "anyio"]


def _server_version() -> str:
    """Return ``aspen/<version>`` for the hello reply."""
    from aspen import __version__

    return f"aspen/{__version__}"


class RpcServer:
    """Serves the client protocol for one node; see :meth:`serve`."""

    def __init__(
        self,
        registry: MethodRegistry,
        *,
        node: Any,
        authenticate: Callable[[str | None], Authority | str | None],
        node_id: str,
        features: Sequence[str] = (),
        max_connections: int = MAX_CLIENT_CONNECTIONS,
        max_inflight: int = MAX_INFLIGHT_PER_CONNECTION,
        max_queued_bytes: int = MAX_QUEUED_REPLY_BYTES_PER_CONNECTION,
        max_unread_bytes: int = MAX_UNREAD_REPLY_BYTES_PER_CONNECTION,
        max_request_bytes: int = MAX_INFLIGHT_REQUEST_BYTES_PER_CONNECTION,
        max_frame: int = MAX_FRAME_BYTES,
        hello_timeout: float = HELLO_TIMEOUT_SECONDS,
        driver: Driver = "auto",
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        self.registry = registry
        self.node = node
        self.authenticate = authenticate
        self.node_id = node_id
        self.features = tuple(features)
        self.max_connections = max_connections
        self.max_inflight = max_inflight
        #: Queued reply bytes above which a connection is not read (back-pressure).
        self.max_queued_bytes = max_queued_bytes
        #: Queued reply bytes at which a connection is closed (last resort).
        self.max_unread_bytes = max_unread_bytes
        #: Bytes of big requests a connection may have running.
        self.max_request_bytes = max_request_bytes
        self.max_frame = max_frame
        self.hello_timeout = hello_timeout
        self.driver = driver
        #: TLS for every connection when set (``None``: plain TCP, a node without a cluster).
        self.ssl_context = ssl_context
        #: The bound port once :meth:`serve` has started (useful with port 0).
        self.port: int | None = None
        self.requests = 0
        self.errors = 0
        self.internal_errors = 0
        self.connections_total = 0
        #: Streams currently waiting for a slow client to read.
        self.streams_blocked = 0
        self._sessions: set[ServerSession] = set()
        self._ids = itertools.count(1)
        #: The exception class cancellation raises on the running backend.
        self.cancel_exc: type[BaseException] = asyncio.CancelledError
        #: The session interface (:class:`~aspen.rpc.session.SessionHost`): handler lookup.
        self.handler = registry.get
        self._hello_fields = {
            "node_id": node_id,
            "server": _server_version(),
            "features": list(self.features),
        }

    def stats(self) -> dict[str, int]:
        """Return counters: open ``connections``, ``requests``, ``errors``, handler bugs
        (``internal_errors``), streams waiting for slow clients (``streams_blocked``) and
        connections not read because of back-pressure (``connections_paused``)."""
        return {
            "connections": len(self._sessions),
            "connections_paused": sum(1 for s in self._sessions if s.reading_paused),
            "connections_total": self.connections_total,
            "requests": self.requests,
            "errors": self.errors,
            "internal_errors": self.internal_errors,
            "streams_blocked": self.streams_blocked,
        }

    async def serve(
        self,
        host: str,
        port: int,
        *,
        task_status: anyio.abc.TaskStatus[int] = anyio.TASK_STATUS_IGNORED,
    ) -> None:
        """Listen on ``host:port`` and serve until cancelled; ``task_status.started(port)``."""
        self.cancel_exc = anyio.get_cancelled_exc_class()
        driver = self.driver
        if driver == "auto":
            driver = "asyncio" if running_on_asyncio() else "anyio"
        if driver == "asyncio":
            await self._serve_asyncio(host, port, task_status)
        else:
            await self._serve_anyio(host, port, task_status)

    # ------------------------------------------------------------------ SessionHost
    def new_connection_id(self) -> int:
        """Return a new connection id and count the connection."""
        self.connections_total += 1
        return next(self._ids)

    def method_names(self) -> list[str]:
        """Every registered method name."""
        return self.registry.names()

    def hello_fields(self) -> dict[str, Any]:
        """The fields of this server's hello reply (node id, version, features)."""
        return self._hello_fields

    def check_token(self, token: object) -> Authority:
        """Return what ``token`` allows or raise ``unauthorized`` (an authenticator that
        answers an identity string grants everything: the root token)."""
        if token is not None and not isinstance(token, str):
            raise UnauthorizedError("the hello 'token' must be a string")
        try:
            identity = self.authenticate(token)
        except AspenError:
            raise
        except Exception as exc:
            log.error("token check failed", exc_info=exc)
            raise UnauthorizedError("the token could not be checked (see the node log)") from exc
        if identity is None:
            if not token:
                raise UnauthorizedError(
                    "no token given: pass token=... or set ASPEN_TOKEN (a node's root token is the "
                    "file root-token in its data directory)"
                )
            raise UnauthorizedError("the token is not valid on this node")
        return Authority(identity) if isinstance(identity, str) else identity

    def _admit(self, session: ServerSession) -> bool:
        """Track a new session; refuse it (and return False) over the connection limit."""
        self._sessions.add(session)
        if len(self._sessions) > self.max_connections:
            session.fail(
                ResourceExhaustedError(
                    f"too many client connections (MAX_CLIENT_CONNECTIONS = "
                    f"{self.max_connections}); retry later",
                    limit=self.max_connections,
                )
            )
            return False
        return True

    def _hello_timeout_error(self) -> AspenError:
        """The error sent to a connection that never said hello."""
        return AspenTimeoutError(f"no hello within {self.hello_timeout} s; closing")

    # ------------------------------------------------------------------ asyncio driver
    async def _serve_asyncio(
        self, host: str, port: int, task_status: anyio.abc.TaskStatus[int]
    ) -> None:
        """Serve with one ``asyncio.Protocol`` per connection."""
        loop = asyncio.get_running_loop()
        tls: dict[str, Any] = {}
        if self.ssl_context is not None:
            tls = {"ssl": self.ssl_context, "ssl_handshake_timeout": self.hello_timeout}
        server = await loop.create_server(
            lambda: _AsyncioSession(self, loop), host, port, backlog=1024, **tls
        )
        try:
            self.port = server.sockets[0].getsockname()[1]
            task_status.started(self.port)
            await anyio.sleep_forever()
        finally:
            server.close()
            sessions = list(self._sessions)
            tasks = [t for s in sessions for t in s.inflight.values()]
            for session in sessions:
                session.abort()
            if tasks:
                with anyio.CancelScope(shield=True):
                    await asyncio.wait(tasks, timeout=SHUTDOWN_GRACE_SECONDS)  # type: ignore[type-var]

    # ------------------------------------------------------------------ anyio driver
    async def _serve_anyio(
        self, host: str, port: int, task_status: anyio.abc.TaskStatus[int]
    ) -> None:
        """Serve on anyio byte streams (portable: trio and asyncio)."""
        listener = await anyio.create_tcp_listener(local_host=host, local_port=port)
        async with listener:
            self.port = listener.extra(anyio.abc.SocketAttribute.local_port)
            task_status.started(self.port)
            await listener.serve(self._serve_anyio_connection)

    async def _serve_anyio_connection(self, stream: anyio.abc.SocketStream) -> None:
        """Serve one connection until it closes; never raises."""
        try:
            host, port = stream.extra(anyio.abc.SocketAttribute.remote_address)[:2]  # type: ignore[str-unpack]
            peer = f"{host}:{port}"
        except Exception:
            peer = "?"
        if self.ssl_context is not None:
            try:
                with anyio.fail_after(self.hello_timeout):
                    stream = await wrap_tls(stream, self.ssl_context, server_side=True)  # type: ignore[assignment]
            except LINK_ERRORS as exc:
                log.debug("TLS handshake with client %s failed: %s", peer, describe_error(exc))
                await anyio.aclose_forcefully(stream)
                return
        try:
            async with stream, anyio.create_task_group() as tg:
                session = _AnyioSession(self, stream, peer, tg)
                try:
                    tg.start_soon(session.write_loop)
                    if self._admit(session):
                        tg.start_soon(session.hello_watchdog)
                        await session.read_loop()
                finally:
                    self._sessions.discard(session)
        except Exception as exc:  # a bug here must not take the listener down
            log.error("client connection from %s failed", peer, exc_info=exc)


class _AsyncioSession(ServerSession, FramedProtocol):
    """A session on the shared asyncio adapter."""

    server: RpcServer

    def __init__(self, server: RpcServer, loop: asyncio.AbstractEventLoop) -> None:
        FramedProtocol.__init__(self, loop)
        self._server = server
        self.writable_waiter: asyncio.Future[None] | None = None
        self.hello_timer: asyncio.TimerHandle | None = None

    def made(self) -> None:
        """Start the session: connection limit, hello timer."""
        assert self.transport is not None
        peername = self.transport.get_extra_info("peername")
        peer = f"{peername[0]}:{peername[1]}" if peername else "?"
        ServerSession.__init__(self, self._server, peer)
        if self.server._admit(self):
            self.hello_timer = self.loop.call_later(self.server.hello_timeout, self._hello_expired)

    def _hello_expired(self) -> None:
        """Close a connection that did not say hello in time."""
        if self.ctx is None:
            self.fail(self.server._hello_timeout_error())

    def _hello_done(self) -> None:
        """Stop the hello timer."""
        if self.hello_timer is not None:
            self.hello_timer.cancel()
            self.hello_timer = None

    def received(self, data: memoryview) -> None:
        """Feed received bytes to the session."""
        try:
            self.on_data(data)
        except Exception as exc:  # a bug in the session: drop this connection only
            log.error("client connection %s failed", self.peer, exc_info=exc)
            self.abort()

    def lost(self, exc: Exception | None) -> None:
        """Cancel what is running and forget the session."""
        self.server._sessions.discard(self)
        self._hello_done()
        if not self.closed:
            self.closed = True
            self._cancel_all()
        self._wake_writable()

    def write_resumed(self) -> None:
        """The transport drained: write held frames and wake streams."""
        if self.out and not self.closed:
            self.transport.write(self.take_output())  # type: ignore[union-attr]
        self._wake_writable()
        if not self.closed:
            self.output_drained()

    def _wake_writable(self) -> None:
        """Wake streams waiting for the transport to drain."""
        waiter = self.writable_waiter
        if waiter is not None:
            self.writable_waiter = None
            if not waiter.done():
                waiter.set_result(None)

    def send_bytes(self, data: bytes) -> None:
        """Write at once when nothing else is in flight or queued, else coalesce."""
        if self.inflight or self.flush_pending or self.paused or self.closed:
            ServerSession.send_bytes(self, data)
        else:
            self.budget.replied(len(data))
            self.wire.bytes_queued -= len(data)  # straight to the transport
            self.transport.write(data)  # type: ignore[union-attr]
            self.output_drained()  # the socket may have taken it all: no resume_writing then

    def _transport_buffered(self) -> int:
        """What the transport holds (asyncio pauses writing above its high-water mark)."""
        return self.write_buffered

    def _spawn(self, coro: Coroutine[Any, Any, None], rid: int) -> Cancellable:
        """Run the request in a plain asyncio task."""
        return self.loop.create_task(coro)

    def _cancel_request(self, rid: int, handle: Cancellable) -> None:
        """Cancel the task; if it is cancelled before it ever ran, its runner cannot
        answer, so a done callback does (a no-op when the runner already did)."""
        handle.cancel()
        handle.add_done_callback(lambda _: self._finish_canceled(rid))  # type: ignore[attr-defined]

    def _schedule_flush(self) -> None:
        """Write every frame queued in this loop iteration in one go, soon."""
        self.loop.call_soon(self._flush)

    def _flush(self) -> None:
        """Write queued frames unless the transport asked us to hold them."""
        self.flush_pending = False
        if self.out and not self.closed and not self.paused:
            self.transport.write(self.take_output())  # type: ignore[union-attr]
            self.output_drained()  # the socket may have taken it all: no resume_writing then

    def _pause_reading(self) -> None:
        """Too many requests in flight: stop reading."""
        self.transport.pause_reading()  # type: ignore[union-attr]

    def _resume_reading(self) -> None:
        """Room again: read."""
        self.transport.resume_reading()  # type: ignore[union-attr]

    def _writable(self) -> bool:
        """Whether a stream may queue another item: the transport is not full and the
        frames queued in this loop iteration are few."""
        return not self.paused and len(self.out) < _STREAM_BATCH_FRAMES

    async def _wait_writable(self) -> None:
        """Hand queued frames to the transport now; wait if that filled it up."""
        if not self.paused and self.out and not self.closed:
            self.transport.write(self.take_output())  # type: ignore[union-attr]
        if self.paused and not self.closed:
            if self.writable_waiter is None:
                self.writable_waiter = self.loop.create_future()
            await asyncio.shield(self.writable_waiter)

    def _close_transport(self, *, flush: bool) -> None:
        """Close (after the queued frames if ``flush``) or abort the transport."""
        self._hello_done()
        self._wake_writable()
        transport = self.transport
        if transport is None:
            return
        if flush:
            if self.out:
                transport.write(self.take_output())
            transport.close()
        else:
            self.out.clear()
            transport.abort()


class _AnyioSession(ServerSession):
    """A session on the shared anyio adapter (a reader and a writer task)."""

    server: RpcServer

    def __init__(
        self,
        server: RpcServer,
        stream: anyio.abc.SocketStream,
        peer: str,
        tg: anyio.abc.TaskGroup,
    ) -> None:
        super().__init__(server, peer)
        self.io = StreamAdapter(stream, READ_CHUNK_BYTES)
        self.tg = tg
        self.drained: anyio.Event | None = None
        self.flush_on_close = True
        self.hello_scope = anyio.CancelScope()

    async def read_loop(self) -> None:
        """Feed received chunks to the session until EOF or close."""
        with contextlib.suppress(
            anyio.EndOfStream, anyio.BrokenResourceError, anyio.ClosedResourceError, OSError
        ):
            await self.io.read_loop(self.on_data)
        self.abort()

    async def write_loop(self) -> None:
        """Send every queued frame in one ``send``; close the stream when told."""
        try:
            await self.io.write_loop(self._take, self._sent)
        except (anyio.BrokenResourceError, anyio.ClosedResourceError, OSError):
            self.abort()
            return
        if self.flush_on_close and self.out:
            with anyio.move_on_after(_CLOSE_FLUSH_SECONDS), contextlib.suppress(Exception):
                await self.io.stream.send(self.take_output())
        self.tg.cancel_scope.cancel()

    def _take(self) -> bytes | None:
        """What the writer sends next (None once the session is closed)."""
        if self.closed:
            return None
        self.flush_pending = False
        return self.take_output() if self.out else b""

    def _sent(self) -> None:
        """A batch went out: wake streams waiting for room, maybe read again."""
        drained = self.drained
        if drained is not None:
            self.drained = None
            drained.set()
        self.output_drained()

    async def hello_watchdog(self) -> None:
        """Close the connection if it has not said hello in time."""
        with self.hello_scope:
            await anyio.sleep(self.server.hello_timeout)
            if self.ctx is None:
                self.fail(self.server._hello_timeout_error())

    def _hello_done(self) -> None:
        """Stop the hello watchdog."""
        self.hello_scope.cancel()

    def _spawn(self, coro: Coroutine[Any, Any, None], rid: int) -> Cancellable:
        """Run the request in the connection's task group under its own cancel scope."""
        scope = anyio.CancelScope()
        self.tg.start_soon(_run_in_scope, scope, coro)
        return scope

    def _schedule_flush(self) -> None:
        """Wake the writer."""
        self.io.wake()

    def _pause_reading(self) -> None:
        """Make the reader wait for room."""
        self.io.pause_reading()

    def _resume_reading(self) -> None:
        """Let the reader go on."""
        self.io.resume_reading()

    def _writable(self) -> bool:
        """Whether the queued reply bytes are within the connection's bound."""
        return not self.budget.over(self.queued_bytes())

    def _transport_buffered(self) -> int:
        """The bytes of the ``send`` in progress."""
        return self.io.sending

    async def _wait_writable(self) -> None:
        """Wait for the writer to send a batch."""
        while not self.closed and not self._writable():
            if self.drained is None:
                self.drained = anyio.Event()
            await self.drained.wait()

    def _close_transport(self, *, flush: bool) -> None:
        """Have the writer flush (if ``flush``) and then tear the connection down."""
        self.hello_scope.cancel()
        self.io.resume_reading()
        if self.drained is not None:
            self.drained.set()
        if flush:
            self.flush_on_close = True
            self.io.wake()
        else:
            self.out.clear()
            self.tg.cancel_scope.cancel()


async def _run_in_scope(scope: anyio.CancelScope, coro: Coroutine[Any, Any, None]) -> None:
    """Await ``coro`` inside ``scope`` (which the session may cancel)."""
    with scope:
        await coro
