"""The Vault-compatible HTTP API: a Starlette app served by uvicorn inside the node.

``/v1/<path>``: GET → read (``?list=true`` → list), LIST → list, POST/PUT → write with the
JSON body, PATCH → patch (``application/merge-patch+json`` or JSON), DELETE → delete.
GET and DELETE query parameters become the request data. The token comes in
``X-Vault-Token`` (or ``Authorization: Bearer``) and is checked against the node's root
token in constant time (403 otherwise), except for the reads an engine declares public
in its class's ``unauthenticated_paths`` (regular expressions relative to the mount, as
PKI's CA and CRL). Answers use Vault's envelope, ``204`` for an empty success (no data
and no warnings), ``{"errors": [...]}`` with Vault's status codes, and ``Content-Type:
application/json`` exactly. ``sys/health`` needs no token either and answers 200
(active), 429 (standby), 503 (sealed) like Vault, with its query overrides.
"""

from __future__ import annotations

import json
import logging
import socket
import uuid
from contextlib import nullcontext
from typing import TYPE_CHECKING, Any

from starlette.applications import Starlette
from starlette.requests import Request as HttpRequest
from starlette.responses import Response as HttpResponse
from starlette.routing import Route

from aspen import limits
from aspen.errors import AspenError, InvalidArgumentError, ResourceExhaustedError
from aspen.node.auth import TokenAuthenticator
from aspen_secrets.fields import get_status_code
from aspen_secrets.logical import (
    ForbiddenError,
    Operation,
    Request,
    Response,
    UnsupportedOperationError,
    UnsupportedPathError,
    http_status,
)

if TYPE_CHECKING:
    import uvicorn

    from aspen_secrets.service import SecretsService

__all__ = ["JSON", "HttpServer", "build_app", "parse_listen"]

log = logging.getLogger(__name__)

#: The content type of every JSON answer, exactly as Vault sends it.
JSON = "application/json"
_METHODS = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "LIST"]
_JSON_TYPES = frozenset({"application/json", "application/merge-patch+json", ""})
_TRUE = frozenset({"true", "1", "yes", "t"})


def parse_listen(text: str) -> tuple[str, int]:
    """``host:port`` → ``(host, port)`` (``invalid_argument`` if malformed)."""
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise InvalidArgumentError(f"http_listen must be host:port, got {text!r}")
    return host.strip("[]"), int(port)


def _json_response(body: Any, status: int = 200) -> HttpResponse:
    return HttpResponse(
        json.dumps(body, separators=(",", ":")).encode(),
        status_code=status,
        headers={"Content-Type": JSON, "Cache-Control": "no-store"},
    )


def _error(status: int, *messages: str) -> HttpResponse:
    return _json_response({"errors": list(messages)}, status)


def _envelope(response: Response, mount_type: str, top_level: bool) -> dict[str, Any]:
    body: dict[str, Any] = {
        "request_id": str(uuid.uuid4()),
        "lease_id": "",
        "renewable": False,
        "lease_duration": 0,
        "data": response.data,
        "wrap_info": None,
        "warnings": list(response.warnings) or None,
        "auth": None,
        "mount_type": mount_type,
    }
    if top_level and response.data:  # Vault's sys endpoints also answer at the top level
        body = {**response.data, **body}
    return body


def _operation(method: str, query: dict[str, str]) -> Operation:
    if method == "GET":
        return Operation.LIST if query.get("list", "").lower() in _TRUE else Operation.READ
    table = {
        "LIST": Operation.LIST,
        "POST": Operation.WRITE,
        "PUT": Operation.WRITE,
        "PATCH": Operation.PATCH,
        "DELETE": Operation.DELETE,
    }
    if method not in table:
        raise UnsupportedOperationError(f"unsupported HTTP method {method}")
    return table[method]


async def _read_body(request: HttpRequest) -> bytes:
    """The request body, refused beyond ``SECRETS_MAX_REQUEST_BYTES``."""
    bound = limits.SECRETS_MAX_REQUEST_BYTES
    too_big = ResourceExhaustedError(
        f"request body is over SECRETS_MAX_REQUEST_BYTES ({bound} bytes)"
    )
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > bound:
        raise too_big
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > bound:
            raise too_big
        chunks.append(chunk)
    return b"".join(chunks)


def _parse_json(body: bytes, content_type: str) -> dict[str, Any]:
    if not body.strip():
        return {}
    if content_type not in _JSON_TYPES:
        raise InvalidArgumentError(f"unsupported content type {content_type!r}; send JSON")
    try:
        data = json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise InvalidArgumentError(f"failed to parse JSON input: {exc}") from None
    except RecursionError:
        raise InvalidArgumentError("failed to parse JSON input: nested too deeply") from None
    if not isinstance(data, dict):
        raise InvalidArgumentError("the request body must be a JSON object")
    return data


class _Api:
    """The request handler, bound to one node's service."""

    def __init__(self, service: SecretsService) -> None:
        self.service = service
        self.auth = TokenAuthenticator(service.node.token)

    def _token_ok(self, request: HttpRequest) -> bool:
        token = request.headers.get("x-vault-token")
        if not token:
            scheme, _, value = request.headers.get("authorization", "").partition(" ")
            token = value.strip() if scheme.lower() == "bearer" else None
        return self.auth(token) is not None

    async def _public(self, request: HttpRequest, path: str) -> bool:
        """Whether ``request`` is a read its engine serves without a token (the engine
        class's ``unauthenticated_paths``: PKI's CA certificate and CRL, ``sys/leader``…)."""
        if request.method != "GET":
            return False
        if _operation(request.method, dict(request.query_params)) != Operation.READ:
            return False
        return await self.service.dispatcher.unauthenticated(path)

    async def handle(self, request: HttpRequest) -> HttpResponse:
        """Serve one HTTP request."""
        path = request.path_params["path"].strip("/")
        try:
            if path == "sys/health":
                return await self._health(request)
            if not self._token_ok(request) and not await self._public(request, path):
                raise ForbiddenError("permission denied")
            return await self._serve(request, path)
        except AspenError as exc:
            status = exc.details.get("http_status") or http_status(exc)
            return _error(status, exc.message)
        except Exception:
            log.exception("secrets HTTP request %s /v1/%s failed", request.method, path)
            return _error(500, "internal error")

    async def _serve(self, request: HttpRequest, path: str) -> HttpResponse:
        query = dict(request.query_params)
        operation = _operation(request.method, query)
        if operation in (Operation.READ, Operation.LIST, Operation.DELETE):
            data: dict[str, Any] = {k: v for k, v in query.items() if k != "list"}
            await _read_body(request)  # drained (and bounded), not used
        else:
            content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
            data = _parse_json(await _read_body(request), content_type)
        if not path:
            raise UnsupportedPathError('no handler for route ""')
        logical = Request(operation, path, data)
        response, mount_type = await self.service.dispatcher.dispatch_routed(path, logical)
        return self._answer(response, mount_type, path.startswith("sys/"))

    @staticmethod
    def _answer(response: Response, mount_type: str, top_level: bool) -> HttpResponse:
        if response.raw is not None:
            return HttpResponse(
                response.raw,
                status_code=response.status or 200,
                headers={"Content-Type": response.content_type},
            )
        if response.data is None and not response.warnings:
            if response.status is None or response.status == 204:
                return HttpResponse(status_code=204)
            if response.status >= 400:
                return _error(response.status)
        return _json_response(_envelope(response, mount_type, top_level), response.status or 200)

    async def _health(self, request: HttpRequest) -> HttpResponse:
        if request.method not in ("GET", "HEAD"):
            raise UnsupportedOperationError(f"{request.method} is not supported on sys/health")
        query = dict(request.query_params)
        body = await self.service.health()
        if body["sealed"]:
            status = _code(query, "sealedcode", 503)
        elif body["standby"]:
            standby_ok = query.get("standbyok", "").lower() in _TRUE
            status = 200 if standby_ok else _code(query, "standbycode", 429)
        else:
            status = _code(query, "activecode", 200)
        if request.method == "HEAD":
            return HttpResponse(status_code=status, headers={"Content-Type": JSON})
        return _json_response(body, status)


def _code(query: dict[str, str], name: str, default: int) -> int:
    """A status code override of ``sys/health`` (``invalid_argument`` unless 200-599 and
    able to carry the body)."""
    return get_status_code(query, name, default)


async def _not_found(request: HttpRequest, exc: Exception) -> HttpResponse:
    return _error(404, f"no handler for route {request.url.path!r}")


async def _method_not_allowed(request: HttpRequest, exc: Exception) -> HttpResponse:
    return _error(405, f"unsupported operation: {request.method}")


def build_app(service: SecretsService) -> Starlette:
    """The Starlette app serving ``/v1/…`` for ``service``."""
    return Starlette(
        routes=[Route("/v1/{path:path}", _Api(service).handle, methods=_METHODS)],
        exception_handlers={404: _not_found, 405: _method_not_allowed},
    )


class HttpServer:
    """uvicorn serving :func:`build_app` on a socket bound up front (so ``host:0`` works
    and a bind failure is reported before anything runs)."""

    def __init__(self, service: SecretsService, listen: str) -> None:
        self.service = service
        self.listen = listen
        self._socket: socket.socket | None = None
        self._server: uvicorn.Server | None = None

    def bind(self) -> str:
        """Bind the listening socket; returns the bound ``host:port``."""
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
        bound_port = sock.getsockname()[1]
        return f"[{host}]:{bound_port}" if family == socket.AF_INET6 else f"{host}:{bound_port}"

    async def serve(self) -> None:
        """Serve until :meth:`stop` (run it with ``node.spawn``)."""
        import uvicorn

        class _Server(uvicorn.Server):
            def capture_signals(self) -> Any:  # the node owns the process's signals
                return nullcontext()

        config = uvicorn.Config(
            build_app(self.service),
            log_config=None,
            access_log=False,
            lifespan="off",
            # h11, not httptools: llhttp refuses Vault's LIST method ("Invalid HTTP request")
            http="h11",
            timeout_graceful_shutdown=int(limits.SECRETS_HTTP_SHUTDOWN_SECONDS),
        )
        self._server = _Server(config)
        assert self._socket is not None, "bind() first"
        try:
            await self._server.serve(sockets=[self._socket])
        except Exception:
            log.exception("the secrets HTTP server stopped")
            self.service.http_error = "the HTTP server stopped; see the node log"

    def stop(self) -> None:
        """Ask the server to finish (open requests get a short grace period)."""
        if self._server is not None:
            self._server.should_exit = True
        elif self._socket is not None:
            self._socket.close()
