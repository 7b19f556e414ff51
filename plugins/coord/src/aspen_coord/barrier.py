"""``coord.barrier.*``: wait until N participants have arrived, then release them all.

Each participant puts ``p/<id>`` under the barrier, then counts the participants; whoever
counts N or more opens the barrier (puts ``open``). Every put precedes its count and reads
are linearizable, so the N-th arrival always sees N and opens it. Waiters sleep on a watch
of the barrier until ``open`` appears. An open barrier stays open (later arrivals pass at
once) until ``coord.barrier.reset``.
"""

from __future__ import annotations

import uuid
from typing import Any

import anyio

from aspen.client import prefix_end
from aspen.errors import ResourceExhaustedError
from aspen.errors import TimeoutError as AspenTimeoutError
from aspen.rpc.params import require_int
from aspen_coord import limits, store
from aspen_coord.keys import check_name, name_of, prefix
from aspen_coord.queue import wait_seconds

__all__ = ["barrier_reset", "barrier_status", "barrier_wait"]


async def _count(node: Any, where: bytes) -> int:
    people = where + b"p/"
    got = await node.call(
        "kv.range", {"key": people, "end": prefix_end(people), "count_only": True}
    )
    return int(got["count"])


async def barrier_wait(ctx: Any, params: dict[str, Any]) -> dict[str, Any]:
    """Arrive at barrier ``name`` of ``count`` participants (``id`` names this one) and wait
    up to ``timeout`` s until all have: ``{released, arrived}``; ``timeout`` error (and
    this participant leaves again) if they do not."""
    where = prefix("barrier", name_of(params))
    count = require_int(params, "count", min=1, max=limits.COORD_MAX_PERMITS)
    who = check_name(params.get("id") or uuid.uuid4().hex, "id")
    seconds = wait_seconds(params, limits.COORD_MAX_WAIT_SECONDS)
    node, opened, me = ctx.node, where + b"open", where + b"p/" + who.encode()
    if await _count(node, where) >= limits.COORD_MAX_WAITERS:
        raise ResourceExhaustedError(
            f"barrier is full (COORD_MAX_WAITERS {limits.COORD_MAX_WAITERS})",
            limit=limits.COORD_MAX_WAITERS,
        )
    joined = await store.txn(
        node, [store.cmp(opened, "create_revision", "==", 0)], [store.put_op(me, b"")]
    )
    if not joined["succeeded"]:
        return {"released": True, "arrived": await _count(node, where)}
    deadline = store.Deadline(seconds)
    try:
        while True:
            arrived = await _count(node, where)
            if arrived >= count:
                await store.txn(
                    node,
                    [store.cmp(opened, "create_revision", "==", 0)],
                    [store.put_op(opened, b"%d" % arrived)],
                )
            state = await node.call("kv.range", {"key": opened})
            if state["kvs"]:
                return {"released": True, "arrived": arrived}
            revision = int(state["header"]["revision"])
            if deadline.left() <= 0 or not await store.wait_for_change(
                node, where, revision, deadline, deletes_only=False
            ):
                raise AspenTimeoutError(
                    f"barrier {name_of(params)!r}: {arrived} of {count} arrived in time",
                    arrived=arrived,
                )
    except BaseException:
        with anyio.CancelScope(shield=True):
            await store.txn(
                node, [store.cmp(opened, "create_revision", "==", 0)], [store.delete_op(me)]
            )
        raise


async def barrier_status(ctx: Any, params: dict[str, Any]) -> dict[str, Any]:
    """``{arrived, open}`` of barrier ``name``."""
    where = prefix("barrier", name_of(params))
    state = await ctx.node.call("kv.range", {"key": where + b"open"})
    return {"arrived": await _count(ctx.node, where), "open": bool(state["kvs"])}


async def barrier_reset(ctx: Any, params: dict[str, Any]) -> dict[str, Any]:
    """Close barrier ``name`` and forget its participants."""
    where = prefix("barrier", name_of(params))
    result = await store.txn(ctx.node, [], [store.delete_op(where, prefix=True)])
    return {"revision": int(result["header"]["revision"])}
