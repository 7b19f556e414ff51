"""The core's RPC methods: ``kv.*``, ``lease.*`` and ``node.*`` (docs/protocol.md).

Each handler takes, before ``(ctx, params)``, the collaborator it works with (a
:class:`~aspen.node.kv_service.KVService`, the :class:`~aspen.node.leases.LeaseService` or the
:class:`~aspen.node.watch.WatchHub`); :func:`core_handlers` binds them when the node builds
its registry. Writes are validated into commands and go through ``kv.propose``; reads come
straight from an LMDB read transaction (on one node every acknowledged write is already
committed, so a fresh read transaction is linearizable), in a worker thread unless they are a
single key. A txn that only compares and reads is such a read (etcd does the same): it never
enters the log. A request whose answer is already over its read budget (``aspen.kv.budget``)
is refused before it is proposed.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from functools import partial
from typing import Any

from aspen.auth.kvscope import kv_spans
from aspen.kv import commands
from aspen.limits import MAX_WATCHES_PER_CONNECTION
from aspen.node.kv_service import KVService
from aspen.node.leases import LeaseService
from aspen.node.watch import WatchHub
from aspen.plugins.types import PluginInfo
from aspen.rpc import params as p
from aspen.rpc.context import RpcContext
from aspen.rpc.handler import RpcHandler

__all__ = ["core_handlers"]


async def kv_put(kv: KVService, ctx: RpcContext, params: dict[str, Any]) -> Any:
    """Write one key."""
    return await kv.propose(commands.put_command(params))


async def kv_delete(kv: KVService, ctx: RpcContext, params: dict[str, Any]) -> Any:
    """Delete one key or a range."""
    command = commands.delete_command(params)
    if command["prev_kv"] and command["end"]:
        # refuse now what apply would refuse (keys added meanwhile are refused there)
        await kv.read(lambda txn: kv.state_machine.check_delete(txn, command))
    return await kv.propose(command)


async def kv_txn(kv: KVService, ctx: RpcContext, params: dict[str, Any]) -> Any:
    """Run a compare-then-ops transaction (one that only compares and reads is a read)."""
    command = commands.txn_command(params)
    if not commands.is_read_only(command):
        return await kv.propose(command)
    await kv.read_barrier()
    return await kv.read(lambda txn: kv.state_machine.read_txn(txn, command))


async def kv_compact(kv: KVService, ctx: RpcContext, params: dict[str, Any]) -> Any:
    """Drop history before a revision."""
    return await kv.propose(commands.compact_command(params))


async def kv_range(kv: KVService, ctx: RpcContext, params: dict[str, Any]) -> Any:
    """Read one key or a range."""
    request = commands.range_request(params)
    if not request.serializable:
        await kv.read_barrier()
    else:
        await kv.settled()
    if request.end is None and not request.revision:  # one key: cheap enough for the loop
        with kv.storage.begin() as txn:
            return kv.state_machine.range(txn, request)
    return await kv.read(lambda txn: kv.state_machine.range(txn, request))


@dataclass(frozen=True)
class WatchSource:
    """What ``kv.watch`` reads: the watch hub, and ``settled`` (``KVService.settled``)."""

    hub: WatchHub
    settled: Callable[[], Awaitable[None]]


async def kv_watch(
    source: WatchSource, ctx: RpcContext, params: dict[str, Any]
) -> AsyncIterator[Any]:
    """Stream changes of a key or range from a start revision (at most
    ``MAX_WATCHES_PER_CONNECTION`` at once on one connection). It starts from a state that
    holds every write this node already answered (a compaction among them included)."""
    request = commands.watch_request(params)
    await source.settled()
    watch_hub = source.hub
    with ctx.stream_slot("kv.watch", MAX_WATCHES_PER_CONNECTION, "MAX_WATCHES_PER_CONNECTION"):
        async for item in watch_hub.stream(request):
            yield item


async def lease_grant(leases: LeaseService, ctx: RpcContext, params: dict[str, Any]) -> Any:
    """Create a lease; the node picks the id unless one is given."""
    return await leases.grant(params)


async def lease_revoke(leases: LeaseService, ctx: RpcContext, params: dict[str, Any]) -> Any:
    """Delete a lease and every key attached to it (a capability token: only if it may
    write every one of them)."""
    return await leases.revoke(params, ctx.authority)


async def lease_keepalive(leases: LeaseService, ctx: RpcContext, params: dict[str, Any]) -> Any:
    """Renew a lease to its full TTL (a capability token: only if it may write every key
    attached to it)."""
    lease_id = commands.lease_id_param(params)
    await leases.require_keys(lease_id, ctx.authority, "write", "lease.keepalive")
    return {"id": lease_id, "ttl": leases.keepalive(lease_id)}


async def lease_ttl(leases: LeaseService, ctx: RpcContext, params: dict[str, Any]) -> Any:
    """Remaining and granted TTL of a lease, optionally with its keys (a capability token:
    only if it may read every key attached to it)."""
    lease_id = commands.lease_id_param(params)
    await leases.require_keys(lease_id, ctx.authority, "read", "lease.ttl")
    return await leases.time_to_live(lease_id, bool(p.optional_bool(params, "keys")))


async def lease_list(leases: LeaseService, ctx: RpcContext, params: dict[str, Any]) -> Any:
    """Every live lease id."""
    return {"leases": await leases.ids()}


async def node_status(ctx: RpcContext, params: dict[str, Any]) -> Any:
    """What this node is, where it stands, and how its subscribers are doing."""
    return await ctx.node.status()


async def node_plugins(
    plugin_infos: Callable[[], list[PluginInfo]], ctx: RpcContext, params: dict[str, Any]
) -> Any:
    """The plugins this node loaded, disabled or failed (``aspen plugins`` asks every node)."""
    return {
        "node_id": ctx.node.id,
        "endpoint": ctx.node.endpoint,
        "plugins": [info.to_json() for info in plugin_infos()],
    }


def core_handlers(
    kv: KVService,
    leases: LeaseService,
    watch_hub: WatchHub,
    plugin_infos: Callable[[], list[PluginInfo]],
) -> list[RpcHandler]:
    """Every built-in method but ``cluster.*`` and ``token.*``, bound to the collaborator it
    uses, tagged as the core's, with the capability it needs (KV methods also check every key
    or range they touch: ``aspen.auth.kvscope``)."""
    table: list[tuple[str, Callable[..., Any], Any, bool, str]] = [
        ("kv.put", kv_put, kv, False, "kv:write"),
        ("kv.range", kv_range, kv, False, "kv:read"),
        ("kv.delete", kv_delete, kv, False, "kv:write"),
        ("kv.txn", kv_txn, kv, False, "kv:read"),
        ("kv.compact", kv_compact, kv, False, "cluster:admin"),
        ("kv.watch", kv_watch, WatchSource(watch_hub, kv.settled), True, "kv:read"),
        ("lease.grant", lease_grant, leases, False, "lease:write"),
        ("lease.revoke", lease_revoke, leases, False, "lease:write"),
        ("lease.keepalive", lease_keepalive, leases, False, "lease:write"),
        ("lease.ttl", lease_ttl, leases, False, "lease:read"),
        ("lease.list", lease_list, leases, False, "lease:read"),
        ("node.status", node_status, None, False, "cluster:read"),
        ("node.plugins", node_plugins, plugin_infos, False, "cluster:read"),
    ]
    return [
        RpcHandler(
            name,
            func if uses is None else partial(func, uses),
            streaming=streaming,
            doc=(func.__doc__ or "").strip(),
            plugin="core",
            capability=capability,
            scope=partial(kv_spans, name) if name in _KEY_SCOPED else None,
        )
        for name, func, uses, streaming, capability in table
    ]


#: The methods whose every key or range is checked against the token's ``kv:`` prefixes.
_KEY_SCOPED = frozenset({"kv.put", "kv.range", "kv.delete", "kv.txn", "kv.watch"})
