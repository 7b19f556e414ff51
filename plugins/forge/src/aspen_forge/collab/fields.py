"""Checks of user input shared by issues, patches, reviews and statuses (each raises
``invalid_argument`` naming the bound in :mod:`aspen_forge.limits`)."""

from __future__ import annotations

from typing import Any

from aspen.errors import CompareFailedError, InvalidArgumentError
from aspen_forge import limits

__all__ = ["StateError", "names", "text", "title"]


class StateError(CompareFailedError):
    """The object is not in a state that allows the change (a closed patch merged, an
    issue closed twice); code ``compare_failed``, the message says which state it is in."""


def text(value: Any, field: str, bound: int = limits.MAX_BODY_BYTES, *, name: str = "") -> str:
    """``value`` as a string of at most ``bound`` UTF-8 bytes (``None``: empty)."""
    if value is None:
        return ""
    if not isinstance(value, str):
        raise InvalidArgumentError(f"{field} must be a string", field=field)
    if len(value.encode()) > bound:
        raise InvalidArgumentError(
            f"{field} is {len(value.encode())} bytes, over {name or 'MAX_BODY_BYTES'} ({bound})",
            field=field,
        )
    return value


def title(value: Any) -> str:
    """A non-empty title of at most MAX_TITLE_BYTES."""
    got = text(value, "title", limits.MAX_TITLE_BYTES, name="MAX_TITLE_BYTES").strip()
    if not got:
        raise InvalidArgumentError("a title is required", field="title")
    return got


def names(value: Any, field: str) -> list[str]:
    """A list of label/assignee names: each non-empty, at most MAX_LABEL_BYTES, at most
    MAX_LABELS of them."""
    if value is None:
        return []
    if not isinstance(value, list | tuple):
        raise InvalidArgumentError(f"{field} must be a list of names", field=field)
    if len(value) > limits.MAX_LABELS:
        raise InvalidArgumentError(
            f"{len(value)} {field}, over MAX_LABELS ({limits.MAX_LABELS})", field=field
        )
    out = []
    for item in value:
        got = text(item, field, limits.MAX_LABEL_BYTES, name="MAX_LABEL_BYTES").strip()
        if not got:
            raise InvalidArgumentError(f"an empty name in {field}", field=field)
        out.append(got)
    return sorted(set(out))
