"""The ``secrets`` plugin's hooks (the ``aspen`` entry point).

Runtime state lives in one :class:`~aspen_secrets.service.SecretsService` per running
node, created by ``aspen_startup`` and dropped by ``aspen_shutdown``. It is kept in the
node's own ``node.plugin_state("secrets")["service"]`` (several nodes may run in one
process, as in tests), so this module holds no runtime state.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import aspen
from aspen.plugins.types import ConfigOption, ConfigSection, RpcHandler, http_listen_option

if TYPE_CHECKING:
    import click

    from aspen_secrets.service import SecretsService

__all__ = [
    "DEFAULT_HTTP_PORT",
    "PLUGIN_NAME",
    "SERVICE_KEY",
    "aspen_cli_commands",
    "aspen_config_sections",
    "aspen_rpc_handlers",
    "aspen_shutdown",
    "aspen_startup",
    "service_for",
]

#: The plugin's one name (RPC prefix, CLI group, config section).
PLUGIN_NAME = "secrets"
#: Vault's port, the default of ``http_listen``.
DEFAULT_HTTP_PORT = 8200
#: Key of the node's service in ``node.plugin_state(PLUGIN_NAME)``.
SERVICE_KEY = "service"


def service_for(node: Any) -> SecretsService | None:
    """The secrets service running on ``node`` (``None`` before start-up or after shutdown)."""
    return node.plugin_state(PLUGIN_NAME).get(SERVICE_KEY)


@aspen.hookimpl
def aspen_config_sections() -> list[ConfigSection]:
    """The ``[secrets]`` options (``ASPEN_SECRETS_<OPTION>``; some are start flags)."""
    return [
        ConfigSection(
            PLUGIN_NAME,
            (
                http_listen_option(PLUGIN_NAME, DEFAULT_HTTP_PORT, "the Vault-compatible HTTP API"),
                ConfigOption(
                    "root_key_file",
                    Path,
                    None,
                    "File with the 32-byte root key that seals the secrets keyring "
                    "(raw, hex or base64).",
                    start_flag=True,
                ),
                ConfigOption(
                    "secrets_file",
                    Path,
                    None,
                    "SOPS file to bootstrap secrets from (and aspen_root_key).",
                    start_flag=True,
                ),
                ConfigOption(
                    "age_key_file",
                    Path,
                    None,
                    "age identities that decrypt --secrets-file (default $SOPS_AGE_KEY_FILE).",
                    start_flag=True,
                ),
            ),
            help="Vault-compatible secrets engines.",
        )
    ]


@aspen.hookimpl
def aspen_rpc_handlers() -> list[RpcHandler]:
    """``secrets.request`` and ``secrets.status``."""
    from aspen_secrets.rpc import rpc_handlers

    return rpc_handlers(service_for)


@aspen.hookimpl
def aspen_cli_commands() -> list[click.Command]:
    """The ``aspen secrets`` group."""
    from aspen_secrets.cli import secrets_cli

    return [secrets_cli]


@aspen.hookimpl
async def aspen_startup(node: Any) -> None:
    """Create this node's service: root key, HTTP API, keyring (opened in the background)."""
    from aspen_secrets.service import SecretsService

    service = SecretsService(node, node.config(PLUGIN_NAME))
    node.plugin_state(PLUGIN_NAME)[SERVICE_KEY] = service
    await service.start()


@aspen.hookimpl
async def aspen_shutdown(node: Any) -> None:
    """Stop this node's HTTP API and forget its service."""
    service = node.plugin_state(PLUGIN_NAME).pop(SERVICE_KEY, None)
    if service is not None:
        await service.stop()
