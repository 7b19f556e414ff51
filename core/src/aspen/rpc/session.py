"""One client connection's request handling, independent of the I/O driver.

:class:`ServerSession` feeds received bytes to the sans-IO wire machine
(:class:`~aspen.transport.wire.WireConnection`: parsing, hello, version, frame limits),
dispatches the requests it yields, and turns handler results into queued frames. It talks to
its server only through :class:`SessionHost` (handlers, token check, hello fields, limits,
counters). Two drivers in :mod:`aspen.rpc.server` supply the I/O: an asyncio
``Protocol`` (the fast path when the node runs on asyncio or uvloop) and a portable one on
anyio byte streams (trio). A driver implements ``_spawn``, ``_schedule_flush``,
``_pause_reading``, ``_resume_reading``, ``_wait_writable``, ``_transport_buffered`` and
``_close_transport``, and calls :meth:`ServerSession.output_drained` when the socket took
queued bytes.

Back-pressure is by bytes (:class:`~aspen.rpc.flow.ReplyBudget`): decoded requests wait in
``held`` while the connection's queued reply bytes and running handlers leave no room, and
the socket is not read while anything is held (or the queue is over its bound). So a client
that pipelines faster than it reads is slowed down by TCP, never buffered for.

Invariants:

* ``inflight`` holds every request whose handler has not finished; a request leaves it
  exactly once, by the code that sends its final frame.
* ``canceled`` holds ids whose cancellation the client asked for and whose canceled reply
  is not sent yet; the handler's runner sends it when the cancellation reaches it.
* Nothing is sent once ``closed`` is set.
* ``wire.bytes_queued`` is the size of ``out``; reading is paused whenever ``held`` is not empty.
* ``request_bytes`` is the sum of ``request_sizes``: the big requests in ``inflight``.
"""

from __future__ import annotations

import contextlib
import logging
from collections import deque
from collections.abc import Coroutine
from typing import TYPE_CHECKING, Any, Protocol

from aspen.errors import (
    AspenError,
    InternalError,
    InvalidArgumentError,
    ResourceExhaustedError,
    UnauthorizedError,
    UnavailableError,
)
from aspen.limits import MAX_METHOD_NAME_BYTES
from aspen.rpc.context import RpcContext
from aspen.rpc.flow import TRACKED_REQUEST_BYTES, ReplyBudget
from aspen.transport.framing import FrameError
from aspen.transport.wire import (
    PROTOCOL_VERSION,
    Cancel,
    ConnectionFailed,
    Failure,
    Hello,
    InvalidRequest,
    Item,
    Request,
    Result,
    Role,
    WireConnection,
    WireError,
)

if TYPE_CHECKING:
    from aspen.auth.access import Authority
    from aspen.plugins.types import RpcHandler

__all__ = ["PROTOCOL_VERSION", "Cancellable", "ServerSession", "SessionHost"]

log = logging.getLogger("aspen.rpc")

_CANCELED_RESULT = {"canceled": True}

#: What a session holds back while there is no room: requests, cancels, bad requests.
_Held = Request | Cancel | InvalidRequest


class SessionHost(Protocol):
    """The small interface a session uses of its server (and nothing else of it)."""

    #: What handlers get as ``ctx.node``.
    node: Any
    max_frame: int
    max_inflight: int
    #: Queued reply bytes above which the connection is not read.
    max_queued_bytes: int
    #: Queued reply bytes at which the connection is closed.
    max_unread_bytes: int
    #: Bytes of big requests a connection may have running.
    max_request_bytes: int
    #: Counters the session adds to.
    requests: int
    errors: int
    internal_errors: int
    streams_blocked: int
    #: The exception class cancellation raises on the running backend.
    cancel_exc: type[BaseException]

    def new_connection_id(self) -> int:
        """A new connection id (and count the connection)."""
        ...

    def handler(self, method: str) -> RpcHandler | None:
        """The handler of ``method``, if one is registered."""
        ...

    def method_names(self) -> list[str]:
        """Every registered method name."""
        ...

    def check_token(self, token: object) -> Authority:
        """What ``token`` allows (:mod:`aspen.auth.access`), or raise ``unauthorized``."""
        ...

    def hello_fields(self) -> dict[str, Any]:
        """The fields of the server's hello reply."""
        ...


class Cancellable(Protocol):
    """What a driver's ``_spawn`` returns: something whose ``cancel()`` stops the request."""

    def cancel(self) -> Any:
        """Cancel the running request."""


class ServerSession:
    """Per-connection protocol state: hello, dispatch, cancel, outbound frames."""

    def __init__(self, server: SessionHost, peer: str) -> None:
        self.server = server
        self.peer = peer
        self.connection_id = server.new_connection_id()
        self.wire = WireConnection(
            Role.SERVER, max_frame=server.max_frame, max_queued_bytes=server.max_queued_bytes
        )
        self.handler = server.handler
        self.ctx: RpcContext | None = None
        self.inflight: dict[int, Cancellable] = {}
        self.canceled: set[int] = set()
        #: Ids in ``inflight`` that are streams (paced by ``_wait_writable``, not the budget).
        self.streams: set[int] = set()
        self.out: list[bytes] = []
        #: Decoded events waiting for room to be dispatched (at most one read's worth).
        self.held: deque[_Held] = deque()
        #: Size of each big running request (``TRACKED_REQUEST_BYTES`` or more), and their sum.
        self.request_sizes: dict[int, int] = {}
        self.request_bytes = 0
        self.dispatching = False
        self.budget = ReplyBudget(
            server.max_queued_bytes,
            server.max_inflight,
            request_limit=server.max_request_bytes,
        )
        self.flush_pending = False
        self.reading_paused = False
        self.closed = False
        self.cancel_exc: type[BaseException] = server.cancel_exc

    # ------------------------------------------------------------------ driver hooks
    def _spawn(self, coro: Coroutine[Any, Any, None], rid: int) -> Cancellable:
        """Run ``coro`` concurrently; return its cancel handle."""
        raise NotImplementedError

    def _schedule_flush(self) -> None:
        """Arrange for ``self.out`` to be written soon (coalescing ready frames)."""
        raise NotImplementedError

    def _pause_reading(self) -> None:
        """Stop reading from the socket until :meth:`_resume_reading`."""
        raise NotImplementedError

    def _resume_reading(self) -> None:
        """Start reading again after :meth:`_pause_reading`."""
        raise NotImplementedError

    def _writable(self) -> bool:
        """Whether a stream may send another item without waiting."""
        return True

    async def _wait_writable(self) -> None:
        """Wait until the peer has drained enough outbound frames."""

    def _close_transport(self, *, flush: bool) -> None:
        """Close the socket, after writing queued frames if ``flush``."""
        raise NotImplementedError

    def _transport_buffered(self) -> int:
        """Bytes handed to the socket layer but not yet taken by the peer."""
        return 0

    # ------------------------------------------------------------------ flow control
    def queued_bytes(self) -> int:
        """Reply bytes queued for this connection and not yet taken by the peer."""
        return self.wire.bytes_queued + self._transport_buffered()

    def output_drained(self) -> None:
        """Called when queued bytes went to the socket or a request ended: maybe go on."""
        if (self.held or self.reading_paused) and not self.dispatching:
            self._dispatch_held()

    def _dispatch_held(self) -> None:
        """Dispatch held frames while the budget has room; pause or resume reading."""
        self.dispatching = True
        try:
            self._dispatch_held_frames()
        finally:
            self.dispatching = False

    def _dispatch_held_frames(self) -> None:
        """The body of :meth:`_dispatch_held` (not re-entered: an error reply sent while
        dispatching must not dispatch the next frames from inside this loop)."""
        held = self.held
        budget = self.budget
        inflight = self.inflight
        streams = self.streams
        on_event = self._on_event
        while (
            held
            and not self.closed
            and len(inflight) < budget.max_inflight
            and budget.may_start(
                len(inflight) - len(streams),
                self.queued_bytes(),
                self.request_bytes,
                held[0].size,
            )
        ):
            event = held.popleft()
            rid = on_event(event)
            size = event.size
            if rid is not None and size >= TRACKED_REQUEST_BYTES:
                self.request_sizes[rid] = size
                self.request_bytes += size
        if self.closed:
            return
        pause = (
            bool(held) or len(inflight) >= budget.max_inflight or budget.over(self.queued_bytes())
        )
        if pause != self.reading_paused:
            self.reading_paused = pause
            if pause:
                self._pause_reading()
            else:
                self._resume_reading()

    # ------------------------------------------------------------------ input
    def on_data(self, data: bytes | memoryview) -> None:
        """Handle received bytes: hello first, then requests and cancels."""
        try:
            events = self.wire.receive_data(data)
        except WireError as exc:
            self.fail(exc)
            return
        if not events:
            return
        if self.ctx is None:
            hello = events[0]
            if type(hello) is not Hello:  # the client sent an error frame first: it is leaving
                self.abort()
                return
            if not self._on_hello(hello):
                return
            del events[0]
        self.held.extend(events)  # type: ignore[arg-type]
        self._dispatch_held()

    def _on_hello(self, hello: Hello) -> bool:
        """Check the client's token, answer the hello; return whether the session may go on."""
        try:
            authority = self.server.check_token(hello.fields.get("token"))
        except AspenError as exc:
            self.fail(exc)
            return False
        self.ctx = RpcContext(
            self.server.node, self.peer, authority.identity, self.connection_id, authority=authority
        )
        self._hello_done()
        self.send_bytes(self.wire.send(Hello(self.server.hello_fields())))
        return True

    def _hello_done(self) -> None:
        """Called once the hello succeeded (drivers stop their hello timer)."""

    def _on_event(self, event: _Held) -> int | None:
        """Dispatch one request or cancel; return the id of a request now running."""
        if type(event) is not Request:
            if type(event) is Cancel:
                self._on_cancel(event.id)
            else:
                self.server.requests += 1
                self.send_error(event.id, event.error)  # type: ignore[union-attr]
            return None
        self.server.requests += 1
        rid = event.id
        method = event.method
        params = event.params
        handler = self.handler(method)
        if handler is None:
            self.send_error(rid, self._unknown_method(method))
            return None
        if rid in self.inflight:
            self.send_error(
                rid, InvalidArgumentError(f"request id {rid} is already in flight", field="id")
            )
            return None
        authority = self.ctx.authority  # type: ignore[union-attr]
        if not authority.unrestricted:  # the root token's requests skip the check
            refused = authority.check(handler, params)
            if refused is not None:
                self.send_error(rid, self._as_error(handler, refused))
                return None
        if handler.streaming:
            self.streams.add(rid)
            self.inflight[rid] = self._spawn(self._run_stream(rid, handler, params), rid)
        else:
            self.inflight[rid] = self._spawn(self._run_unary(rid, handler, params), rid)
        return rid

    def _unknown_method(self, method: str) -> AspenError:
        """Build the error for a method nobody registered."""
        if len(method) > MAX_METHOD_NAME_BYTES:
            return InvalidArgumentError(
                f"method name of {len(method)} characters exceeds MAX_METHOD_NAME_BYTES "
                f"({MAX_METHOD_NAME_BYTES})",
                field="method",
            )
        plugin = method.split(".", 1)[0]
        served = [n for n in self.server.method_names() if n.startswith(plugin + ".")]
        if served:
            return UnavailableError(
                f"method {method!r} does not exist; plugin {plugin!r} serves "
                f"{', '.join(sorted(served))}",
                plugin=plugin,
                method=method,
            )
        return UnavailableError(
            f"method {method!r} is not available on this node: install and enable the "
            f"plugin {plugin!r} (e.g. pip install aspen-{plugin}) on the node",
            plugin=plugin,
            method=method,
        )

    def _on_cancel(self, rid: int) -> None:
        """Cancel request ``rid`` if it is still running."""
        handle = self.inflight.get(rid)
        if handle is not None and rid not in self.canceled:
            self.canceled.add(rid)
            self._cancel_request(rid, handle)

    def _cancel_request(self, rid: int, handle: Cancellable) -> None:
        """Cancel one running request (its runner sends the canceled reply)."""
        handle.cancel()

    # ------------------------------------------------------------------ runners
    async def _run_unary(self, rid: int, handler: RpcHandler, params: dict[str, Any]) -> None:
        """Run a unary handler and send its result or error."""
        try:
            result = await handler.func(self.ctx, params)  # type: ignore[arg-type, misc]
        except AspenError as exc:
            self._finish_error(rid, exc)
        except self.cancel_exc:
            self._finish_canceled(rid)
            raise
        except Exception as exc:
            self._finish_error(rid, self._internal(handler, exc))
        else:
            self._finish(rid, result, handler)

    async def _run_stream(self, rid: int, handler: RpcHandler, params: dict[str, Any]) -> None:
        """Run a streaming handler: one item frame per yielded item, then the end frame."""
        agen = None
        authority = self.ctx.authority  # type: ignore[union-attr]
        if not authority.unrestricted:
            authority.stream_started()
        try:
            agen = handler.func(self.ctx, params)  # type: ignore[arg-type, misc]
            async for item in agen:  # type: ignore[union-attr]
                if self.closed or rid in self.canceled:
                    break
                data = self._encode(Item(rid, item), rid, handler)
                if data is None:
                    return
                self.send_bytes(data)
                if not self._writable():
                    self.server.streams_blocked += 1
                    try:
                        await self._wait_writable()
                    finally:
                        self.server.streams_blocked -= 1
        except AspenError as exc:
            self._finish_error(rid, exc)
        except self.cancel_exc:
            self._finish_canceled(rid)
            raise
        except Exception as exc:
            self._finish_error(rid, self._internal(handler, exc))
        else:
            if rid in self.canceled:
                self._finish_canceled(rid)
            else:
                self._finish(rid, None, handler)
        finally:
            aclose = getattr(agen, "aclose", None)
            if aclose is not None:
                with contextlib.suppress(BaseException):
                    await aclose()
            if not authority.unrestricted:
                authority.stream_ended()

    def _as_error(self, handler: RpcHandler, exc: Exception) -> AspenError:
        """``exc`` as the error to send (a non-Aspen one is a bug: ``internal``)."""
        return exc if isinstance(exc, AspenError) else self._internal(handler, exc)

    def _internal(self, handler: RpcHandler, exc: Exception) -> InternalError:
        """Log a handler bug with its plugin and return the ``internal`` error to send."""
        self.server.internal_errors += 1
        log.error(
            "RPC handler %s (plugin %s) failed", handler.name, handler.plugin or "?", exc_info=exc
        )
        return InternalError(
            f"internal error in {handler.name} (plugin {handler.plugin or '?'}): "
            f"{type(exc).__name__}: {exc}",
            plugin=handler.plugin,
            method=handler.name,
        )

    def _encode(self, event: Result | Item, rid: int, handler: RpcHandler) -> bytes | None:
        """Encode a result/item frame; on failure send the error instead and return None."""
        try:
            return self.wire.send(event)
        except FrameError as exc:
            if "size" in exc.details:
                err: AspenError = ResourceExhaustedError(
                    f"the response of {handler.name} is too large: {exc.message}; "
                    "ask for less (e.g. a smaller limit)",
                    **exc.details,
                )
            else:
                err = self._internal(handler, exc)
            self._finish_error(rid, err)
            return None

    def _finish(self, rid: int, result: Any, handler: RpcHandler) -> None:
        """Send the final frame of ``rid`` and retire it."""
        if self.closed:
            self._retire(rid)
            return
        data = self._encode(Result(rid, result), rid, handler)
        if data is not None and self._retire(rid):
            self.send_bytes(data)
            self.output_drained()

    def _finish_error(self, rid: int, exc: AspenError) -> None:
        """Send ``exc`` as the final frame of ``rid`` and retire it."""
        if self._retire(rid):
            self.send_error(rid, exc)
            self.output_drained()

    def _finish_canceled(self, rid: int) -> None:
        """Send the canceled reply if the client asked for the cancellation."""
        if rid in self.canceled and self._retire(rid):
            self.send_bytes(self.wire.send(Result(rid, _CANCELED_RESULT)))
        else:
            self._retire(rid)
        self.output_drained()

    def _retire(self, rid: int) -> bool:
        """Drop ``rid`` from the in-flight set; return whether its reply may be sent."""
        self.canceled.discard(rid)
        self.streams.discard(rid)
        if self.request_sizes:
            self.request_bytes -= self.request_sizes.pop(rid, 0)
        if self.inflight.pop(rid, None) is None:
            return False
        return not self.closed

    # ------------------------------------------------------------------ output
    def send_error(self, rid: int, exc: AspenError) -> None:
        """Queue an error frame for request ``rid``."""
        self.server.errors += 1
        if not self.closed:
            self.send_bytes(self.wire.send(Failure(rid, exc)))

    def send_bytes(self, data: bytes) -> None:
        """Queue an encoded frame; disconnect a peer that lets far too many bytes pile up
        (``MAX_UNREAD_REPLY_BYTES_PER_CONNECTION``: back-pressure keeps others below)."""
        if self.closed:
            return
        self.budget.replied(len(data))
        self.out.append(data)
        if self.wire.bytes_queued > self.server.max_unread_bytes:
            log.warning(
                "closing connection %d from %s: %d reply bytes unread "
                "(MAX_UNREAD_REPLY_BYTES_PER_CONNECTION = %d)",
                self.connection_id,
                self.peer,
                self.queued_bytes(),
                self.server.max_unread_bytes,
            )
            self.abort()
            return
        if not self.flush_pending:
            self.flush_pending = True
            self._schedule_flush()

    def take_output(self) -> bytes:
        """Remove and return every queued frame as one buffer."""
        out = self.out
        data = out[0] if len(out) == 1 else b"".join(out)
        out.clear()
        self.wire.bytes_written(len(data))
        return data

    # ------------------------------------------------------------------ closing
    def fail(self, exc: AspenError) -> None:
        """Send a connection-level error frame and close (hello failure, garbage)."""
        if self.closed:
            return
        if not isinstance(exc, (UnauthorizedError, FrameError)):
            log.debug("closing connection %d from %s: %s", self.connection_id, self.peer, exc)
        self.server.errors += 1
        self.send_bytes(self.wire.send(ConnectionFailed(exc)))
        self.close(flush=True)

    def close(self, *, flush: bool = True) -> None:
        """Stop serving: cancel every running request and close the socket."""
        if self.closed:
            return
        self.closed = True
        self._cancel_all()
        self._close_transport(flush=flush)
        self.wire.close()

    def abort(self) -> None:
        """Close at once, dropping queued frames."""
        self.close(flush=False)

    def _cancel_all(self) -> None:
        """Cancel the handler of every in-flight request."""
        for handle in list(self.inflight.values()):
            handle.cancel()
