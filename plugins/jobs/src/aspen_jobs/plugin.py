"""The ``jobs`` plugin's hooks: its RPC methods, its CLI group and the leader's upkeep."""

from __future__ import annotations

from typing import Any

import aspen


@aspen.hookimpl
def aspen_rpc_handlers() -> list[Any]:
    """``jobs.*``."""
    from aspen_jobs.rpc import rpc_handlers

    return rpc_handlers()


@aspen.hookimpl
def aspen_cli_commands() -> list[Any]:
    """``aspen jobs …``."""
    from aspen_jobs.cli import jobs_cli

    return [jobs_cli]


@aspen.hookimpl
async def aspen_startup(node: Any) -> None:
    """Run the upkeep (lost workers, dependencies, schedules) while this node leads."""
    from aspen_jobs.upkeep import upkeep_loop

    node.spawn(upkeep_loop, node)
