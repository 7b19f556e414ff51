"""The method registry: every RPC method a node serves, by name.

A plugin that fails after its methods were registered (its ``aspen_startup`` raised) is
*unloaded* with :meth:`MethodRegistry.unload`: its methods stay listed but answer
``unavailable`` naming the failure, so a client learns why instead of reaching a plugin
that never started.
"""

from __future__ import annotations

import re
from dataclasses import replace
from typing import Any

from aspen.errors import InvalidArgumentError, UnavailableError
from aspen.limits import MAX_METHOD_NAME_BYTES
from aspen.rpc.handler import RpcHandler

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
    """Maps method names to :class:`~aspen.rpc.handler.RpcHandler` records."""

    __slots__ = ("_handlers", "_unloaded")

    def __init__(self, handlers: list[RpcHandler] | tuple[RpcHandler, ...] = ()) -> None:
        self._handlers: dict[str, RpcHandler] = {}
        # plugin name -> why it was unloaded
        self._unloaded: dict[str, str] = {}
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

    def unload(self, plugin: str, reason: str) -> list[str]:
        """From now on every method of ``plugin`` answers ``unavailable`` naming ``reason``;
        return their names. Core methods cannot be unloaded."""
        if plugin == "core":
            raise ValueError("the core's methods cannot be unloaded")
        self._unloaded[plugin] = reason
        names = sorted(n for n, h in self._handlers.items() if h.plugin == plugin)
        for name in names:
            handler = self._handlers[name]
            self._handlers[name] = replace(handler, func=_unavailable(handler, reason))
        return names

    def unloaded(self) -> dict[str, str]:
        """Plugins unloaded after registration, with the reason."""
        return dict(self._unloaded)

    def get(self, name: str) -> RpcHandler | None:
        """Return the handler registered as ``name``, or ``None``."""
        return self._handlers.get(name)

    def names(self) -> list[str]:
        """Return every registered method name, sorted."""
        return sorted(self._handlers)

    def describe(self) -> list[dict[str, Any]]:
        """Return one ``{name, plugin, streaming, doc}`` map per method, sorted by name."""
        return [
            {
                "name": h.name,
                "plugin": h.plugin,
                "streaming": h.streaming,
                "doc": h.doc,
                **({"unavailable": self._unloaded[h.plugin]} if h.plugin in self._unloaded else {}),
            }
            for h in sorted(self._handlers.values(), key=lambda h: h.name)
        ]

    def __contains__(self, name: object) -> bool:
        """Return whether a method of that name is registered."""
        return name in self._handlers

    def __len__(self) -> int:
        """Return how many methods are registered."""
        return len(self._handlers)


def _unavailable(handler: RpcHandler, reason: str) -> Any:
    """A stand-in for ``handler`` (same kind, unary or streaming) that raises ``unavailable``."""
    plugin, method = handler.plugin, handler.name

    def error() -> UnavailableError:
        return UnavailableError(
            f"method {method!r} is unavailable: plugin {plugin!r} failed on this node and is "
            f"unloaded ({reason})",
            plugin=plugin,
            method=method,
        )

    if handler.streaming:

        async def unavailable_stream(ctx: Any, params: dict[str, Any]) -> Any:
            raise error()
            yield  # an async generator, like the handler it replaces

        return unavailable_stream

    async def unavailable(ctx: Any, params: dict[str, Any]) -> Any:
        raise error()

    return unavailable
