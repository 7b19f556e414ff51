"""Checks shared by the executors' target validation: known fields, bounded text."""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

from aspen.errors import InvalidArgumentError

__all__ = ["check_fields", "require_text"]


def check_fields(kind: str, target: Any, allowed: Collection[str]) -> dict[str, Any]:
    """``target`` as a dict, refused if it is not one or has fields other than ``allowed``."""
    if not isinstance(target, dict):
        raise InvalidArgumentError(
            f"a {kind} handler's target must be a map, not {type(target).__name__}",
            field="target",
        )
    unknown = sorted(str(name) for name in target if name not in allowed)
    if unknown:
        raise InvalidArgumentError(
            f"unknown field(s) {', '.join(unknown)} in a {kind} handler's target "
            f"(it takes {', '.join(sorted(allowed))})",
            field="target",
        )
    return target


def require_text(
    kind: str, target: dict[str, Any], name: str, max_chars: int, *, limit_name: str
) -> str:
    """``target[name]``: a non-blank str of at most ``max_chars`` characters, without NUL."""
    value = target.get(name)
    what = f"a {kind} handler's {name!r}"
    if not isinstance(value, str):
        found = "nothing" if value is None else type(value).__name__
        raise InvalidArgumentError(f"{what} must be a string, not {found}", field=name)
    if not value.strip():
        raise InvalidArgumentError(f"{what} must not be empty", field=name)
    if len(value) > max_chars:
        raise InvalidArgumentError(
            f"{what} is {len(value)} characters, over the limit of {max_chars} ({limit_name})",
            field=name,
            limit=max_chars,
        )
    if "\x00" in value:
        raise InvalidArgumentError(f"{what} must not contain a NUL character", field=name)
    return value
