"""The ``forge`` plugin's hooks (the ``aspen`` entry point).

Runtime state lives in one :class:`~aspen_forge.service.ForgeService` per running node, in
``node.plugin_state("forge")["service"]``; this module holds none.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import aspen
from aspen.plugins.types import ConfigOption, ConfigSection, RpcHandler, http_listen_option

if TYPE_CHECKING:
    import click

    from aspen_forge.service import ForgeService

__all__ = [
    "DEFAULT_HTTP_PORT",
    "PLUGIN_NAME",
    "aspen_cli_commands",
    "aspen_config_sections",
    "aspen_rpc_handlers",
    "aspen_shutdown",
    "aspen_startup",
    "service_for",
]

#: The plugin's one name (RPC prefix, CLI group, config section, KV prefix).
PLUGIN_NAME = "forge"
#: The default port of ``http_listen`` (git smart HTTP and the web UI).
DEFAULT_HTTP_PORT = 8300
_SERVICE = "service"


def service_for(node: Any) -> ForgeService | None:
    """The forge service running on ``node`` (``None`` before start-up or after shutdown)."""
    return node.plugin_state(PLUGIN_NAME).get(_SERVICE)


@aspen.hookimpl
def aspen_config_sections() -> list[ConfigSection]:
    """The ``[forge]`` options (``ASPEN_FORGE_<OPTION>``)."""
    return [
        ConfigSection(
            PLUGIN_NAME,
            (
                http_listen_option(PLUGIN_NAME, DEFAULT_HTTP_PORT, "git smart HTTP"),
                ConfigOption(
                    "max_push_bytes",
                    int,
                    0,
                    "Largest pack one push may send, in bytes (0: MAX_PUSH_BYTES, 512 MiB).",
                ),
                ConfigOption(
                    "index_pack",
                    str,
                    "auto",
                    "What indexes a pushed pack: 'auto' (git index-pack if git is installed, "
                    "else dulwich) or 'dulwich'.",
                ),
            ),
            help="Git hosting over smart HTTP.",
        )
    ]


@aspen.hookimpl
def aspen_rpc_handlers() -> list[RpcHandler]:
    """The ``forge.*`` methods."""
    from aspen_forge.rpc import rpc_handlers

    return rpc_handlers(service_for)


@aspen.hookimpl
def aspen_cli_commands() -> list[click.Command]:
    """The ``aspen forge`` group."""
    from aspen_forge.cli import forge_cli

    return [forge_cli]


@aspen.hookimpl
async def aspen_startup(node: Any) -> None:
    """Create this node's service and start serving git."""
    from aspen_forge.service import ForgeService

    service = ForgeService(node, node.config(PLUGIN_NAME))
    node.plugin_state(PLUGIN_NAME)[_SERVICE] = service
    service.start()


@aspen.hookimpl
async def aspen_shutdown(node: Any) -> None:
    """Stop this node's listener and forget its service."""
    service = node.plugin_state(PLUGIN_NAME).pop(_SERVICE, None)
    if service is not None:
        await service.stop()
