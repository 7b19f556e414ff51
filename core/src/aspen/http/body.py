"""ASGI middleware that bounds request bodies (the server-agnostic part of a listener).

A declared ``Content-Length`` over the bound is answered 413 before the app runs; a body
that grows over it while the app reads it (chunked uploads) is answered 413, and the app
sees ``http.disconnect`` (Starlette raises ``ClientDisconnect``); what the app sends after
that is dropped.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from aspen.http.errors import ErrorBody, ListenerError

__all__ = ["BodyLimit"]

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
App = Callable[[Scope, Receive, Send], Awaitable[None]]


def _declared_length(scope: Scope) -> int | None:
    for name, value in scope.get("headers", ()):
        if name == b"content-length" and value.isdigit():
            return int(value)
    return None


async def _send_error(send: Send, error: ListenerError, shape: ErrorBody) -> None:
    body = error.body(shape)
    await send(
        {"type": "http.response.start", "status": error.status, "headers": error.headers(body)}
    )
    await send({"type": "http.response.body", "body": body})


class BodyLimit:
    """Wrap an ASGI ``app`` so that no request body over ``max_bytes`` reaches it."""

    def __init__(self, app: App, max_bytes: int, bound_name: str, shape: ErrorBody) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.shape = shape
        self.error = ListenerError(413, f"request body is over {bound_name} ({max_bytes} bytes)")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Serve one ASGI connection scope."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = _declared_length(scope)
        if declared is not None and declared > self.max_bytes:
            await _send_error(send, self.error, self.shape)
            return
        received = 0
        refused = False

        async def bounded_receive() -> Message:
            nonlocal received, refused
            if refused:
                return {"type": "http.disconnect"}
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    refused = True
                    if not started:
                        await _send_error(send, self.error, self.shape)
                    return {"type": "http.disconnect"}
            return message

        started = False

        async def guarded_send(message: Message) -> None:
            nonlocal started
            if refused:
                return  # the listener answered 413 already
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        await self.app(scope, bounded_receive, guarded_send)
