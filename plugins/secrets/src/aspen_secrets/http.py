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

Bodies of writes are JSON, or a form (``application/x-www-form-urlencoded`` whose body
does not start with ``{`` or ``[``) as Vault parses them: each field a string, repeated
fields joined with commas. JSON's ``NaN`` and ``Infinity`` and request targets whose
percent-encoded bytes are not UTF-8 are refused (400). The app is served by the core's
hardened listener (:mod:`aspen.http`: header/body timeouts, a connection cap), whose own
errors come in Vault's ``{"errors": [...]}`` shape.
"""

from __future__ import annotations

import json
import logging
import math
import uuid
from collections.abc import MutableMapping
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, unquote_to_bytes

from starlette.applications import Starlette
from starlette.requests import ClientDisconnect
from starlette.requests import Request as HttpRequest
from starlette.responses import Response as HttpResponse
from starlette.routing import Route

from aspen.errors import AspenError, InvalidArgumentError
from aspen.http import HttpLimits, HttpServer
from aspen.node.auth import TokenAuthenticator
from aspen_secrets import limits
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
    from aspen_secrets.service import SecretsService

__all__ = ["HTTP_LIMITS", "JSON", "build_app", "serve", "vault_error_body"]

log = logging.getLogger(__name__)

#: The content type of every JSON answer, exactly as Vault sends it.
JSON = "application/json"
_METHODS = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "LIST"]
_FORM = "application/x-www-form-urlencoded"
#: Bytes of a body Vault looks at to tell a form from JSON.
_FORM_SNIFF_BYTES = 512
_TRUE = frozenset({"true", "1", "yes", "t"})
#: The listener's bounds: the core's defaults, with the plugin's own body bound.
HTTP_LIMITS = HttpLimits(
    max_body_bytes=limits.SECRETS_MAX_REQUEST_BYTES, max_body_name="SECRETS_MAX_REQUEST_BYTES"
)


def vault_error_body(status: int, message: str) -> dict[str, Any]:
    """Vault's error shape, ``{"errors": [message]}`` (also for the listener's own errors)."""
    return {"errors": [message]}


def _json_response(body: Any, status: int = 200) -> HttpResponse:
    return HttpResponse(
        json.dumps(body, separators=(",", ":")).encode(),
        status_code=status,
        headers={"Content-Type": JSON, "Cache-Control": "no-store"},
    )


def _error(status: int, *messages: str) -> HttpResponse:
    return _json_response({"errors": list(messages)}, status)


def _check_target(scope: MutableMapping[str, Any]) -> None:
    """Refuse a path or query whose percent-encoded bytes are not UTF-8: decoded leniently,
    ``%ff%fe`` and ``%fe%ff`` would both read as the same two U+FFFD characters."""
    for part in (scope.get("raw_path") or b"", scope.get("query_string") or b""):
        try:
            unquote_to_bytes(part.replace(b"+", b" ")).decode("utf-8")
        except UnicodeDecodeError:
            raise InvalidArgumentError(
                "the request path or query has percent-encoded bytes that are not UTF-8"
            ) from None


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


def _refuse_constant(name: str) -> Any:
    raise InvalidArgumentError(f"failed to parse JSON input: {name} is not valid JSON")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise InvalidArgumentError(f"failed to parse JSON input: {text} is out of range")
    return value


def _parse_json(body: bytes) -> dict[str, Any]:
    """A JSON object body (any content type, as Vault); ``NaN``/``Infinity`` and numbers
    beyond a double are refused: they could not be answered as valid JSON."""
    if not body.strip():
        return {}
    try:
        data = json.loads(body, parse_constant=_refuse_constant, parse_float=_finite_float)
    except (ValueError, UnicodeDecodeError) as exc:
        raise InvalidArgumentError(f"failed to parse JSON input: {exc}") from None
    except RecursionError:
        raise InvalidArgumentError("failed to parse JSON input: nested too deeply") from None
    if not isinstance(data, dict):
        raise InvalidArgumentError("the request body must be a JSON object")
    return data


def _is_form(body: bytes, content_type: str) -> bool:
    """Vault's test: a form content type and a body that does not start like JSON."""
    if content_type.split(";")[0].strip().lower() != _FORM:
        return False
    return body[:_FORM_SNIFF_BYTES].lstrip(b" \t\r\n")[:1] not in (b"{", b"[")


def _parse_form(body: bytes) -> dict[str, Any]:
    """A form body as Vault reads one: each field a string, repeated ones comma-joined."""
    try:
        fields = parse_qs(body.decode("ascii"), keep_blank_values=True, errors="strict")
    except UnicodeError:
        raise InvalidArgumentError("error parsing form data: not valid UTF-8") from None
    return {name: ",".join(values) for name, values in fields.items()}


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
            _check_target(request.scope)
            if path == "sys/health":
                return await self._health(request)
            if not self._token_ok(request) and not await self._public(request, path):
                raise ForbiddenError("permission denied")
            return await self._serve(request, path)
        except AspenError as exc:
            status = exc.details.get("http_status") or http_status(exc)
            return _error(status, exc.message)
        except ClientDisconnect:  # gone, or cut off by the listener (which answered)
            return HttpResponse(status_code=400)
        except Exception:
            log.exception("secrets HTTP request %s /v1/%s failed", request.method, path)
            return _error(500, "internal error")

    async def _serve(self, request: HttpRequest, path: str) -> HttpResponse:
        query = dict(request.query_params)
        operation = _operation(request.method, query)
        body = await request.body()  # bounded by the listener (SECRETS_MAX_REQUEST_BYTES)
        content_type = request.headers.get("content-type", "")
        if operation in (Operation.READ, Operation.LIST, Operation.DELETE):
            data: dict[str, Any] = {k: v for k, v in query.items() if k != "list"}
        elif operation == Operation.WRITE and _is_form(body, content_type):
            data = _parse_form(body)
        else:
            data = _parse_json(body)
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


def serve(service: SecretsService, listen: str) -> HttpServer:
    """Serve :func:`build_app` on ``listen`` through the node's hardened HTTP listener
    (bound on return; ``OSError`` if the address is taken)."""
    return service.node.serve_http(
        build_app(service),
        listen,
        name="secrets",
        error_body=vault_error_body,
        limits=HTTP_LIMITS,
    )
