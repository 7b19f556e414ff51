"""The ``pubsub`` plugin's hooks: RPC methods, CLI, and the leader's group-commit loop."""

from __future__ import annotations

import contextlib
from typing import Any

import anyio

import aspen
from aspen.errors import AspenError
from aspen_pubsub import keys, limits
from aspen_pubsub.model import unpack

PLUGIN = "pubsub"


@aspen.hookimpl
def aspen_rpc_handlers() -> list[Any]:
    """``pubsub.*``."""
    from aspen_pubsub.rpc import rpc_handlers

    return rpc_handlers()


@aspen.hookimpl
def aspen_cli_commands() -> list[Any]:
    """``aspen pubsub …``."""
    from aspen_pubsub.cli import pubsub_cli

    return [pubsub_cli]


@aspen.hookimpl
async def aspen_startup(node: Any) -> None:
    """Create this node's publisher (group commit) and group service; both work only
    while the node leads."""
    from aspen_pubsub.groups import GroupService
    from aspen_pubsub.publisher import Publisher

    publisher = Publisher(node)
    state = node.plugin_state(PLUGIN)
    state["publisher"] = publisher
    state["groups"] = GroupService(node, publisher.committed)
    node.spawn(publisher.run, name="pubsub-publisher")
    node.spawn(_retention_sweeper, node, publisher, name="pubsub-retention")


@aspen.hookimpl
async def aspen_on_raft_event(event: Any, node: Any) -> None:
    """Leadership may have moved: drop what the leader cached (compares would catch it;
    this saves the failed attempt)."""
    state = node.plugin_state(PLUGIN)
    for service in ("publisher", "groups"):
        if service in state:
            state[service].forget()


async def _retention_sweeper(node: Any, publisher: Any) -> None:
    """On the leader, apply age retention to topics that have a ``max_age`` (publishes
    apply every limit as they commit; an idle topic still ages)."""
    while True:
        await anyio.sleep(limits.PUBSUB_RETENTION_SWEEP_SECONDS)
        if not node.is_leader:
            continue
        with contextlib.suppress(AspenError):
            got = await node.call(
                "kv.range",
                {
                    "key": keys.TOPICS,
                    "end": keys.TOPICS[:-1] + b"0",
                    "limit": limits.PUBSUB_MAX_LIST,
                },
            )
            for kv in got["kvs"]:
                if unpack(kv["value"]).get("max_age"):
                    await publisher.sweep(kv["key"][len(keys.TOPICS) :].decode())
