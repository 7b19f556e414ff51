"""The core's ``cluster.*`` RPC methods: status and membership changes."""

from __future__ import annotations

from typing import Any

from aspen import limits
from aspen.errors import InvalidArgumentError
from aspen.node.node_of import node_of
from aspen.plugins.types import RpcHandler
from aspen.rpc import params as p
from aspen.rpc.context import RpcContext

__all__ = ["cluster_handlers"]


def _node_id(params: dict[str, Any]) -> str:
    return p.require_str(params, "id", max_len=limits.MAX_NODE_ID_CHARS)


async def cluster_status(ctx: RpcContext, params: dict[str, Any]) -> Any:
    """This node's view: role, term, commit and applied index, leader, members."""
    return await node_of(ctx).cluster.status()


async def cluster_add_learner(ctx: RpcContext, params: dict[str, Any]) -> Any:
    """Add a node as a learner (it replicates but does not vote)."""
    node = node_of(ctx)
    return await node.cluster.add_learner(
        _node_id(params),
        p.require_str(params, "peer", max_len=limits.MAX_ADDRESS_CHARS),
        p.require_str(params, "client", max_len=limits.MAX_ADDRESS_CHARS),
    )


async def cluster_promote(ctx: RpcContext, params: dict[str, Any]) -> Any:
    """Make a caught-up learner a voter."""
    return await node_of(ctx).cluster.promote(_node_id(params))


async def cluster_remove(ctx: RpcContext, params: dict[str, Any]) -> Any:
    """Remove a member (refused if it would leave the cluster without a quorum)."""
    return await node_of(ctx).cluster.remove(_node_id(params))


async def cluster_transfer_leader(ctx: RpcContext, params: dict[str, Any]) -> Any:
    """Hand leadership to another voter."""
    node = node_of(ctx)
    target = _node_id(params)
    if target not in node.cluster.replicator.conf.voters:
        raise InvalidArgumentError(f"{target} is not a voter")
    node.cluster.require_leader()
    node.cluster.replicator.transfer_leader(target)
    return {"requested": target}


async def cluster_snapshot(ctx: RpcContext, params: dict[str, Any]) -> Any:
    """Compact this node's Raft log up to its applied index (its state is the snapshot)."""
    return await node_of(ctx).cluster.snapshot()


def cluster_handlers() -> list[RpcHandler]:
    """Every ``cluster.*`` method, tagged as the core's."""
    table = [
        ("cluster.status", cluster_status, "cluster:read"),
        ("cluster.add_learner", cluster_add_learner, "cluster:admin"),
        ("cluster.promote", cluster_promote, "cluster:admin"),
        ("cluster.remove", cluster_remove, "cluster:admin"),
        ("cluster.transfer_leader", cluster_transfer_leader, "cluster:admin"),
        ("cluster.snapshot", cluster_snapshot, "cluster:admin"),
    ]
    return [
        RpcHandler(name, func, doc=(func.__doc__ or "").strip(), plugin="core", capability=cap)
        for name, func, cap in table
    ]
