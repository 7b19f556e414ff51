"""The Aspen error tree.

Every error a client can see is an :class:`AspenError` with a stable string ``code``
(see :data:`CODES`) and a message a person can act on. Errors travel over the wire as
``{"code": ..., "message": ..., "details": {...}}`` and are rebuilt on the client side
into the same class by :func:`error_from_wire`.
"""

from __future__ import annotations

from typing import Any, ClassVar

__all__ = [
    "CODES",
    "AspenError",
    "CompactedError",
    "CompareFailedError",
    "InternalError",
    "InvalidArgumentError",
    "NotFoundError",
    "NotLeaderError",
    "ResourceExhaustedError",
    "StorageCorruptError",
    "StorageFormatError",
    "TimeoutError",
    "UnauthorizedError",
    "UnavailableError",
    "error_from_wire",
]


class AspenError(Exception):
    """Base of every Aspen error; ``code`` is stable, ``message`` is for people."""

    code: ClassVar[str] = "internal"

    def __init__(self, message: str, **details: Any) -> None:
        super().__init__(message)
        self.message = message
        self.details: dict[str, Any] = details

    def to_wire(self) -> dict[str, Any]:
        """Return the msgpack-able form sent to clients."""
        return {"code": self.code, "message": self.message, "details": self.details}

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.message!r})"


class InvalidArgumentError(AspenError):
    """The request is malformed or exceeds a bound in :mod:`aspen.limits`."""

    code = "invalid_argument"


class NotFoundError(AspenError):
    """The named thing (key, lease, plugin object) does not exist."""

    code = "not_found"


class CompareFailedError(AspenError):
    """A compare-and-swap style precondition did not hold."""

    code = "compare_failed"


class CompactedError(InvalidArgumentError):
    """The requested revision has been compacted away (details: ``compact_revision``)."""

    code = "compacted"


class NotLeaderError(AspenError):
    """This node is not the leader; ``details["leader"]`` hints at the one that is."""

    code = "not_leader"


class UnavailableError(AspenError):
    """The method or service is not available here (``details["plugin"]`` names what to install)."""

    code = "unavailable"


class UnauthorizedError(AspenError):
    """The connection presented no token, or a token that is not valid."""

    code = "unauthorized"


class ResourceExhaustedError(AspenError):
    """A bounded resource (queue, connections, watchers) is full; retry later."""

    code = "resource_exhausted"


class TimeoutError(AspenError):
    """The request did not complete before its deadline."""

    code = "timeout"


class StorageFormatError(AspenError):
    """A data directory was written in a storage layout this version does not read
    (details: ``path``, ``found``, ``expected``); raised when it is opened, never sent."""

    code = "invalid_argument"


class StorageCorruptError(AspenError):
    """A data directory's durable files fail their checksums where a crash cannot explain
    it (e.g. a record in the middle of the Raft-log WAL; details: ``path``, ``offset``);
    raised when the node opens them, never sent: the node refuses to start rather than
    drop entries it may have acknowledged."""

    code = "internal"


class InternalError(AspenError):
    """A bug or unexpected failure on the server; the node keeps running."""

    code = "internal"


CODES: dict[str, type[AspenError]] = {
    cls.code: cls
    for cls in (
        InvalidArgumentError,
        NotFoundError,
        CompareFailedError,
        CompactedError,
        NotLeaderError,
        UnavailableError,
        UnauthorizedError,
        ResourceExhaustedError,
        TimeoutError,
        InternalError,
    )
}


def error_from_wire(obj: Any) -> AspenError:
    """Rebuild an :class:`AspenError` from its wire form; unknown codes become ``internal``."""
    if not isinstance(obj, dict):
        return InternalError(f"malformed error from server: {obj!r}")
    code = obj.get("code")
    message = obj.get("message")
    details = obj.get("details")
    cls = CODES.get(code, InternalError) if isinstance(code, str) else InternalError
    text = str(message) if message is not None else str(code)
    return cls(text, **(details if isinstance(details, dict) else {}))
