"""One request and its response on a listener's connection: the ASGI ``receive`` and
``send`` of one app call (:class:`Cycle`), and the response head it writes.

The connection (:mod:`aspen.http.connection`) feeds the request body in and is told when
the response is complete; the cycle frames the response: the app's ``Content-Length``,
or the listener's own (one body message), or chunked coding (several, on HTTP/1.1), or
the end of the connection (HTTP/1.0); no body for ``HEAD``, 204 and 304.
"""

from __future__ import annotations

import asyncio
import http
from typing import TYPE_CHECKING, Any

from aspen.http.parse import RequestHead

if TYPE_CHECKING:
    from aspen.http.connection import HttpConnection

__all__ = ["Cycle"]

_NO_BODY_STATUS = frozenset({204, 304})
_CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"


def _status_line(status: int) -> bytes:
    try:
        phrase = http.HTTPStatus(status).phrase
    except ValueError:
        phrase = ""
    return f"HTTP/1.1 {status} {phrase}\r\n".encode()


_STATUS_LINES = {int(s): _status_line(int(s)) for s in http.HTTPStatus}


class Cycle:
    """One request and its response: the ASGI ``receive`` and ``send`` of one app call."""

    __slots__ = (
        "body",
        "body_bytes",
        "body_done",
        "chunk_ok",
        "chunked_out",
        "complete",
        "conn",
        "continue_sent",
        "expect_continue",
        "gone",
        "head_sent",
        "headers",
        "is_head",
        "keep_alive",
        "request_done",
        "started",
        "status",
        "waiter",
    )

    def __init__(self, conn: HttpConnection, head: RequestHead) -> None:
        self.conn = conn
        self.body: list[bytes] = []
        self.body_bytes = 0  # buffered, not yet received by the app
        self.body_done = False  # the whole body has arrived
        self.request_done = False  # the app received all of it
        self.expect_continue = head.expect_continue
        self.continue_sent = False
        self.is_head = head.method == "HEAD"
        self.keep_alive = head.keep_alive
        self.waiter: asyncio.Future[None] | None = None
        self.gone = False  # the connection was lost or the listener answered instead
        self.started = False
        self.head_sent = False
        self.chunked_out = False
        self.chunk_ok = head.version == "1.1"
        self.complete = False
        self.status = 200
        self.headers: list[tuple[bytes, bytes]] = []

    def wake(self) -> None:
        """Wake a ``receive`` waiting for body bytes or a disconnect."""
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_result(None)

    async def receive(self) -> dict[str, Any]:
        """ASGI ``receive``: the body as it arrives, then ``http.disconnect`` once the
        response is complete or the client is gone."""
        while True:
            if self.gone or self.complete:
                return {"type": "http.disconnect"}
            if self.body or (self.body_done and not self.request_done):
                data = b"".join(self.body) if len(self.body) != 1 else self.body[0]
                self.body.clear()
                self.body_bytes = 0
                self.request_done = self.body_done
                if not self.body_done:
                    self.conn.body_consumed()
                return {"type": "http.request", "body": data, "more_body": not self.body_done}
            if self.request_done:
                pass  # only a disconnect is left to wait for
            elif self.expect_continue and not self.continue_sent:
                self.continue_sent = True
                self.conn.write(_CONTINUE)
            self.waiter = self.conn.loop.create_future()
            await self.waiter
            self.waiter = None

    async def send(self, message: dict[str, Any]) -> None:
        """ASGI ``send``: ``http.response.start``, then ``http.response.body`` parts."""
        kind = message["type"]
        if self.gone or self.complete:
            return  # the client is gone, or the listener answered already
        if kind == "http.response.start":
            if self.started:
                raise RuntimeError("http.response.start sent twice")
            headers = list(message.get("headers", ()))
            for name, value in headers:  # a line break would split the response
                if b"\n" in value or b"\r" in value or b"\n" in name or b"\r" in name:
                    raise RuntimeError(f"response header {name!r} holds a line break")
            self.started = True
            self.status = int(message["status"])
            self.headers = headers
            return
        if kind != "http.response.body":
            raise RuntimeError(f"unexpected ASGI message {kind!r}")
        if not self.started:
            raise RuntimeError("http.response.body before http.response.start")
        body: bytes = message.get("body", b"")
        more = bool(message.get("more_body", False))
        out = self._head(None if more else len(body)) if not self.head_sent else b""
        bodyless = self.is_head or self.status in _NO_BODY_STATUS
        if body and not bodyless:
            out += b"%x\r\n%s\r\n" % (len(body), body) if self.chunked_out else body
        if not more:
            self.complete = True
            if self.chunked_out and not bodyless:
                out += b"0\r\n\r\n"
        if out:
            self.conn.write(out)
        if self.complete:
            self.conn.response_done(self)
        elif self.conn.write_paused:
            await self.conn.drained()

    def _head(self, length: int | None) -> bytes:
        """The status line and headers; ``length``: the whole body's, when known now."""
        self.head_sent = True
        conn = self.conn
        has_length = False
        parts = [_STATUS_LINES.get(self.status) or _status_line(self.status)]
        for name, value in self.headers:
            lower = name.lower()
            if lower == b"content-length":
                has_length = True
            elif lower == b"connection":
                if b"close" in value.lower():
                    self.keep_alive = False
                continue  # written below, once
            elif lower == b"transfer-encoding":
                continue  # the listener frames the body itself
            parts.append(name + b": " + value + b"\r\n")
        if not has_length and self.status not in _NO_BODY_STATUS:
            if length is not None:
                parts.append(b"content-length: %d\r\n" % length)
            elif self.chunk_ok:
                self.chunked_out = True
                parts.append(b"transfer-encoding: chunked\r\n")
            else:  # HTTP/1.0: the body ends where the connection does
                self.keep_alive = False
        if conn.listener.stopping or conn.peer_done:
            self.keep_alive = False
        elif self.expect_continue and not self.continue_sent and not self.body_done:
            self.keep_alive = False  # the client may never send the body it announced
        parts.append(conn.listener.date_header())
        if not self.keep_alive:
            parts.append(b"connection: close\r\n")
        parts.append(b"\r\n")
        return b"".join(parts)
