"""The logical request model every engine serves (after Vault's): an operation on a path
inside a mount, with a data map, answered by a data map (or nothing, or raw bytes).

The HTTP API (:mod:`aspen_secrets.http`), the RPC methods and the CLI all turn what they
receive into a :class:`Request` and hand it to the mounted engine. Engines raise the
errors below (or :mod:`aspen.errors` ones); :func:`http_status` maps any of them to
Vault's status code.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any

from aspen import errors

__all__ = [
    "ForbiddenError",
    "Operation",
    "Request",
    "Response",
    "SealedError",
    "UnsupportedOperationError",
    "UnsupportedPathError",
    "http_status",
]


class Operation(enum.StrEnum):
    """What a request does. HTTP maps GET→read (or list with ``?list=true``), LIST→list,
    POST/PUT→write, DELETE→delete, PATCH→patch."""

    READ = "read"
    LIST = "list"
    WRITE = "write"
    DELETE = "delete"
    PATCH = "patch"


@dataclass(frozen=True, slots=True)
class Request:
    """One operation on ``path`` (relative to the mount, no leading or trailing ``/``)."""

    operation: Operation
    path: str
    data: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Response:
    """What an engine answers.

    ``data`` becomes the ``data`` field of Vault's JSON envelope; ``None`` with no ``raw``
    means an empty success (HTTP 204). ``raw`` is a body sent as is with ``content_type``
    (PKI's PEM/DER endpoints). ``warnings`` go into the envelope's ``warnings``.
    ``status`` overrides the HTTP status of a successful answer (Vault answers a read of a
    deleted KV v2 version with 404 *and* its metadata).
    """

    data: dict[str, Any] | None = None
    warnings: tuple[str, ...] = ()
    raw: bytes | None = None
    content_type: str = "application/json"
    status: int | None = None
    #: Vault's ``auth`` block (``auth/token/create``: the new token).
    auth: dict[str, Any] | None = None


class UnsupportedPathError(errors.NotFoundError):
    """No route of the engine matches the path (HTTP 404)."""


class UnsupportedOperationError(errors.InvalidArgumentError):
    """The path exists but does not take this operation (HTTP 405)."""

    code = "unsupported_operation"


class ForbiddenError(errors.UnauthorizedError):
    """Missing or wrong token (HTTP 403, as Vault answers)."""


class SealedError(errors.UnavailableError):
    """The plugin cannot open its keyring (no or wrong root key): HTTP 503, like a sealed Vault."""


_STATUS: tuple[tuple[type[BaseException], int], ...] = (
    (UnsupportedOperationError, 405),
    (errors.UnauthorizedError, 403),
    (errors.NotFoundError, 404),
    (errors.InvalidArgumentError, 400),
    (errors.CompareFailedError, 400),
    (errors.ResourceExhaustedError, 413),
    (errors.NotLeaderError, 503),
    (errors.UnavailableError, 503),
    (errors.TimeoutError, 503),
)


def http_status(exc: BaseException) -> int:
    """Vault's HTTP status for an error raised while serving a request (500 if unknown)."""
    for kind, status in _STATUS:
        if isinstance(exc, kind):
            return status
    return 500
