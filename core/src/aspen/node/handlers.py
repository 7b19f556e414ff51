"""The core's RPC methods: ``kv.*``, ``lease.*`` and ``node.*`` (docs/protocol.md).

Writes are validated into commands and go through ``node.propose``; reads come straight
from an LMDB read transaction (on one node every acknowledged write is already committed,
so a fresh read transaction is linearizable).
"""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

from aspen.errors import NotFoundError, ResourceExhaustedError
from aspen.kv import commands
from aspen.limits import MAX_WATCHES_PER_CONNECTION
from aspen.node.cluster_handlers import cluster_handlers
from aspen.plugins.types import RpcHandler
from aspen.rpc import params as p
from aspen.rpc.context import RpcContext

if TYPE_CHECKING:
    from aspen.node.node import Node

__all__ = ["core_handlers"]

#: Largest lease id the node picks (etcd's ids are positive int64).
MAX_LEASE_ID = 2**63 - 1


async def kv_put(ctx: RpcContext, params: dict[str, Any]) -> Any:
    """Write one key."""
    return await ctx.node.propose(commands.put_command(params))


async def kv_delete(ctx: RpcContext, params: dict[str, Any]) -> Any:
    """Delete one key or a range."""
    return await ctx.node.propose(commands.delete_command(params))


async def kv_txn(ctx: RpcContext, params: dict[str, Any]) -> Any:
    """Run a compare-then-ops transaction."""
    return await ctx.node.propose(commands.txn_command(params))


async def kv_compact(ctx: RpcContext, params: dict[str, Any]) -> Any:
    """Drop history before a revision."""
    return await ctx.node.propose(commands.compact_command(params))


async def kv_range(ctx: RpcContext, params: dict[str, Any]) -> Any:
    """Read one key or a range."""
    node: Node = ctx.node
    request = commands.range_request(params)
    if not request.serializable:
        await node.read_barrier()
    with node.storage.begin() as txn:
        return node.state_machine.range(txn, request)


async def kv_watch(ctx: RpcContext, params: dict[str, Any]) -> AsyncIterator[Any]:
    """Stream changes of a key or range from a start revision (at most
    ``MAX_WATCHES_PER_CONNECTION`` at once on one connection)."""
    node: Node = ctx.node
    request = commands.watch_request(params)
    streams = ctx.open_streams
    if streams.get("kv.watch", 0) >= MAX_WATCHES_PER_CONNECTION:
        raise ResourceExhaustedError(
            f"too many watches on this connection (MAX_WATCHES_PER_CONNECTION = "
            f"{MAX_WATCHES_PER_CONNECTION}); cancel one, or open another connection",
            limit=MAX_WATCHES_PER_CONNECTION,
        )
    streams["kv.watch"] = streams.get("kv.watch", 0) + 1
    try:
        async for item in node.watch_hub.stream(request):
            yield item
    finally:
        streams["kv.watch"] -= 1


async def lease_grant(ctx: RpcContext, params: dict[str, Any]) -> Any:
    """Create a lease; the node picks the id unless one is given."""
    node: Node = ctx.node
    command = commands.lease_grant_command(params, secrets.randbelow(MAX_LEASE_ID) + 1)
    result = await node.propose(command)
    node.leases.granted(result["id"], result["ttl"])
    return result


async def lease_revoke(ctx: RpcContext, params: dict[str, Any]) -> Any:
    """Delete a lease and every key attached to it."""
    node: Node = ctx.node
    command = commands.lease_revoke_command(params)
    result = await node.propose(command)
    node.leases.revoked(command["id"])
    return result


async def lease_keepalive(ctx: RpcContext, params: dict[str, Any]) -> Any:
    """Renew a lease to its full TTL."""
    lease_id = commands.lease_id_param(params)
    ctx.node.cluster.require_leader()
    return {"id": lease_id, "ttl": ctx.node.leases.keepalive(lease_id)}


async def lease_ttl(ctx: RpcContext, params: dict[str, Any]) -> Any:
    """Remaining and granted TTL of a lease, optionally with its keys."""
    node: Node = ctx.node
    lease_id = commands.lease_id_param(params)
    with_keys = bool(p.optional_bool(params, "keys"))
    node.cluster.require_leader()
    with node.storage.begin() as txn:
        info = node.state_machine.lease_info(txn, lease_id, with_keys)
    if info is None:
        raise NotFoundError(f"lease {lease_id} not found", lease=lease_id)
    return {
        "id": lease_id,
        "ttl": node.leases.remaining(lease_id),
        "granted_ttl": info["granted_ttl"],
        "keys": info.get("keys", []),
    }


async def lease_list(ctx: RpcContext, params: dict[str, Any]) -> Any:
    """Every live lease id."""
    node: Node = ctx.node
    with node.storage.begin() as txn:
        return {"leases": node.state_machine.lease_ids(txn)}


async def node_status(ctx: RpcContext, params: dict[str, Any]) -> Any:
    """What this node is, where it stands, and how its subscribers are doing."""
    return await ctx.node.status()


def core_handlers() -> list[RpcHandler]:
    """Every built-in method, tagged as the core's."""
    table: list[tuple[str, Any, bool]] = [
        ("kv.put", kv_put, False),
        ("kv.range", kv_range, False),
        ("kv.delete", kv_delete, False),
        ("kv.txn", kv_txn, False),
        ("kv.compact", kv_compact, False),
        ("kv.watch", kv_watch, True),
        ("lease.grant", lease_grant, False),
        ("lease.revoke", lease_revoke, False),
        ("lease.keepalive", lease_keepalive, False),
        ("lease.ttl", lease_ttl, False),
        ("lease.list", lease_list, False),
        ("node.status", node_status, False),
    ]
    return [
        RpcHandler(name, func, streaming=streaming, doc=(func.__doc__ or "").strip(), plugin="core")
        for name, func, streaming in table
    ] + cluster_handlers()
