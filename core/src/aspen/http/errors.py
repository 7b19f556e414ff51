"""The errors a hardened HTTP listener answers by itself, in the shape its plugin chose.

A listener answers some requests before (or instead of) the plugin's app: a connection
over the cap (503), headers or a body that come too slowly (408), headers too big (431),
a body too big (413), malformed HTTP (400). Each is a JSON body made by the plugin's
:data:`ErrorBody` function, so a client sees the same error shape as from the app.
"""

from __future__ import annotations

import http
import json
from collections.abc import Callable
from typing import Any

__all__ = ["ErrorBody", "ListenerError", "default_error_body", "raw_response"]

#: ``(status, message) -> JSON-serialisable body`` of an error the listener answers itself.
ErrorBody = Callable[[int, str], Any]


def default_error_body(status: int, message: str) -> dict[str, Any]:
    """``{"error": message}``: the shape used when a plugin gives none."""
    return {"error": message}


class ListenerError:
    """One error answer: a status and a message, encoded with the plugin's shape."""

    __slots__ = ("message", "status")

    def __init__(self, status: int, message: str) -> None:
        self.status = status
        self.message = message

    def body(self, shape: ErrorBody) -> bytes:
        """The JSON body of this error in ``shape``."""
        return json.dumps(shape(self.status, self.message), separators=(",", ":")).encode()

    def headers(self, body: bytes) -> list[tuple[bytes, bytes]]:
        """Response headers: JSON, its length, and ``Connection: close``."""
        return [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
            (b"cache-control", b"no-store"),
            (b"connection", b"close"),
        ]


def raw_response(error: ListenerError, shape: ErrorBody) -> bytes:
    """The complete HTTP/1.1 response bytes of ``error`` (for answers written on the
    socket before any request was parsed)."""
    body = error.body(shape)
    try:
        phrase = http.HTTPStatus(error.status).phrase
    except ValueError:
        phrase = ""
    head = [f"HTTP/1.1 {error.status} {phrase}".encode()]
    head += [name + b": " + value for name, value in error.headers(body)]
    return b"\r\n".join(head) + b"\r\n\r\n" + body
