"""The Vault-compatible HTTP API: a plain ASGI app served by the node's HTTP listener.

``/v1/<path>``: GET → read (``?list=true`` → list), LIST → list, POST/PUT → write with the
JSON body, PATCH → patch (``application/merge-patch+json`` or JSON), DELETE → delete.
GET and DELETE query parameters become the request data. The token comes in
``X-Vault-Token`` (or ``Authorization: Bearer``): the node's root token, or a capability
token limited to its ``secrets:`` capabilities (:mod:`aspen_secrets.access`; 403 naming
the missing one otherwise), except for the reads an engine declares public
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
errors come in Vault's ``{"errors": [...]}`` shape. The app is a bare ASGI callable (one
route, no framework): on the request path every layer costs, and this one has one job.
"""

from __future__ import annotations

import hmac
import json
import logging
import math
import random
import uuid
from collections.abc import Awaitable, Callable, MutableMapping
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, parse_qsl, unquote_to_bytes

from aspen.auth.access import ROOT, Authority
from aspen.errors import AspenError, InvalidArgumentError
from aspen.http import HttpLimits, HttpServer
from aspen_secrets import limits
from aspen_secrets.access import (
    TOKEN_CREATE,
    TOKEN_SELF,
    authenticate,
    create_token,
    lookup_self,
    require,
)
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

__all__ = ["HTTP_LIMITS", "JSON", "VaultApi", "serve", "vault_error_body"]

log = logging.getLogger(__name__)

#: The content type of every JSON answer, exactly as Vault sends it.
JSON = "application/json"
_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "LIST"})
_PREFIX = "/v1/"
_JSON_HEADERS = [(b"content-type", JSON.encode()), (b"cache-control", b"no-store")]
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


Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]


class HttpResponse:
    """One answer: status, body bytes and headers (``(lower-case name, value)`` pairs)."""

    __slots__ = ("body", "headers", "status")

    def __init__(
        self, status: int, body: bytes = b"", headers: list[tuple[bytes, bytes]] | None = None
    ) -> None:
        self.status = status
        self.body = body
        self.headers = headers or []

    async def send(self, send: Send) -> None:
        """Send it as an ASGI response (the listener adds its length)."""
        await send({"type": "http.response.start", "status": self.status, "headers": self.headers})
        await send({"type": "http.response.body", "body": self.body})


class ClientDisconnect(Exception):
    """The client went away (or the listener cut the body off) before the body was read."""


class HttpRequest:
    """What the API reads of one request: method, path, query, headers and body."""

    __slots__ = ("_query", "_receive", "headers", "method", "scope")

    def __init__(self, scope: Scope, receive: Receive) -> None:
        self.scope = scope
        self.method: str = scope["method"]
        self.headers: list[tuple[bytes, bytes]] = scope["headers"]
        self._receive = receive
        self._query: dict[str, str] | None = None

    def header(self, name: bytes) -> str:
        """The first value of header ``name`` (lower case), ``""`` if absent."""
        for key, value in self.headers:
            if key == name:
                return value.decode("latin-1")
        return ""

    @property
    def query(self) -> dict[str, str]:
        """The query parameters (the last value of a repeated one)."""
        if self._query is None:
            raw = self.scope["query_string"].decode("latin-1")
            self._query = dict(parse_qsl(raw, keep_blank_values=True)) if raw else {}
        return self._query

    async def body(self) -> bytes:
        """The whole body (bounded by the listener: SECRETS_MAX_REQUEST_BYTES)."""
        parts = []
        while True:
            message = await self._receive()
            if message["type"] == "http.disconnect":
                raise ClientDisconnect
            parts.append(message.get("body", b""))
            if not message.get("more_body", False):
                return b"".join(parts)


#: One encoder for every answer (``json.dumps`` with options builds one per call).
_JSON_ENCODER = json.JSONEncoder(separators=(",", ":"))


def _json_response(body: Any, status: int = 200) -> HttpResponse:
    return HttpResponse(status, _JSON_ENCODER.encode(body).encode(), _JSON_HEADERS)


def _error(status: int, *messages: str) -> HttpResponse:
    return _json_response({"errors": list(messages)}, status)


def _check_target(scope: MutableMapping[str, Any]) -> None:
    """Refuse a path or query whose percent-encoded bytes are not UTF-8: decoded leniently,
    ``%ff%fe`` and ``%fe%ff`` would both read as the same two U+FFFD characters."""
    for part in (scope.get("raw_path") or b"", scope.get("query_string") or b""):
        if b"%" not in part:
            continue  # the listener admits ASCII targets only: nothing to decode
        try:
            unquote_to_bytes(part.replace(b"+", b" ")).decode("utf-8")
        except UnicodeDecodeError:
            raise InvalidArgumentError(
                "the request path or query has percent-encoded bytes that are not UTF-8"
            ) from None


def _envelope(response: Response, mount_type: str, top_level: bool) -> dict[str, Any]:
    body: dict[str, Any] = {
        # random, like Vault's, without a system call per request (an id, not a secret)
        "request_id": str(uuid.UUID(int=random.getrandbits(128), version=4)),
        "lease_id": "",
        "renewable": False,
        "lease_duration": 0,
        "data": response.data,
        "wrap_info": None,
        "warnings": list(response.warnings) or None,
        "auth": response.auth,
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


#: One decoder for every body (``json.loads`` with hooks builds one per call).
_JSON_DECODER = json.JSONDecoder(parse_constant=_refuse_constant, parse_float=_finite_float)


def _parse_json(body: bytes) -> dict[str, Any]:
    """A JSON object body (any content type, as Vault); ``NaN``/``Infinity`` and numbers
    beyond a double are refused: they could not be answered as valid JSON."""
    if not body.strip():
        return {}
    try:
        # what json.loads does with bytes: UTF-8/16/32 as the first bytes tell
        data = _JSON_DECODER.decode(body.decode(json.detect_encoding(body), "surrogatepass"))
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


class VaultApi:
    """The ASGI app of ``/v1/…``, bound to one node's service."""

    def __init__(self, service: SecretsService) -> None:
        self.service = service
        #: The root token's bytes once presented (checked first, in constant time, so that a
        #: client repeating it skips parsing it again).
        self._accepted = b""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Serve one ASGI connection scope (HTTP only)."""
        if scope["type"] != "http":
            return
        path: str = scope["path"]
        if not path.startswith(_PREFIX):
            response = _error(404, f"no handler for route {path!r}")
        elif scope["method"] not in _METHODS:
            response = _error(405, f"unsupported operation: {scope['method']}")
        else:
            response = await self.handle(HttpRequest(scope, receive), path[len(_PREFIX) :])
        await response.send(send)

    def _authority(self, request: HttpRequest) -> Authority | None:
        """The presented token's authority; ``None`` without a token; 403 for a bad one."""
        token = request.header(b"x-vault-token")
        if not token:
            scheme, _, value = request.header(b"authorization").partition(" ")
            token = value.strip() if scheme.lower() == "bearer" else ""
        if not token:
            return None
        presented = token.encode("utf-8", "surrogateescape")
        if self._accepted and hmac.compare_digest(presented, self._accepted):
            return ROOT
        authority = authenticate(self.service.node, token)
        if authority.unrestricted:
            self._accepted = presented
        return authority

    async def _public(self, request: HttpRequest, path: str) -> bool:
        """Whether ``request`` is a read its engine serves without a token (the engine
        class's ``unauthenticated_paths``: PKI's CA certificate and CRL, ``sys/leader``…)."""
        if request.method != "GET":
            return False
        if _operation(request.method, request.query) != Operation.READ:
            return False
        return await self.service.dispatcher.unauthenticated(path)

    async def handle(self, request: HttpRequest, path: str) -> HttpResponse:
        """Serve one HTTP request for ``path`` (after ``/v1/``)."""
        path = path.strip("/")
        try:
            _check_target(request.scope)
            if path == "sys/health":
                return await self._health(request)
            refused: ForbiddenError | None = None
            try:
                authority = self._authority(request)
            except ForbiddenError as exc:  # a public read ignores a bad token, as Vault does
                authority, refused = None, exc
            if authority is None and not await self._public(request, path):
                raise refused or ForbiddenError("permission denied")
            return await self._serve(request, path, authority)
        except AspenError as exc:
            status = exc.details.get("http_status") or http_status(exc)
            return _error(status, exc.message)
        except ClientDisconnect:  # gone, or cut off by the listener (which answered)
            return HttpResponse(400)
        except Exception:
            log.exception("secrets HTTP request %s /v1/%s failed", request.method, path)
            return _error(500, "internal error")

    async def _serve(
        self, request: HttpRequest, path: str, authority: Authority | None
    ) -> HttpResponse:
        query = request.query
        operation = _operation(request.method, query)
        body = await request.body()  # bounded by the listener (SECRETS_MAX_REQUEST_BYTES)
        content_type = request.header(b"content-type")
        if operation in (Operation.READ, Operation.LIST, Operation.DELETE):
            data: dict[str, Any] = {k: v for k, v in query.items() if k != "list"}
        elif operation == Operation.WRITE and _is_form(body, content_type):
            data = _parse_form(body)
        else:
            data = _parse_json(body)
        if not path:
            raise UnsupportedPathError('no handler for route ""')
        if authority is not None:
            if path == TOKEN_SELF:
                return self._answer(lookup_self(authority), "token", False)
            if path == TOKEN_CREATE and operation == Operation.WRITE:
                made = await create_token(self.service.node, authority, data)
                return self._answer(made, "token", False)
            require(authority, operation, path)
        logical = Request(operation, path, data)
        response, mount_type = await self.service.dispatcher.dispatch_routed(path, logical)
        return self._answer(response, mount_type, path.startswith("sys/"))

    @staticmethod
    def _answer(response: Response, mount_type: str, top_level: bool) -> HttpResponse:
        if response.raw is not None:
            return HttpResponse(
                response.status or 200,
                response.raw,
                [(b"content-type", response.content_type.encode("latin-1"))],
            )
        if response.data is None and not response.warnings and response.auth is None:
            if response.status is None or response.status == 204:
                return HttpResponse(204)
            if response.status >= 400:
                return _error(response.status)
        return _json_response(_envelope(response, mount_type, top_level), response.status or 200)

    async def _health(self, request: HttpRequest) -> HttpResponse:
        if request.method not in ("GET", "HEAD"):
            raise UnsupportedOperationError(f"{request.method} is not supported on sys/health")
        query = request.query
        body = await self.service.health()
        if body["sealed"]:
            status = _code(query, "sealedcode", 503)
        elif body["standby"]:
            standby_ok = query.get("standbyok", "").lower() in _TRUE
            status = 200 if standby_ok else _code(query, "standbycode", 429)
        else:
            status = _code(query, "activecode", 200)
        if request.method == "HEAD":
            return HttpResponse(status, b"", _JSON_HEADERS[:1])
        return _json_response(body, status)


def _code(query: dict[str, str], name: str, default: int) -> int:
    """A status code override of ``sys/health`` (``invalid_argument`` unless 200-599 and
    able to carry the body)."""
    return get_status_code(query, name, default)


def serve(service: SecretsService, listen: str) -> HttpServer:
    """Serve :class:`VaultApi` on ``listen`` through the node's hardened HTTP listener
    (bound on return; ``OSError`` if the address is taken)."""
    return service.node.serve_http(
        VaultApi(service),
        listen,
        name="secrets",
        error_body=vault_error_body,
        limits=HTTP_LIMITS,
    )
