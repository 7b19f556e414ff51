"""The core's ``cluster.*`` RPC methods: status and membership changes.

Each takes the node's :class:`~aspen.cluster.ClusterRuntime` before ``(ctx, params)``;
:func:`cluster_handlers` binds it.
"""

from __future__ import annotations

from functools import partial
from typing import Any

from aspen import limits
from aspen.errors import InvalidArgumentError
from aspen.node.cluster import ClusterRuntime
from aspen.rpc import params as p
from aspen.rpc.context import RpcContext
from aspen.rpc.handler import RpcHandler

__all__ = ["cluster_handlers"]


def _node_id(params: dict[str, Any]) -> str:
    return p.require_str(params, "id", max_len=limits.MAX_NODE_ID_CHARS)


async def cluster_status(cluster: ClusterRuntime, ctx: RpcContext, params: dict[str, Any]) -> Any:
    """This node's view: role, term, commit and applied index, leader, members."""
    return await cluster.status()


async def cluster_add_learner(
    cluster: ClusterRuntime, ctx: RpcContext, params: dict[str, Any]
) -> Any:
    """Add a node as a learner (it replicates but does not vote)."""
    return await cluster.add_learner(
        _node_id(params),
        p.require_str(params, "peer", max_len=limits.MAX_ADDRESS_CHARS),
        p.require_str(params, "client", max_len=limits.MAX_ADDRESS_CHARS),
    )


async def cluster_promote(cluster: ClusterRuntime, ctx: RpcContext, params: dict[str, Any]) -> Any:
    """Make a caught-up learner a voter."""
    return await cluster.promote(_node_id(params))


async def cluster_remove(cluster: ClusterRuntime, ctx: RpcContext, params: dict[str, Any]) -> Any:
    """Remove a member (refused if it would leave the cluster without a quorum)."""
    return await cluster.remove(_node_id(params))


async def cluster_transfer_leader(
    cluster: ClusterRuntime, ctx: RpcContext, params: dict[str, Any]
) -> Any:
    """Hand leadership to another voter."""
    target = _node_id(params)
    if target not in cluster.replicator.conf.voters:
        raise InvalidArgumentError(f"{target} is not a voter")
    cluster.require_leader()
    cluster.replicator.transfer_leader(target)
    return {"requested": target}


async def cluster_snapshot(cluster: ClusterRuntime, ctx: RpcContext, params: dict[str, Any]) -> Any:
    """Compact this node's Raft log up to its applied index (its state is the snapshot)."""
    return await cluster.snapshot()


def cluster_handlers(cluster: ClusterRuntime) -> list[RpcHandler]:
    """Every ``cluster.*`` method, bound to ``cluster`` and tagged as the core's."""
    table = [
        ("cluster.status", cluster_status, "cluster:read"),
        ("cluster.add_learner", cluster_add_learner, "cluster:admin"),
        ("cluster.promote", cluster_promote, "cluster:admin"),
        ("cluster.remove", cluster_remove, "cluster:admin"),
        ("cluster.transfer_leader", cluster_transfer_leader, "cluster:admin"),
        ("cluster.snapshot", cluster_snapshot, "cluster:admin"),
    ]
    return [
        RpcHandler(
            name,
            partial(func, cluster),
            doc=(func.__doc__ or "").strip(),
            plugin="core",
            capability=cap,
        )
        for name, func, cap in table
    ]
