"""The method registry: every RPC method a node serves, by name."""

from __future__ import annotations

import re
from typing import Any

from aspen.errors import InvalidArgumentError
from aspen.limits import MAX_METHOD_NAME_BYTES
from aspen.plugins.types import RpcHandler

__all__ = ["METHOD_NAME_RE", "DuplicateMethodError", "MethodRegistry", "check_method_name"]

#: ``<prefix>.<verb>``: a lowercase identifier-like prefix, a dot, then the verb (which may
#: itself contain dots, underscores and dashes).
METHOD_NAME_RE = re.compile(r"[a-z][a-z0-9_-]*\.[A-Za-z0-9_][A-Za-z0-9_.-]*")


class DuplicateMethodError(InvalidArgumentError):
    """Two handlers were registered under one method name."""


def check_method_name(name: object) -> str:
    """Return ``name`` if it is a valid ``<prefix>.<verb>`` method name, else raise."""
    if not isinstance(name, str):
        raise InvalidArgumentError(f"method name must be a str, not {type(name).__name__}")
    size = len(name.encode())
    if size > MAX_METHOD_NAME_BYTES:
        raise InvalidArgumentError(
            f"method name of {size} bytes exceeds MAX_METHOD_NAME_BYTES ({MAX_METHOD_NAME_BYTES})",
            method=name[:MAX_METHOD_NAME_BYTES],
        )
    if METHOD_NAME_RE.fullmatch(name) is None:
        raise InvalidArgumentError(
            f"method name {name!r} is not of the form '<plugin>.<verb>' "
            "(lowercase plugin name, a dot, then the verb)",
            method=name,
        )
    return name


class MethodRegistry:
    """Maps method names to :class:`~aspen.plugins.types.RpcHandler` records."""

    __slots__ = ("_handlers",)

    def __init__(self, handlers: list[RpcHandler] | tuple[RpcHandler, ...] = ()) -> None:
        self._handlers: dict[str, RpcHandler] = {}
        for handler in handlers:
            self.add(handler)

    def add(self, handler: RpcHandler) -> None:
        """Register ``handler``; refuse a bad name or a name that is already taken."""
        if not isinstance(handler, RpcHandler):
            raise InvalidArgumentError(
                f"expected an RpcHandler, got {type(handler).__name__}: {handler!r}"
            )
        name = check_method_name(handler.name)
        if not callable(handler.func):
            raise InvalidArgumentError(f"handler for {name!r} is not callable")
        existing = self._handlers.get(name)
        if existing is not None:
            raise DuplicateMethodError(
                f"method {name!r} is already registered by plugin "
                f"{existing.plugin or '?'!r}; refusing the one from {handler.plugin or '?'!r}",
                method=name,
                plugin=handler.plugin,
                registered_by=existing.plugin,
            )
        self._handlers[name] = handler

    def get(self, name: str) -> RpcHandler | None:
        """Return the handler registered as ``name``, or ``None``."""
        return self._handlers.get(name)

    def names(self) -> list[str]:
        """Return every registered method name, sorted."""
        return sorted(self._handlers)

    def describe(self) -> list[dict[str, Any]]:
        """Return one ``{name, plugin, streaming, doc}`` map per method, sorted by name."""
        return [
            {"name": h.name, "plugin": h.plugin, "streaming": h.streaming, "doc": h.doc}
            for h in sorted(self._handlers.values(), key=lambda h: h.name)
        ]

    def __contains__(self, name: object) -> bool:
        """Return whether a method of that name is registered."""
        return name in self._handlers

    def __len__(self) -> int:
        """Return how many methods are registered."""
        return len(self._handlers)
