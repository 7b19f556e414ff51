"""The ``jobs`` plugin's hooks: its RPC methods, its CLI group and the leader's upkeep."""

from __future__ import annotations

import os
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
def aspen_config_sections() -> list[Any]:
    """``[jobs]``: an opt-in worker inside this node."""
    from aspen.plugins.types import ConfigOption, ConfigSection
    from aspen_jobs.shell import DEFAULT_ALLOW

    return [
        ConfigSection(
            "jobs",
            (
                ConfigOption(
                    "workers",
                    tuple,
                    (),
                    "Queues a worker inside this node serves (empty: no in-node worker).",
                ),
                ConfigOption("worker_concurrency", int, 1, "Jobs the in-node worker runs at once."),
                ConfigOption(
                    "shell_allow",
                    tuple,
                    DEFAULT_ALLOW,
                    "Programs the in-node worker's shell jobs may run ('*': any).",
                ),
                ConfigOption(
                    "workdir",
                    str,
                    "",
                    "Directory its shell jobs run in (default: <data dir>/jobs/work).",
                ),
            ),
            help="Job queues.",
        )
    ]


@aspen.hookimpl
async def aspen_startup(node: Any) -> None:
    """Run the upkeep (lost workers, dependencies, schedules) while this node leads, and
    the in-node worker when ``[jobs] workers`` names queues."""
    from aspen_jobs.upkeep import upkeep_loop

    node.spawn(upkeep_loop, node)
    config = node.config("jobs")
    if config["workers"]:
        from aspen_jobs.shell import ShellPolicy
        from aspen_jobs.worker import Worker

        workdir = config["workdir"] or str(node.data_dir / "jobs" / "work")
        os.makedirs(workdir, exist_ok=True)
        worker = Worker(
            node.endpoint,
            node.token,
            list(config["workers"]),
            concurrency=config["worker_concurrency"],
            policy=ShellPolicy(allow=tuple(config["shell_allow"]), workdir=workdir),
            name=f"node {node.id}",
        )
        node.plugin_state("jobs")["worker"] = worker
        node.spawn(worker.run)
