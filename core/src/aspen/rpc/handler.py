"""What an RPC method is: :class:`RpcHandler`, a name bound to a unary or streaming handler.

The core's handlers and every plugin's (``aspen_rpc_handlers``) are records of this type; the
registry (:mod:`aspen.rpc.registry`) serves them by name. Plugins may keep importing it from
:mod:`aspen.plugins.types`, which re-exports it.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from aspen.rpc.context import RpcContext

__all__ = ["RpcHandler", "StreamHandler", "UnaryHandler"]

#: A unary handler: ``async def handler(ctx, params) -> result``.
UnaryHandler = Callable[["RpcContext", dict[str, Any]], Awaitable[Any]]
#: A streaming handler: ``async def handler(ctx, params)`` that ``yield``s items.
StreamHandler = Callable[["RpcContext", dict[str, Any]], AsyncIterator[Any]]


@dataclass(frozen=True, slots=True)
class RpcHandler:
    """One RPC method: ``name`` is ``<plugin>.<verb>``; ``streaming`` handlers are async
    generators whose items are sent as stream messages until they return."""

    name: str
    func: UnaryHandler | StreamHandler
    streaming: bool = False
    doc: str = ""
    #: Set by the plugin manager: which plugin registered it ("core" for built-ins).
    plugin: str = ""
    #: The capability a token needs to call it (``"blob:read"``; ``"token"`` = any valid
    #: token); ``None`` = the root token only. See :mod:`aspen.auth.access`.
    capability: str | None = None
    #: ``scope(params)``: what one request touches (capability strings or KV spans), each
    #: checked against the token before the handler runs; set for per-name checks.
    scope: Callable[[dict[str, Any]], Iterable[Any]] | None = None
