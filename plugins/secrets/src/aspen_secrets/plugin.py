"""The ``secrets`` plugin's hooks (the ``aspen`` entry point).

Runtime state lives in one :class:`~aspen_secrets.service.SecretsService` per running
node, created by ``aspen_startup`` and dropped by ``aspen_shutdown``; the hooks find it
in :class:`ServiceRegistry`, keyed by the node object's identity (several nodes may run
in one process, as in tests).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import aspen
from aspen.plugins.types import ConfigOption, ConfigSection, RpcHandler

if TYPE_CHECKING:
    import click

    from aspen_secrets.service import SecretsService

__all__ = [
    "PLUGIN_NAME",
    "ServiceRegistry",
    "aspen_cli_commands",
    "aspen_config_sections",
    "aspen_rpc_handlers",
    "aspen_shutdown",
    "aspen_startup",
    "service_for",
]

#: The plugin's one name (RPC prefix, CLI group, config section).
PLUGIN_NAME = "secrets"


class ServiceRegistry:
    """The services of the nodes running in this process, by node."""

    def __init__(self) -> None:
        self._services: dict[int, SecretsService] = {}

    def get(self, node: Any) -> SecretsService | None:
        """The service of ``node`` (``None`` if it has not started)."""
        return self._services.get(id(node))

    def add(self, node: Any, service: SecretsService) -> None:
        """Remember ``node``'s service."""
        self._services[id(node)] = service

    def pop(self, node: Any) -> SecretsService | None:
        """Forget (and return) ``node``'s service."""
        return self._services.pop(id(node), None)


_registry = ServiceRegistry()


def service_for(node: Any) -> SecretsService | None:
    """The secrets service running on ``node`` (for tests and tools in the node's process)."""
    return _registry.get(node)


@aspen.hookimpl
def aspen_config_sections() -> list[ConfigSection]:
    """The ``[secrets]`` options (``ASPEN_SECRETS_<OPTION>``; some are start flags)."""
    return [
        ConfigSection(
            PLUGIN_NAME,
            (
                ConfigOption(
                    "http_listen",
                    str,
                    "",
                    "host:port of the Vault-compatible HTTP API (default 127.0.0.1:8200, "
                    "+$ASPEN_DEV_NODE_INDEX; port 0 picks a free one; 'off' disables it).",
                ),
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

    return rpc_handlers(_registry.get)


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
    _registry.add(node, service)
    await service.start()


@aspen.hookimpl
async def aspen_shutdown(node: Any) -> None:
    """Stop this node's HTTP API and forget its service."""
    service = _registry.pop(node)
    if service is not None:
        await service.stop()
