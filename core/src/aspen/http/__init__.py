"""One HTTP serving helper for plugins that speak HTTP, with hardened defaults.

A plugin gives an ASGI app (Starlette, or any ASGI callable), a ``host:port`` and the
shape of its JSON errors; the listener bounds what a client may hold (see
:class:`HttpLimits`, defaults in :mod:`aspen.limits`): headers must be complete within
``HTTP_HEADER_TIMEOUT_SECONDS`` (slowloris), a body must keep a minimum rate, idle
kept-alive connections close, a listener holds at most ``HTTP_MAX_CONNECTIONS`` (and at
most ``HTTP_MAX_FD_SHARE`` of the process's open-file limit), headers and bodies are
bounded in bytes, and malformed HTTP is answered in JSON. Plugins reach it through
``node.serve_http(...)`` (see docs/plugins.md)::

    server = node.serve_http(app, "127.0.0.1:8200", name="secrets",
                             error_body=lambda status, message: {"errors": [message]})
    server.address    # "127.0.0.1:8200" as bound (port 0 picks a free one)
    server.stop()     # in aspen_shutdown

The interface names no server. Today it is the core's own: an asyncio ``Protocol`` per
connection (:mod:`aspen.http.connection`) over a strict sans-IO HTTP/1.1 parser
(:mod:`aspen.http.parse`) that accepts extension methods such as Vault's ``LIST``; on the
node's uvloop it costs a fraction of uvicorn's h11 path, and it needs no dependency.
Measured against the others (``bench/http_servers.py``): uvicorn with httptools is about
as cheap but llhttp refuses ``LIST``; granian (hyper) takes ``LIST`` but costs about twice
the CPU per request embedded in the loop, and answers malformed or oversized requests
itself, with no connection cap or body-rate clock to keep these guarantees.
"""

from __future__ import annotations

import asyncio
import logging
import os
import resource
import socket
from dataclasses import dataclass

from aspen import limits as core_limits
from aspen.errors import InvalidArgumentError
from aspen.http.body import App, BodyLimit
from aspen.http.connection import HttpConnection, Listener
from aspen.http.errors import ErrorBody, default_error_body

__all__ = [
    "DEV_NODE_INDEX_ENV",
    "LISTEN_OFF",
    "ErrorBody",
    "HttpLimits",
    "HttpServer",
    "default_error_body",
    "effective_max_connections",
    "listen_address",
    "parse_listen",
]

log = logging.getLogger(__name__)

#: Seconds a stopping listener still takes in connections the kernel accepted already.
_ACCEPT_GRACE_SECONDS = 0.05


@dataclass(frozen=True)
class HttpLimits:
    """The bounds of one listener; each defaults to its ``HTTP_*`` constant in
    :mod:`aspen.limits`. ``max_body_name`` is the bound a 413 names (a plugin that sets
    its own ``max_body_bytes`` names its own constant)."""

    header_timeout: float = core_limits.HTTP_HEADER_TIMEOUT_SECONDS
    body_timeout: float = core_limits.HTTP_BODY_TIMEOUT_SECONDS
    min_body_rate: int = core_limits.HTTP_MIN_BODY_BYTES_PER_SECOND
    idle_timeout: float = core_limits.HTTP_IDLE_TIMEOUT_SECONDS
    max_connections: int = core_limits.HTTP_MAX_CONNECTIONS
    max_header_bytes: int = core_limits.HTTP_MAX_HEADER_BYTES
    max_body_bytes: int = core_limits.HTTP_MAX_BODY_BYTES
    max_body_name: str = "HTTP_MAX_BODY_BYTES"
    shutdown_seconds: float = core_limits.HTTP_SHUTDOWN_SECONDS


def parse_listen(text: str) -> tuple[str, int]:
    """``host:port`` (``[v6]:port``) → ``(host, port)`` (``invalid_argument`` if malformed)."""
    host, sep, port = text.strip().rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise InvalidArgumentError(f"an HTTP listen address must be host:port, got {text!r}")
    return host.strip("[]"), int(port)


#: Set by ``aspen dev up`` to each node's 0-based index: a plugin's default port moves up by it.
DEV_NODE_INDEX_ENV = "ASPEN_DEV_NODE_INDEX"
#: ``http_listen`` values that turn a plugin's HTTP listener off.
LISTEN_OFF = frozenset({"off", "none", "disabled"})


def listen_address(configured: object, default_port: int) -> str | None:
    """Where a plugin's listener binds: its configured ``http_listen``, else
    ``127.0.0.1:<default_port + $ASPEN_DEV_NODE_INDEX>`` (so the nodes of ``aspen dev up``
    do not collide); ``None`` when it is configured off (``off``, ``none``, ``disabled``)."""
    listen = str(configured or "").strip()
    if listen.lower() in LISTEN_OFF:
        return None
    if listen:
        return listen
    index = os.environ.get(DEV_NODE_INDEX_ENV, "")
    return f"127.0.0.1:{default_port + (int(index) if index.isdigit() else 0)}"


def effective_max_connections(configured: int) -> int:
    """``configured``, lowered to ``HTTP_MAX_FD_SHARE`` of the open-file limit."""
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        return configured
    return max(1, min(configured, int(soft * core_limits.HTTP_MAX_FD_SHARE)))


class HttpServer:
    """One hardened HTTP listener serving an ASGI app: :meth:`bind`, then :meth:`serve`
    (``node.serve_http`` does both), :meth:`stop` to finish."""

    def __init__(
        self,
        app: App,
        listen: str,
        *,
        name: str,
        error_body: ErrorBody = default_error_body,
        limits: HttpLimits | None = None,
    ) -> None:
        self.app = app
        self.listen = listen
        self.name = name
        self.error_body = error_body
        self.limits = limits or HttpLimits()
        #: ``host:port`` as bound (after :meth:`bind`).
        self.address = ""
        #: Why serving stopped early (``""`` while it serves or after a clean stop).
        self.error = ""
        self._socket: socket.socket | None = None
        self._listener: Listener | None = None
        self._stop: asyncio.Event | None = None
        self._stop_asked = False

    def bind(self) -> str:
        """Bind the listening socket (so ``host:0`` works and a taken port is reported
        before anything runs); returns the bound ``host:port``."""
        host, port = parse_listen(self.listen)
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((host, port))
            sock.listen(128)
            sock.setblocking(False)
        except OSError:
            sock.close()
            raise
        self._socket = sock
        bound = sock.getsockname()[1]
        self.address = f"[{host}]:{bound}" if family == socket.AF_INET6 else f"{host}:{bound}"
        return self.address

    async def serve(self) -> None:
        """Serve until :meth:`stop` (a failure is logged and kept in :attr:`error`)."""
        assert self._socket is not None, "bind() first"
        lim = self.limits
        listener = self._listener = Listener(
            BodyLimit(self.app, lim.max_body_bytes, lim.max_body_name, self.error_body),
            header_timeout=lim.header_timeout,
            body_timeout=lim.body_timeout,
            min_body_rate=lim.min_body_rate,
            idle_timeout=lim.idle_timeout,
            max_connections=effective_max_connections(lim.max_connections),
            max_header_bytes=lim.max_header_bytes,
            shape=self.error_body,
        )
        self._stop = asyncio.Event()
        if self._stop_asked:
            self._stop.set()
        loop = asyncio.get_running_loop()
        try:
            server = await loop.create_server(
                lambda: HttpConnection(listener), sock=self._socket, backlog=128
            )
        except Exception as exc:
            log.exception("the %s HTTP listener on %s did not start", self.name, self.address)
            self.error = f"the HTTP listener stopped ({exc!r}); see the node log"
            self._socket.close()
            return
        try:
            await self._stop.wait()
            await self._shut_down(server, listener)
        finally:  # also when cancelled (the node stopping its tasks): nothing stays open
            server.close()
            listener.stopping = True
            for conn in list(listener.connections):
                conn.abort()
            for task in list(listener.tasks):
                task.cancel()

    async def _shut_down(self, server: asyncio.Server, listener: Listener) -> None:
        """Stop accepting; close idle and half-sent connections; give open requests
        ``shutdown_seconds`` (then the caller closes the rest)."""
        # connections the kernel accepted already (a request maybe on its way) are taken in
        # and read first: closing them unread, or closing the socket they wait on, resets
        await asyncio.sleep(_ACCEPT_GRACE_SECONDS)
        server.close()
        listener.stopping = True
        for conn in list(listener.connections):
            conn.shutdown()
        if listener.tasks:
            await asyncio.wait(set(listener.tasks), timeout=self.limits.shutdown_seconds)

    def stop(self) -> None:
        """Ask the listener to finish (open requests get ``shutdown_seconds``); call it
        from the event loop's thread."""
        self._stop_asked = True
        if self._stop is not None:
            self._stop.set()
        elif self._socket is not None:
            self._socket.close()

    def stats(self) -> dict[str, int]:
        """Open connections (``lingering``: answered with an error, closing), and those
        refused over the cap or cut off by a timeout."""
        listener = self._listener
        if listener is None:
            return dict.fromkeys(
                ("connections", "max_connections", "lingering", "refused", "timeouts"), 0
            )
        return {
            "connections": len(listener.connections),
            "max_connections": listener.max_connections,
            "lingering": listener.lingering,
            "refused": listener.refused,
            "timeouts": listener.header_timeouts + listener.body_timeouts,
        }
