"""The ``hooks`` plugin's hooks: configuration, RPC methods, CLI, start-up, and the bus
events that tell the journal to look now."""

from __future__ import annotations

from typing import Any

import aspen
from aspen.plugins.types import ConfigOption, ConfigSection

PLUGIN = "hooks"
#: Environment variables a shell handler receives from the node unless configured.
DEFAULT_ENV_ALLOW = ("PATH", "HOME", "LANG", "LC_ALL", "TZ")


@aspen.hookimpl
def aspen_config_sections() -> list[ConfigSection]:
    """``[hooks]``: what shell handlers may run and see."""
    return [
        ConfigSection(
            PLUGIN,
            (
                ConfigOption(
                    "shell_allow",
                    tuple,
                    (),
                    "Programs shell handlers may start: names (resolved through PATH) or paths, "
                    "compared by full path after resolving symlinks (empty: any).",
                ),
                ConfigOption(
                    "env_allow",
                    tuple,
                    DEFAULT_ENV_ALLOW,
                    "Node environment variables passed to shell handlers.",
                ),
            ),
            help="Event-driven automation.",
        )
    ]


@aspen.hookimpl
def aspen_rpc_handlers() -> list[Any]:
    """``hooks.*``."""
    from aspen_hooks.rpc import rpc_handlers

    return rpc_handlers()


@aspen.hookimpl
def aspen_cli_commands() -> list[Any]:
    """``aspen hooks …``."""
    from aspen_hooks.cli import hooks_cli

    return [hooks_cli]


@aspen.hookimpl
async def aspen_startup(node: Any) -> None:
    """Start this node's supervisor (journal, election, runner)."""
    from aspen_hooks.executors import ExecutorSettings
    from aspen_hooks.service import HooksService

    config = node.config(PLUGIN)
    settings = ExecutorSettings(
        shell_allow=tuple(config["shell_allow"]),
        env_allow=tuple(config["env_allow"]),
        call=node.call,
    )
    service = HooksService(node, settings)
    node.plugin_state(PLUGIN)["service"] = service
    node.spawn(service.run, name="hooks-service")


@aspen.hookimpl
def aspen_shutdown(node: Any) -> None:
    """The node stops: the runner must not try to write on its way out."""
    service = node.plugin_state(PLUGIN).get("service")
    if service is not None:
        service.stopping = True


@aspen.hookimpl
async def aspen_on_raft_event(event: Any, node: Any) -> None:
    """A leader change: journal it now rather than at the next check."""
    _nudge(node)


@aspen.hookimpl
async def aspen_on_cluster_event(event: Any, node: Any) -> None:
    """A membership change: journal it now rather than at the next check."""
    _nudge(node)


def _nudge(node: Any) -> None:
    service = node.plugin_state(PLUGIN).get("service")
    if service is not None:
        service.nudge()
