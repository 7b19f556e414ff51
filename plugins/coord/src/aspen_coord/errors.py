"""The coord plugin's typed errors.

Each is a subclass of a core error, so it travels with that code (``compare_failed``,
``not_found``…) and a ``details.reason`` that :func:`typed` turns back into the subclass on
the client side.
"""

from __future__ import annotations

from typing import NoReturn

from aspen.errors import AspenError, CompareFailedError, NotFoundError

__all__ = ["BusyError", "FencedError", "NotHeldError", "raise_typed", "typed"]


class BusyError(CompareFailedError):
    """A try (or an acquire whose deadline passed) found the lock / permits taken."""

    reason = "busy"


class FencedError(CompareFailedError):
    """A fenced write was refused: the lock is no longer held at that fencing token."""

    reason = "fenced"


class NotHeldError(NotFoundError):
    """The caller does not hold (or no longer holds) what it names: its lease expired,
    or it released it."""

    reason = "not_held"


_BY_REASON: dict[str, type[AspenError]] = {
    cls.reason: cls for cls in (BusyError, FencedError, NotHeldError)
}


def raise_typed(
    cls: type[BusyError | FencedError | NotHeldError], message: str, **details: object
) -> NoReturn:
    """Raise ``cls`` with its reason in the details (so the client can rebuild it)."""
    raise cls(message, reason=cls.reason, **details)


def typed(exc: AspenError) -> AspenError:
    """The coord subclass of ``exc`` named by its ``details.reason`` (else ``exc``)."""
    cls = _BY_REASON.get(str(exc.details.get("reason", "")))
    if cls is None or isinstance(exc, cls) or cls.code != exc.code:
        return exc
    return cls(exc.message, **exc.details)
