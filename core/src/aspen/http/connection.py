"""One HTTP/1.1 connection of a hardened listener: an asyncio ``Protocol`` that parses
requests with :mod:`aspen.http.parse`, runs the ASGI app once per request, and enforces
the listener's bounds (the server-specific half of :mod:`aspen.http`).

States of a connection (``_phase``), one request at a time (pipelined requests wait in
the buffer, and reading stops once it holds ``HTTP_READ_BUFFER_BYTES``)::

    HEAD ──head parsed──▶ BODY ──body complete──▶ APP ──response complete──▶ HEAD (kept alive)
      │                     │                                         └──▶ closed
      └── 400/408/413/431 answered ──▶ LINGER (half-closed, reading and dropping) ──▶ closed

One deadline per connection, checked by one timer that is moved only when it fires
(setting a deadline costs no timer call on the fast path):

* from the connection's start (or a kept-alive connection's next first byte) until the
  request's headers are complete: ``header_timeout`` (then 408 and close);
* while the body arrives: ``body_timeout`` plus one second per ``min_body_rate`` bytes
  received (then 408, or a plain close once the app has started answering); the clock
  restarts while the app, not the client, is behind (reading paused);
* between requests: ``idle_timeout`` (then close); while an error lingers:
  ``HTTP_LINGER_SECONDS``.

A connection beyond ``max_connections`` is answered 503 and closed at once; headers over
``max_header_bytes`` get 431 and malformed HTTP 400, all as JSON in the plugin's shape.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from email.utils import formatdate
from typing import Any
from urllib.parse import unquote

from aspen import limits
from aspen.http.cycle import Cycle
from aspen.http.errors import ErrorBody, ListenerError, raw_response
from aspen.http.parse import ChunkedDecoder, MalformedRequest, RequestHead, parse_head

__all__ = ["HttpConnection", "Listener"]

log = logging.getLogger(__name__)

App = Callable[[dict[str, Any], Any, Any], Awaitable[None]]

_HEAD, _BODY, _APP, _LINGER = "head", "body", "app", "linger"
_HEADER_CLOCK, _BODY_CLOCK, _IDLE_CLOCK, _LINGER_CLOCK = "header", "body", "idle", "linger"
_ASGI = {"version": "3.0", "spec_version": "2.3"}


class Listener:
    """What one listener's connections share: the app, the bounds (resolved from
    ``HttpLimits``), the open connections and request tasks, and counters for status."""

    def __init__(
        self,
        app: App,
        *,
        header_timeout: float,
        body_timeout: float,
        min_body_rate: int,
        idle_timeout: float,
        max_connections: int,
        max_header_bytes: int,
        shape: ErrorBody,
    ) -> None:
        self.app = app
        self.header_timeout = header_timeout
        self.body_timeout = body_timeout
        self.min_body_rate = min_body_rate
        self.idle_timeout = idle_timeout
        self.max_connections = max_connections
        self.max_header_bytes = max_header_bytes
        self.shape = shape
        self.connections: set[HttpConnection] = set()
        self.tasks: set[asyncio.Task[None]] = set()
        #: Connections refused over the cap, and cut off by each timeout (for status).
        self.refused = 0
        self.header_timeouts = 0
        self.body_timeouts = 0
        #: Connections answered with an error and half-closed, not yet closed.
        self.lingering = 0
        self.stopping = False
        self._date = (0, b"")

    def date_header(self) -> bytes:
        """The ``date`` header line, formatted once per second."""
        now = int(time.time())
        if self._date[0] != now:
            self._date = (now, b"date: " + formatdate(now, usegmt=True).encode() + b"\r\n")
        return self._date[1]


class HttpConnection(asyncio.Protocol):
    """One HTTP/1.1 connection of a :class:`Listener` (see the module's doc)."""

    def __init__(self, listener: Listener) -> None:
        self.listener = listener
        self.loop = asyncio.get_running_loop()
        self.transport: asyncio.Transport | None = None
        self.write_paused = False
        #: The client half-closed its side (no more requests will come).
        self.peer_done = False
        self._drain: asyncio.Future[None] | None = None
        self._phase = _HEAD
        self._buffer = bytearray()
        self._cycle: Cycle | None = None
        self._remaining = 0  # body bytes still due (Content-Length)
        self._chunks: ChunkedDecoder | None = None
        self._read_paused = False
        self._server: tuple[str, int] | None = None
        self._client: tuple[str, int] | None = None
        self._deadline: float | None = None
        self._clock = _HEADER_CLOCK
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at = 0.0
        self._body_start = 0.0
        self._body_received = 0
        self._lingering = False
        self._waiting_to_write = False

    # ------------------------------------------------------------------ asyncio's hooks
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        """Refuse a connection over the cap; otherwise start the header clock."""
        self.transport = transport  # type: ignore[assignment]  # a stream transport
        listener = self.listener
        over = len(listener.connections) >= listener.max_connections
        listener.connections.add(self)
        if listener.stopping:  # accepted while the listener stops
            transport.close()
            return
        self._server = _address(transport.get_extra_info("sockname"))
        self._client = _address(transport.get_extra_info("peername"))
        if over:
            listener.refused += 1
            self._answer_and_close(
                ListenerError(
                    503,
                    f"too many connections: this listener serves at most "
                    f"{listener.max_connections} (HTTP_MAX_CONNECTIONS); try again",
                )
            )
            return
        self._set_deadline(listener.header_timeout, _HEADER_CLOCK)

    def connection_lost(self, exc: Exception | None) -> None:
        """Forget the connection; a running request sees ``http.disconnect``."""
        self.listener.connections.discard(self)
        self._deadline = None
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._stop_lingering()
        if self._cycle is not None:
            self._cycle.gone = True
            self._cycle.wake()
        if self._drain is not None and not self._drain.done():
            self._drain.set_result(None)
        self.transport = None

    def eof_received(self) -> bool | None:
        """The client is done sending: close, unless a request is still to be answered."""
        self.peer_done = True
        cycle = self._cycle
        if cycle is None or self._phase is not _APP:  # nothing (whole) to answer
            if cycle is not None:
                cycle.gone = True
                cycle.wake()
            self._close()
            return None
        cycle.keep_alive = False
        return True  # answer the request in flight, then close

    def pause_writing(self) -> None:
        """The client reads slower than the app answers: ``send`` waits."""
        self.write_paused = True

    def resume_writing(self) -> None:
        """The client caught up."""
        self.write_paused = False
        if self._drain is not None and not self._drain.done():
            self._drain.set_result(None)
        if self._waiting_to_write:
            self._waiting_to_write = False
            self._next_request()

    def data_received(self, data: bytes) -> None:
        """Parse what arrived, according to the phase the connection is in."""
        phase = self._phase
        if phase is _BODY:
            self._feed_body(data)
        elif phase is _HEAD:
            self._buffer += data
            self._parse_head()
        elif phase is _APP:  # a pipelined request: kept until this response is done
            self._buffer += data
            if len(self._buffer) > limits.HTTP_READ_BUFFER_BYTES:
                self._pause_reading()
        # _LINGER: answered already; what the client still sends is dropped

    # ------------------------------------------------------------------ requests
    def _parse_head(self) -> None:
        listener = self.listener
        buf = self._buffer
        while buf[:2] == b"\r\n":  # empty lines before a request line are allowed
            del buf[:2]
        if not buf:
            return
        if self._clock is not _HEADER_CLOCK:  # a kept-alive connection's next request
            self._set_deadline(listener.header_timeout, _HEADER_CLOCK)
        end = buf.find(b"\r\n\r\n")
        size = len(buf) if end < 0 else end + 4
        if size > listener.max_header_bytes:
            self._answer_and_close(
                ListenerError(
                    431,
                    f"request headers are over HTTP_MAX_HEADER_BYTES "
                    f"({listener.max_header_bytes} bytes)",
                )
            )
            return
        if end < 0:
            return
        block = bytes(buf[:end])
        del buf[: end + 4]
        try:
            head = parse_head(block)
        except MalformedRequest as exc:
            message = "malformed HTTP request" if exc.status == 400 else exc.reason
            self._answer_and_close(ListenerError(exc.status, message))
            return
        self._start(head)

    def _start(self, head: RequestHead) -> None:
        """Run the app for ``head``; its body follows in the buffer or later."""
        cycle = self._cycle = Cycle(self, head)
        rest = bytes(self._buffer)
        self._buffer.clear()
        if head.chunked:
            self._chunks = ChunkedDecoder(self.listener.max_header_bytes)
            self._begin_body()
            self._spawn(head, cycle)
            if rest:
                self._feed_body(rest)
            return
        length = head.content_length or 0
        if len(rest) >= length:
            if length:
                cycle.body.append(rest[:length])
            cycle.body_done = True
            self._buffer += rest[length:]
            self._phase = _APP
            self._deadline = None
        else:
            self._remaining = length
            self._begin_body()
            if rest:
                self._feed_body(rest)
        self._spawn(head, cycle)

    def _spawn(self, head: RequestHead, cycle: Cycle) -> None:
        raw_path = head.raw_path
        scope = {
            "type": "http",
            "asgi": _ASGI,
            "http_version": head.version,
            "server": self._server,
            "client": self._client,
            "scheme": "http",
            "method": head.method,
            "root_path": "",
            "path": unquote(raw_path.decode("ascii")) if b"%" in raw_path else raw_path.decode(),
            "raw_path": raw_path,
            "query_string": head.query,
            "headers": head.headers,
        }
        task = self.loop.create_task(self._run(scope, cycle))
        self.listener.tasks.add(task)
        task.add_done_callback(self.listener.tasks.discard)

    async def _run(self, scope: dict[str, Any], cycle: Cycle) -> None:
        try:
            await self.listener.app(scope, cycle.receive, cycle.send)
        except Exception:
            log.exception("HTTP request %s %s failed", scope["method"], scope["path"])
            failed = True
        else:
            failed = False
        if cycle.complete or cycle.gone:
            return
        if not cycle.started:
            if not failed:
                log.error("HTTP request %s %s got no answer", scope["method"], scope["path"])
            self._answer_and_close(ListenerError(500, "internal error"))
        else:  # half an answer: the client can only tell by the connection closing
            cycle.gone = True
            self._close()

    def _begin_body(self) -> None:
        self._phase = _BODY
        self._body_start = self.loop.time()
        self._body_received = 0
        self._set_deadline(self.listener.body_timeout, _BODY_CLOCK)

    def _feed_body(self, data: bytes) -> None:
        cycle = self._cycle
        assert cycle is not None
        self._body_received += len(data)
        if self._chunks is not None:
            try:
                part = self._chunks.feed(data)
            except MalformedRequest:
                self._body_failed(ListenerError(400, "malformed HTTP request"))
                return
            done = self._chunks.done
            extra = self._chunks.rest if done else b""
        else:
            part, extra = data[: self._remaining], data[self._remaining :]
            self._remaining -= len(part)
            done = not self._remaining
        if part and not cycle.complete:  # (once answered, the rest is read and dropped)
            cycle.body.append(part)
            cycle.body_bytes += len(part)
        if done:
            cycle.body_done = True
            self._chunks = None
            self._phase = _APP
            self._deadline = None
            self._buffer += extra
            if cycle.complete:
                self._next_request()
                return
        else:
            listener = self.listener
            due = listener.body_timeout + self._body_received / listener.min_body_rate
            self._set_deadline(self._body_start + due - self.loop.time(), _BODY_CLOCK)
            if cycle.body_bytes > limits.HTTP_READ_BUFFER_BYTES:
                self._pause_reading()
        cycle.wake()

    def body_consumed(self) -> None:
        """The app took the buffered body: read on."""
        if self._read_paused and self._phase is _BODY:
            self._resume_reading()

    def _body_failed(self, error: ListenerError) -> None:
        cycle = self._cycle
        if cycle is not None and cycle.started:
            cycle.gone = True
            cycle.wake()
            self._close()
        else:
            self._answer_and_close(error)

    def response_done(self, cycle: Cycle) -> None:
        """The app sent its whole answer: keep the connection for the next request (once
        the rest of a body the app did not read has arrived, dropped), or close it."""
        if cycle is not self._cycle:
            return
        cycle.wake()
        if self.transport is None:
            self._cycle = None
            return
        if not cycle.keep_alive or self.peer_done or self.listener.stopping:
            self._cycle = None
            if cycle.body_done:
                self._close()
            else:  # the client may still be sending: let it read the answer first
                self._linger()
            return
        if cycle.body_done:
            self._next_request()
        elif self._read_paused:  # the body's end is still to come (and to drop)
            self._resume_reading()

    def _next_request(self) -> None:
        """Wait for the next request on this kept-alive connection (once the client has
        read the answers written so far: pipelined requests must not pile answers up)."""
        self._cycle = None
        if self.listener.stopping:
            self._close()
            return
        self._phase = _HEAD
        self._set_deadline(self.listener.idle_timeout, _IDLE_CLOCK)
        if self.write_paused:  # (the idle clock runs: a client that never reads goes)
            self._pause_reading()
            self._waiting_to_write = True
            return
        if self._read_paused:
            self._resume_reading()
        if self._buffer:
            self._parse_head()

    # ------------------------------------------------------------------ output
    def write(self, data: bytes) -> None:
        """Write ``data`` to the client (dropped once the connection is closing)."""
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(data)

    async def drained(self) -> None:
        """Wait until the client reads what was written (or is gone)."""
        if self.transport is None:
            return
        if self._drain is None or self._drain.done():
            self._drain = self.loop.create_future()
        await self._drain

    # ------------------------------------------------------------------ the clock
    def _set_deadline(self, delay: float, clock: str) -> None:
        when = self.loop.time() + max(0.0, delay)
        self._deadline, self._clock = when, clock
        if self._timer is None or when < self._timer_at:
            if self._timer is not None:
                self._timer.cancel()
            self._timer_at = when
            self._timer = self.loop.call_at(when, self._on_timer)

    def _on_timer(self) -> None:
        self._timer = None
        deadline = self._deadline
        if deadline is None or self.transport is None:
            return
        if self.loop.time() < deadline:
            self._timer_at = deadline
            self._timer = self.loop.call_at(deadline, self._on_timer)
            return
        self._deadline = None
        clock = self._clock
        if clock is _HEADER_CLOCK:
            if self._phase is _HEAD:
                self.listener.header_timeouts += 1
                self._answer_and_close(
                    ListenerError(
                        408,
                        f"request headers not complete within HTTP_HEADER_TIMEOUT_SECONDS "
                        f"({self.listener.header_timeout:g} s)",
                    )
                )
        elif clock is _BODY_CLOCK:
            self._body_timed_out()
        else:  # idle between requests, or lingering after an error
            self._close()

    def _body_timed_out(self) -> None:
        if self._phase is not _BODY:
            return
        listener = self.listener
        if self._read_paused:  # the app is behind, not the client: restart the clock
            self._body_start, self._body_received = self.loop.time(), 0
            self._set_deadline(listener.body_timeout, _BODY_CLOCK)
            return
        listener.body_timeouts += 1
        self._body_failed(
            ListenerError(
                408,
                f"request body slower than HTTP_MIN_BODY_BYTES_PER_SECOND "
                f"({listener.min_body_rate} bytes/s after {listener.body_timeout:g} s)",
            )
        )

    # ------------------------------------------------------------------ closing
    def _answer_and_close(self, error: ListenerError) -> None:
        """Write ``error`` as a complete response, then close (see :meth:`_linger`)."""
        if self._cycle is not None:
            self._cycle.gone = True
            self._cycle.wake()
            self._cycle = None
        self.write(raw_response(error, self.listener.shape))
        self._linger()

    def _linger(self) -> None:
        """Half-close and linger (reading and dropping) for HTTP_LINGER_SECONDS, so that
        the client reads the answer rather than a reset, while fewer than
        HTTP_MAX_LINGERING_CONNECTIONS linger; otherwise close at once."""
        transport = self.transport
        if transport is None or transport.is_closing():
            return
        self._phase = _LINGER
        if (
            self.peer_done
            or self.listener.stopping
            or self.listener.lingering >= limits.HTTP_MAX_LINGERING_CONNECTIONS
            or not transport.can_write_eof()
        ):
            self._close()
            return
        transport.write_eof()
        self._lingering = True
        self.listener.lingering += 1
        self._buffer.clear()
        if self._read_paused:
            self._resume_reading()
        self._set_deadline(limits.HTTP_LINGER_SECONDS, _LINGER_CLOCK)

    def _close(self) -> None:
        self._stop_lingering()
        if self.transport is not None:
            self.transport.close()

    def _stop_lingering(self) -> None:
        if self._lingering:
            self._lingering = False
            self.listener.lingering -= 1

    def shutdown(self) -> None:
        """The listener stops: close unless a request is being answered (that one closes
        once answered)."""
        if self._cycle is None:
            self._close()
        else:
            self._cycle.keep_alive = False

    def abort(self) -> None:
        """Close now (the shutdown grace ran out)."""
        if self._cycle is not None:
            self._cycle.gone = True
            self._cycle.wake()
        self._close()

    # ------------------------------------------------------------------ flow control
    def _pause_reading(self) -> None:
        if not self._read_paused and self.transport is not None:
            self._read_paused = True
            self.transport.pause_reading()

    def _resume_reading(self) -> None:
        if self._read_paused and self.transport is not None:
            self._read_paused = False
            self.transport.resume_reading()


def _address(info: Any) -> tuple[str, int] | None:
    """``(host, port)`` of a socket address (``None`` for a Unix socket)."""
    if isinstance(info, tuple) and len(info) >= 2:
        return str(info[0]), int(info[1])
    return None
