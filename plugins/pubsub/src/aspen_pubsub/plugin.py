"""The ``pubsub`` plugin's hooks: RPC methods, CLI, and the leader's group-commit loop."""

from __future__ import annotations

import contextlib
from typing import Any

import anyio

import aspen
from aspen.client import prefix_end
from aspen.errors import AspenError
from aspen_pubsub import keys, limits
from aspen_pubsub.model import Topic, unpack

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
    from aspen_pubsub.partitioned import PartitionedGroups
    from aspen_pubsub.publisher import Publisher

    publisher = Publisher(node)
    state = node.plugin_state(PLUGIN)
    state["publisher"] = publisher
    state["groups"] = groups = GroupService(node, publisher.next_commit)
    state["partitioned"] = partitioned = PartitionedGroups(groups)
    node.spawn(publisher.run, name="pubsub-publisher")
    node.spawn(_sweeper, node, publisher, partitioned, name="pubsub-sweeper")


@aspen.hookimpl
async def aspen_on_raft_event(event: Any, node: Any) -> None:
    """Leadership may have moved: drop what the leader cached (compares would catch it;
    this saves the failed attempt)."""
    from aspen.events import LeaderChanged

    if not isinstance(event, LeaderChanged):
        return
    state = node.plugin_state(PLUGIN)
    for service in ("publisher", "groups", "partitioned"):
        if service in state:
            state[service].forget()


async def _sweeper(node: Any, publisher: Any, partitioned: Any) -> None:
    """On the leader, every PUBSUB_SWEEP_SECONDS: apply age retention to topics with a
    ``max_age`` (publishes apply every limit as they commit; an idle topic still ages),
    delete de-duplication records older than a topic's window (bounded entries, up to
    PUBSUB_SWEEP_ENTRIES per topic), and expire the sessions of partitioned groups'
    members."""
    while True:
        await anyio.sleep(limits.PUBSUB_SWEEP_SECONDS)
        if not node.is_leader:
            continue
        with contextlib.suppress(AspenError):
            for name, record in await _records(node, keys.TOPICS):
                topic = Topic.from_record(name, record)
                if topic.max_age or await publisher.ids_expired(topic):
                    for _ in range(limits.PUBSUB_SWEEP_ENTRIES):
                        if not await publisher.sweep(name):
                            break
                for group, record in await _records(node, keys.groups(name)):
                    live = record["members"] and not record.get("deleting")
                    if record["mode"] == "partitioned" and live:
                        await partitioned.expire(name, group, record)


async def _records(node: Any, prefix: bytes) -> list[tuple[str, Any]]:
    """``(name, record)`` of the first PUBSUB_MAX_LIST records under ``prefix``."""
    got = await node.call(
        "kv.range", {"key": prefix, "end": prefix_end(prefix), "limit": limits.PUBSUB_MAX_LIST}
    )
    return [(kv["key"][len(prefix) :].decode(), unpack(kv["value"])) for kv in got["kvs"]]
