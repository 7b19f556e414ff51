"""``coord.election.*``: leader election in etcd's concurrency style.

A candidate campaigns by joining the election's FIFO queue (:mod:`aspen_coord.queue`) with
its value; it is leader once nothing older is queued, and stays leader until it resigns or
its lease expires. The leader is the oldest entry, its value what it last proclaimed and its
fence (create revision) strictly increases from one leader to the next. ``observe`` streams
every change of leader or value.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import anyio

from aspen.client import prefix_end
from aspen.errors import NotFoundError, NotLeaderError, UnavailableError
from aspen.rpc.params import require_bytes, require_int
from aspen_coord import limits, store
from aspen_coord.errors import NotHeldError, raise_typed
from aspen_coord.keys import name_of, prefix
from aspen_coord.queue import Entry, acquire, entries, entry_key, entry_of, predecessor

__all__ = ["campaign", "leader", "observe", "proclaim"]


def _value(params: dict[str, Any]) -> bytes:
    value = params.get("value", b"")
    if isinstance(value, str):
        params = {**params, "value": value.encode()}
    return require_bytes(params, "value", max_len=limits.COORD_MAX_VALUE_BYTES)


def _wire(entry: Entry | None) -> dict[str, Any] | None:
    if entry is None:
        return None
    return {"value": entry.value, "fence": entry.fence, "lease": entry.lease}


async def campaign(ctx: Any, params: dict[str, Any]) -> dict[str, Any]:
    """Become leader of election ``name`` with ``value`` (wait up to ``timeout`` s; 0 =
    only if nobody leads): ``{fence, lease}``."""
    where = prefix("election", name_of(params))
    ticket = await acquire(
        ctx.node, where, params, lambda ahead: not ahead, value=_value(params), blocker=predecessor
    )
    return ticket.to_wire()


async def proclaim(ctx: Any, params: dict[str, Any]) -> dict[str, Any]:
    """The leader (``lease``, ``fence``) announces a new ``value`` without an election."""
    where = prefix("election", name_of(params))
    lease = require_int(params, "lease", min=1)
    fence = require_int(params, "fence", min=1)
    key = entry_key(where, lease)
    result = await store.txn(
        ctx.node,
        [store.cmp(key, "create_revision", "==", fence)],
        [store.put_op(key, _value(params), lease=lease)],
    )
    if not result["succeeded"]:
        raise_typed(NotHeldError, f"lease {lease} does not lead at fence {fence}")
    return {"revision": int(result["header"]["revision"])}


async def _queue_now(node: Any, where: bytes) -> tuple[list[Entry], int]:
    """The election's queue and its revision, read linearizably within
    ``COORD_ELECTION_READ_SECONDS`` (a read cut short by a leader change is tried again
    meanwhile); ``unavailable`` when this node cannot reach a quorum that soon (as etcd's
    election API, it never answers from a possibly stale replica)."""
    bound = limits.COORD_ELECTION_READ_SECONDS
    with anyio.move_on_after(bound):
        while True:
            try:
                return await entries(node, where)
            except NotLeaderError:
                await anyio.sleep(limits.COORD_ELECTION_READ_RETRY_SECONDS)
    raise UnavailableError(
        f"this node could not reach the cluster's leader within "
        f"COORD_ELECTION_READ_SECONDS={bound} s to read the election; "
        "it may be cut off: observe through another node",
        bound="COORD_ELECTION_READ_SECONDS",
    )


async def leader(ctx: Any, params: dict[str, Any]) -> dict[str, Any]:
    """The current leader of election ``name``: ``{value, fence, lease}``; ``not_found``
    when nobody leads, ``unavailable`` when this node cannot reach a quorum promptly."""
    queue, _ = await _queue_now(ctx.node, prefix("election", name_of(params)))
    if not queue:
        raise NotFoundError(f"election {name_of(params)!r} has no leader")
    return _wire(queue[0]) or {}


async def observe(ctx: Any, params: dict[str, Any]) -> AsyncIterator[dict[str, Any]]:
    """Stream ``{leader: {value, fence, lease} | None, revision}``: the leader now, then
    every change of leader or of its value. The queue is read once, then kept up to date
    event by event from a watch, so no change is skipped, even two in one watch message.
    ``unavailable`` (after ``COORD_ELECTION_READ_SECONDS``) when this node cannot reach a
    quorum: it never reports a leader from a possibly stale replica."""
    where = prefix("election", name_of(params))
    queue, revision = await _queue_now(ctx.node, where)
    by_key = {e.key: e for e in queue}
    last = _wire(queue[0] if queue else None)
    yield {"leader": last, "revision": revision}
    spec = {"key": where, "end": prefix_end(where), "start_revision": revision + 1}
    async for item in ctx.node.stream("kv.watch", spec):
        for event in item.get("events", ()):
            kv = event["kv"]
            if event["type"] == "put":
                by_key[kv["key"]] = entry_of(kv)
            else:
                by_key.pop(kv["key"], None)
            first = min(by_key.values(), key=lambda e: e.fence, default=None)
            now = _wire(first)
            if now != last:
                last = now
                yield {"leader": now, "revision": int(kv["mod_revision"])}
