"""Typed results of the registration hooks, and plugin status records.

:class:`RpcHandler` (and its ``UnaryHandler`` / ``StreamHandler`` types) lives in
:mod:`aspen.rpc.handler`; it is re-exported here because plugins import it from this stable
public module (docs/plugins.md, "Stable public modules"), and always may.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

# re-exported for plugins (a stable public name); defined in aspen.rpc.handler
from aspen.rpc.handler import RpcHandler, StreamHandler, UnaryHandler

__all__ = [
    "ConfigOption",
    "ConfigSection",
    "PluginInfo",
    "PluginStatus",
    "RpcHandler",
    "StreamHandler",
    "UnaryHandler",
    "http_listen_option",
]


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


def http_listen_option(plugin: str, default_port: int, what: str) -> ConfigOption:
    """The ``http_listen`` option of a plugin that serves HTTP (``what``, e.g. "git smart
    HTTP"), also the start flag ``--<plugin>-http-listen``; resolve it with
    ``aspen.http.listen_address(config["http_listen"], default_port)``."""
    return ConfigOption(
        "http_listen",
        str,
        "",
        f"host:port of {what} (default 127.0.0.1:{default_port}, +$ASPEN_DEV_NODE_INDEX; "
        "port 0 picks a free one; 'off' disables it).",
        start_flag=True,
        flag_name=f"{plugin}_http_listen",
    )


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
