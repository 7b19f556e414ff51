"""uvicorn's h11 protocol with the listener's guards: the server-specific half of
:mod:`aspen.http` (swap this module to change servers; the interface stays).

Per connection, one timer runs while the server waits on the client:

* from the connection's start (or a kept-alive connection's next first byte) until the
  request's headers are complete: ``header_timeout`` (then 408 and close);
* while the body arrives: ``body_timeout`` plus one second per ``min_body_rate`` bytes
  received (then 408, or a plain close once the app has started answering); the clock
  stops while the app, not the client, is behind (uvicorn paused reading);
* between requests, uvicorn's own keep-alive timer (``idle_timeout``).

A connection beyond ``max_connections`` is answered 503 and closed at once; headers over
``max_header_bytes`` get 431 and malformed HTTP 400, all as JSON in the plugin's shape.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

from aspen import limits
from aspen.http.errors import ErrorBody, ListenerError, raw_response

__all__ = ["GuardedH11Protocol", "Guards"]

log = logging.getLogger(__name__)


class Guards:
    """The bounds one listener's connections enforce (resolved from ``HttpLimits``)."""

    def __init__(
        self,
        *,
        header_timeout: float,
        body_timeout: float,
        min_body_rate: int,
        max_connections: int,
        max_header_bytes: int,
        shape: ErrorBody,
    ) -> None:
        self.header_timeout = header_timeout
        self.body_timeout = body_timeout
        self.min_body_rate = min_body_rate
        self.max_connections = max_connections
        self.max_header_bytes = max_header_bytes
        self.shape = shape
        #: Connections refused over the cap, and cut off by each timeout (for status).
        self.refused = 0
        self.header_timeouts = 0
        self.body_timeouts = 0
        #: Connections answered with an error and half-closed, not yet closed.
        self.lingering = 0


class GuardedH11Protocol(H11Protocol):
    """One HTTP/1.1 connection: uvicorn's h11 protocol plus :class:`Guards`."""

    def __init__(self, *args: Any, guards: Guards, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.guards = guards
        self._timer: asyncio.TimerHandle | None = None
        self._in_body = False
        self._body_start = 0.0
        self._body_bytes = 0
        self._lingering = False

    # ------------------------------------------------------------------ uvicorn's hooks
    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        """Refuse a connection over the cap; otherwise start the header clock."""
        over = len(self.connections) >= self.guards.max_connections
        super().connection_made(transport)
        if over:
            self.guards.refused += 1
            self._answer_and_close(
                ListenerError(
                    503,
                    f"too many connections: this listener serves at most "
                    f"{self.guards.max_connections} (HTTP_MAX_CONNECTIONS); try again",
                )
            )
            return
        self._arm(self.guards.header_timeout, self._header_timed_out)

    def connection_lost(self, exc: Exception | None) -> None:
        """Stop the clock, then let uvicorn clean up."""
        self._disarm()
        self._stop_lingering()
        super().connection_lost(exc)

    def shutdown(self) -> None:
        """The listener stops: a lingering connection just closes (it was answered)."""
        if self._lingering:
            self._close_lingering()
        else:
            super().shutdown()

    def eof_received(self) -> None:
        """A lingering connection ends when the client is done sending."""
        if self._lingering:
            self._close_lingering()

    def data_received(self, data: bytes) -> None:
        """Bound the header block; start the header clock on a kept-alive connection's
        first byte; count body bytes."""
        if self._lingering:
            return  # answered already: what the client still sends is dropped
        if self.conn.their_state is h11.IDLE:
            if self._headers_too_big(data):
                return
            if self._timer is None:
                self._arm(self.guards.header_timeout, self._header_timed_out)
        elif self._in_body:
            self._body_bytes += len(data)
        super().data_received(data)

    def handle_events(self) -> None:
        """Let uvicorn parse, then move the clock to the phase the client is in."""
        super().handle_events()
        if self._lingering:
            return  # answered (malformed HTTP): the linger clock runs
        if self.transport.is_closing():
            self._disarm()
            return
        state = self.conn.their_state
        if state is h11.IDLE:
            return  # still waiting for headers: the header clock runs (if armed)
        if state is h11.SEND_BODY:
            if not self._in_body:
                self._in_body, self._body_start, self._body_bytes = True, time.monotonic(), 0
            self._arm_body()
            return
        self._in_body = False
        self._disarm()

    def send_400_response(self, msg: str) -> None:
        """Malformed HTTP: a JSON error instead of uvicorn's plain text."""
        self._answer_and_close(ListenerError(400, "malformed HTTP request"))

    def _headers_too_big(self, data: bytes) -> bool:
        """Answer 431 if the request line and headers (so far) exceed the bound."""
        pending = self.conn.trailing_data[0] + data
        end = pending.find(b"\r\n\r\n")
        size = end + 4 if end >= 0 else len(pending)
        if size <= self.guards.max_header_bytes:
            return False
        self._answer_and_close(
            ListenerError(
                431,
                f"request headers are over HTTP_MAX_HEADER_BYTES "
                f"({self.guards.max_header_bytes} bytes)",
            )
        )
        return True

    # ------------------------------------------------------------------ the clock
    def _arm(self, delay: float, callback: Any) -> None:
        self._disarm()
        self._timer = self.loop.call_later(max(0.0, delay), callback)

    def _disarm(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _arm_body(self) -> None:
        g = self.guards
        deadline = self._body_start + g.body_timeout + self._body_bytes / g.min_body_rate
        self._arm(deadline - time.monotonic(), self._body_timed_out)

    def _header_timed_out(self) -> None:
        self._timer = None
        if self.transport.is_closing() or self.conn.their_state is not h11.IDLE:
            return
        self.guards.header_timeouts += 1
        self._answer_and_close(
            ListenerError(
                408,
                f"request headers not complete within HTTP_HEADER_TIMEOUT_SECONDS "
                f"({self.guards.header_timeout:g} s)",
            )
        )

    def _body_timed_out(self) -> None:
        self._timer = None
        if self.transport.is_closing() or not self._in_body:
            return
        if self.flow.read_paused:  # the app is behind, not the client: restart the clock
            self._body_start, self._body_bytes = time.monotonic(), 0
            self._arm_body()
            return
        self.guards.body_timeouts += 1
        error = ListenerError(
            408,
            f"request body slower than HTTP_MIN_BODY_BYTES_PER_SECOND "
            f"({self.guards.min_body_rate} bytes/s after {self.guards.body_timeout:g} s)",
        )
        if self.cycle is not None and self.cycle.response_started:
            self.transport.close()
        else:
            self._answer_and_close(error)

    def _answer_and_close(self, error: ListenerError) -> None:
        """Write ``error`` as a complete response, then close: half-close and linger
        (reading and dropping) for HTTP_LINGER_SECONDS, so that the client reads the answer
        rather than a reset, while fewer than HTTP_MAX_LINGERING_CONNECTIONS linger."""
        self._disarm()
        if self.transport.is_closing():
            return
        self.transport.write(raw_response(error, self.guards.shape))
        if (
            self.guards.lingering >= limits.HTTP_MAX_LINGERING_CONNECTIONS
            or not self.transport.can_write_eof()
        ):
            self.transport.close()
            return
        self.transport.write_eof()
        self._lingering = True
        self.guards.lingering += 1
        self.flow.resume_reading()
        self._timer = self.loop.call_later(limits.HTTP_LINGER_SECONDS, self._close_lingering)

    def _close_lingering(self) -> None:
        self._timer = None
        self._stop_lingering()
        self.transport.close()

    def _stop_lingering(self) -> None:
        if self._lingering:
            self._lingering = False
            self.guards.lingering -= 1
