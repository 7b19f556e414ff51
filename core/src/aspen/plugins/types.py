"""Typed results of the registration hooks, and plugin status records."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    from aspen.rpc.context import RpcContext

__all__ = [
    "ConfigOption",
    "ConfigSection",
    "PluginInfo",
    "PluginStatus",
    "RpcHandler",
    "StreamHandler",
    "UnaryHandler",
]

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


@dataclass(frozen=True, slots=True)
class ConfigOption:
    """One typed configuration option with its default."""

    name: str
    type: type = str
    default: Any = None
    help: str = ""
    #: Also offer the option as ``aspen node start --<name-with-dashes>`` (the flag wins
    #: over the environment and the file). Use it for what an operator passes per start,
    #: such as a key file.
    start_flag: bool = False
    #: The flag's name when it should not be the option's (e.g. ``secrets_http_listen``
    #: for a generic option name such as ``http_listen``).
    flag_name: str = ""

    @property
    def flag(self) -> str:
        """The ``aspen node start`` flag for this option (``--secrets-file``)."""
        return "--" + (self.flag_name or self.name).replace("_", "-")


@dataclass(frozen=True, slots=True)
class ConfigSection:
    """A plugin's configuration section (named after the plugin)."""

    name: str
    options: tuple[ConfigOption, ...] = ()
    help: str = ""


PluginStatus = Literal["loaded", "failed", "disabled"]


@dataclass(frozen=True, slots=True)
class PluginInfo:
    """What ``aspen plugins`` shows about one plugin."""

    name: str
    distribution: str
    version: str
    status: PluginStatus
    hooks: tuple[str, ...] = ()
    error: str = ""
    entry_point: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        """Return the JSON form used by ``aspen plugins --json``."""
        return {
            "name": self.name,
            "distribution": self.distribution,
            "version": self.version,
            "status": self.status,
            "hooks": list(self.hooks),
            "error": self.error,
            "entry_point": self.entry_point,
        }
