"""Blocking request and response bodies for dulwich, which runs in a worker thread.

dulwich's protocol handlers read and write with blocking calls; the node's HTTP listener
is ASGI on the event loop. :class:`BodyReader` hands the handler the request body as it
arrives (``recv(n)``: up to ``n`` bytes, ``b""`` at the end; gzip bodies inflated with a
bound), :class:`ResponseWriter` gathers its output into ``RESPONSE_CHUNK_BYTES`` pieces and
sends each through the listener (which applies back-pressure). Neither holds more than
one piece: a clone or push streams, whatever its size.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable
from typing import Any

from aspen.errors import ResourceExhaustedError
from aspen_forge import limits

__all__ = ["BodyReader", "ClientGone", "ResponseWriter"]


class ClientGone(ConnectionError):
    """The HTTP client went away before its request body ended."""


class BodyReader:
    """The request body, read from a worker thread (``run``: ``anyio.from_thread.run``)."""

    def __init__(
        self,
        receive: Callable[[], Any],
        run: Callable[..., Any],
        *,
        gzip: bool,
        max_bytes: int,
        bound_name: str,
    ) -> None:
        self._receive = receive
        self._run = run
        self._inflate = zlib.decompressobj(16 + zlib.MAX_WBITS) if gzip else None
        self._max = max_bytes
        self._bound = bound_name
        self._buffer = b""
        self._offset = 0
        self._done = False
        self.total = 0

    def recv(self, size: int) -> bytes:
        """Up to ``size`` bytes of the body (``b""`` once it has ended)."""
        while self._offset >= len(self._buffer):
            if self._done:
                return b""
            self._buffer, self._offset = self._next(), 0
        end = min(len(self._buffer), self._offset + size)
        data = self._buffer[self._offset : end]
        self._offset = end
        return data

    def _next(self) -> bytes:
        message = self._run(self._receive)
        if message["type"] != "http.request":
            raise ClientGone("the client went away during the request")
        data: bytes = message.get("body", b"")
        self._done = not message.get("more_body", False)
        if self._inflate is not None:
            data = self._inflate.decompress(data, self._max - self.total + 1)
            if self._inflate.unconsumed_tail:
                self.total = self._max + 1
        self.total += len(data)
        if self.total > self._max:
            raise ResourceExhaustedError(f"request body is over {self._bound} ({self._max} bytes)")
        return data


class ResponseWriter:
    """The response body, written from a worker thread; the head is sent with the first
    piece, so an error before any output can still become an error status."""

    def __init__(
        self, send: Callable[[dict[str, Any]], Any], run: Callable[..., Any], content_type: bytes
    ) -> None:
        self._send = send
        self._run = run
        self._content_type = content_type
        self._pieces: list[bytes] = []
        self._size = 0
        self.started = False
        self.finished = False

    def write(self, data: bytes) -> None:
        """Queue ``data``; send once RESPONSE_CHUNK_BYTES have gathered."""
        self._pieces.append(bytes(data))
        self._size += len(data)
        if self._size >= limits.RESPONSE_CHUNK_BYTES:
            self._flush(more=True)

    def finish(self) -> None:
        """Send what is left and end the response."""
        if not self.finished:
            self._flush(more=False)
            self.finished = True

    def _flush(self, *, more: bool) -> None:
        if not self.started:
            self.started = True
            self._run(
                self._send,
                {
                    "type": "http.response.start",
                    "status": 200,
                    "headers": [
                        (b"content-type", self._content_type),
                        (b"cache-control", b"no-cache, max-age=0, must-revalidate"),
                        (b"expires", b"Fri, 01 Jan 1980 00:00:00 GMT"),
                        (b"pragma", b"no-cache"),
                    ],
                },
            )
        body = b"".join(self._pieces)
        self._pieces.clear()
        self._size = 0
        self._run(self._send, {"type": "http.response.body", "body": body, "more_body": more})
