"""The core's RPC methods: ``kv.*``, ``lease.*`` and ``node.*`` (docs/protocol.md).

Writes are validated into commands and go through ``node.propose``; reads come straight
from an LMDB read transaction (on one node every acknowledged write is already committed,
so a fresh read transaction is linearizable), in a worker thread unless they are a single
key. A txn that only compares and reads is such a read (etcd does the same): it never
enters the log. A request whose answer is already over its read budget (``aspen.kv.budget``)
is refused before it is proposed.
"""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator, Callable
from typing import TYPE_CHECKING, Any, TypeVar

import anyio
import lmdb

from aspen.blobs.handlers import blob_methods
from aspen.errors import NotFoundError, ResourceExhaustedError
from aspen.kv import commands
from aspen.limits import MAX_WATCHES_PER_CONNECTION
from aspen.node.cluster_handlers import cluster_handlers
from aspen.node.node_of import node_of
from aspen.plugins.types import RpcHandler
from aspen.rpc import params as p
from aspen.rpc.context import RpcContext

if TYPE_CHECKING:
    from aspen.node.node import Node

__all__ = ["core_handlers"]

#: Largest lease id the node picks (etcd's ids are positive int64).
MAX_LEASE_ID = 2**63 - 1

_T = TypeVar("_T")


async def _read(node: Node, read: Callable[[lmdb.Transaction], _T]) -> _T:
    """Run ``read`` in a fresh read transaction in a worker thread, off the event loop."""

    def run() -> _T:
        with node.storage.begin() as txn:
            return read(txn)

    return await anyio.to_thread.run_sync(run, limiter=node.read_limiter)


async def kv_put(ctx: RpcContext, params: dict[str, Any]) -> Any:
    """Write one key."""
    return await node_of(ctx).propose(commands.put_command(params))


async def kv_delete(ctx: RpcContext, params: dict[str, Any]) -> Any:
    """Delete one key or a range."""
    node = node_of(ctx)
    command = commands.delete_command(params)
    if command["prev_kv"] and command["end"]:
        # refuse now what apply would refuse (keys added meanwhile are refused there)
        await _read(node, lambda txn: node.state_machine.check_delete(txn, command))
    return await node.propose(command)


async def kv_txn(ctx: RpcContext, params: dict[str, Any]) -> Any:
    """Run a compare-then-ops transaction (one that only compares and reads is a read)."""
    node = node_of(ctx)
    command = commands.txn_command(params)
    if not commands.is_read_only(command):
        return await node.propose(command)
    await node.read_barrier()
    return await _read(node, lambda txn: node.state_machine.read_txn(txn, command))


async def kv_compact(ctx: RpcContext, params: dict[str, Any]) -> Any:
    """Drop history before a revision."""
    return await node_of(ctx).propose(commands.compact_command(params))


async def kv_range(ctx: RpcContext, params: dict[str, Any]) -> Any:
    """Read one key or a range."""
    node = node_of(ctx)
    request = commands.range_request(params)
    if not request.serializable:
        await node.read_barrier()
    if request.end is None and not request.revision:  # one key: cheap enough for the loop
        with node.storage.begin() as txn:
            return node.state_machine.range(txn, request)
    return await _read(node, lambda txn: node.state_machine.range(txn, request))


async def kv_watch(ctx: RpcContext, params: dict[str, Any]) -> AsyncIterator[Any]:
    """Stream changes of a key or range from a start revision (at most
    ``MAX_WATCHES_PER_CONNECTION`` at once on one connection)."""
    node = node_of(ctx)
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
    node = node_of(ctx)
    command = commands.lease_grant_command(params, secrets.randbelow(MAX_LEASE_ID) + 1)
    result = await node.propose(command)
    node.leases.granted(result["id"], result["ttl"])
    return result


async def lease_revoke(ctx: RpcContext, params: dict[str, Any]) -> Any:
    """Delete a lease and every key attached to it."""
    node = node_of(ctx)
    command = commands.lease_revoke_command(params)
    result = await node.propose(command)
    node.leases.revoked(command["id"])
    return result


async def lease_keepalive(ctx: RpcContext, params: dict[str, Any]) -> Any:
    """Renew a lease to its full TTL."""
    lease_id = commands.lease_id_param(params)
    node_of(ctx).cluster.require_leader()
    return {"id": lease_id, "ttl": node_of(ctx).leases.keepalive(lease_id)}


async def lease_ttl(ctx: RpcContext, params: dict[str, Any]) -> Any:
    """Remaining and granted TTL of a lease, optionally with its keys."""
    node = node_of(ctx)
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
    node = node_of(ctx)
    with node.storage.begin() as txn:
        return {"leases": node.state_machine.lease_ids(txn)}


async def node_status(ctx: RpcContext, params: dict[str, Any]) -> Any:
    """What this node is, where it stands, and how its subscribers are doing."""
    return await ctx.node.status()


async def node_plugins(ctx: RpcContext, params: dict[str, Any]) -> Any:
    """The plugins this node loaded, disabled or failed (``aspen plugins`` asks every node)."""
    node = node_of(ctx)
    infos = node.pm.infos() if node.pm is not None else []
    return {
        "node_id": node.id,
        "endpoint": node.endpoint,
        "plugins": [info.to_json() for info in infos],
    }


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
        ("node.plugins", node_plugins, False),
    ]
    return [
        RpcHandler(name, func, streaming=streaming, doc=(func.__doc__ or "").strip(), plugin="core")
        for name, func, streaming in table + blob_methods()
    ] + cluster_handlers()
