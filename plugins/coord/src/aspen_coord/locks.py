"""``coord.lock.*``, ``coord.rwlock.*`` and ``coord.semaphore.*``: who is admitted from the
FIFO queue (:mod:`aspen_coord.queue`), and the fenced write.

A lock admits the first entry; a read-write lock admits a reader when no writer is ahead
and a writer when nothing is; a semaphore of N permits admits the first N. The fenced
write (``coord.lock.write``) is one txn whose compares say "this lease's entry is the one
at this fence and nothing older is queued", so it commits only while the caller still holds
the lock at that fencing token: a paused ex-holder, whose lease expired and whose lock a
newer holder took, is refused with ``compare_failed`` (reason ``fenced``).
"""

from __future__ import annotations

from typing import Any

from aspen.client import prefix_end
from aspen.errors import CompareFailedError, InvalidArgumentError
from aspen.rpc.params import optional_bool, optional_list, require_int
from aspen_coord import limits, store
from aspen_coord.errors import FencedError, raise_typed
from aspen_coord.keys import name_of, prefix
from aspen_coord.queue import Entry, acquire, entries, held_entry, predecessor
from aspen_coord.queue import release as release_entry

__all__ = [
    "fenced_ops",
    "lock_acquire",
    "lock_release",
    "lock_renew",
    "lock_status",
    "lock_write",
    "rwlock_acquire",
    "semaphore_acquire",
]


def _nothing_ahead(ahead: list[Entry]) -> bool:
    return not ahead


async def lock_acquire(ctx: Any, params: dict[str, Any]) -> dict[str, Any]:
    """Take lock ``name`` (wait up to ``timeout`` s; 0 = try): ``{fence, lease}``."""
    where = prefix("lock", name_of(params))
    ticket = await acquire(ctx.node, where, params, _nothing_ahead, blocker=predecessor)
    return ticket.to_wire()


def release_for(kind: str) -> Any:
    """``coord.<kind>.release``: leave the queue; ``revoke`` also revokes the lease."""

    async def release(ctx: Any, params: dict[str, Any]) -> dict[str, Any]:
        where = prefix(kind, name_of(params))
        lease = require_int(params, "lease", min=1)
        fence = await release_entry(ctx.node, where, lease)
        if optional_bool(params, "revoke"):
            await store.lease_revoke(ctx.node, lease)
        return {"released": True, "fence": fence}

    release.__doc__ = f"Release what ``lease`` holds of {kind} ``name``."
    return release


def renew_for(kind: str) -> Any:
    """``coord.<kind>.renew``: keep the lease of a live entry alive."""

    async def renew(ctx: Any, params: dict[str, Any]) -> dict[str, Any]:
        where = prefix(kind, name_of(params))
        lease = require_int(params, "lease", min=1)
        entry = await held_entry(ctx.node, where, lease)
        return {"ttl": await store.lease_keepalive(ctx.node, lease), "fence": entry.fence}

    renew.__doc__ = f"Keep ``lease``'s place in {kind} ``name`` alive: ``{{ttl, fence}}``."
    return renew


def status_for(kind: str) -> Any:
    """``coord.<kind>.status``: the queue, oldest first."""

    async def status(ctx: Any, params: dict[str, Any]) -> dict[str, Any]:
        queue, revision = await entries(ctx.node, prefix(kind, name_of(params)))
        return {
            "revision": revision,
            "queue": [{"fence": e.fence, "lease": e.lease, "value": e.value} for e in queue],
        }

    status.__doc__ = f"The queue of {kind} ``name``, oldest first (the holders lead)."
    return status


lock_release = release_for("lock")
lock_renew = renew_for("lock")
lock_status = status_for("lock")


def fenced_ops(params: dict[str, Any]) -> list[dict[str, Any]]:
    """The ``ops`` of a fenced write: ``{"put": {key, value}}`` or ``{"delete": {key}}``,
    each on one key (checked against the caller's kv capabilities by the RPC layer)."""
    ops = optional_list(params, "ops", max_len=1000)
    checked: list[dict[str, Any]] = []
    for op in ops:
        if not isinstance(op, dict) or len(op) != 1:
            raise InvalidArgumentError("each op is {'put': {...}} or {'delete': {...}}")
        ((kind, body),) = op.items()
        if kind not in ("put", "delete") or not isinstance(body, dict):
            raise InvalidArgumentError(f"op {kind!r} is not put or delete", field="ops")
        key = body.get("key")
        if isinstance(key, str):
            key = key.encode()
        if not isinstance(key, bytes) or not key:
            raise InvalidArgumentError("each op needs a non-empty 'key'", field="ops")
        if kind == "put":
            value = body.get("value", b"")
            value = value.encode() if isinstance(value, str) else value
            if not isinstance(value, bytes):
                raise InvalidArgumentError("a put's 'value' is bytes", field="ops")
            checked.append(store.put_op(key, value))
        else:
            checked.append(store.delete_op(key))
    return checked


async def lock_write(ctx: Any, params: dict[str, Any]) -> dict[str, Any]:
    """Apply ``ops`` only while ``lease`` holds lock ``name`` at ``fence``: ``{revision}``;
    ``compare_failed`` (reason ``fenced``) when it does not any more."""
    where = prefix("lock", name_of(params))
    lease = require_int(params, "lease", min=1)
    fence = require_int(params, "fence", min=1)
    ops = fenced_ops(params)
    key = where + b"%016x" % lease
    guard = [
        store.cmp(key, "create_revision", "==", fence),
        store.cmp(where, "create_revision", ">", fence - 1, end=prefix_end(where)),
    ]
    result = await store.txn(ctx.node, guard, ops)
    if not result["succeeded"]:
        raise_typed(
            FencedError,
            f"lock {name_of(params)!r} is no longer held at fence {fence}",
            fence=fence,
        )
    return {"revision": int(result["header"]["revision"])}


async def rwlock_acquire(ctx: Any, params: dict[str, Any]) -> dict[str, Any]:
    """Take read-write lock ``name`` in ``mode`` ``read`` (shared) or ``write`` (exclusive)."""
    mode = params.get("mode", "write")
    if mode not in ("read", "write"):
        raise InvalidArgumentError("'mode' is 'read' or 'write'", field="mode")
    where = prefix("rwlock", name_of(params))

    def admitted(ahead: list[Entry]) -> bool:
        if mode == "write":
            return not ahead
        return all(e.value == b"read" for e in ahead)

    def blocker(ahead: list[Entry]) -> Entry | None:
        """A writer waits on the entry ahead; a reader on the last writer ahead."""
        return predecessor(ahead if mode == "write" else [e for e in ahead if e.value != b"read"])

    ticket = await acquire(
        ctx.node, where, params, admitted, value=mode.encode(), values=True, blocker=blocker
    )
    return {**ticket.to_wire(), "mode": mode}


async def semaphore_acquire(ctx: Any, params: dict[str, Any]) -> dict[str, Any]:
    """Take one of the ``permits`` of semaphore ``name`` (every caller must name the same
    number): ``{fence, lease}``."""
    permits = require_int(params, "permits", min=1, max=limits.COORD_MAX_PERMITS)
    where = prefix("semaphore", name_of(params))
    queue, _ = await entries(ctx.node, where)
    others = {int(e.value) for e in queue if e.value.isdigit()}
    if others - {permits}:
        raise CompareFailedError(
            f"semaphore {name_of(params)!r} is in use with {sorted(others)[0]} permits, "
            f"not {permits}",
            permits=sorted(others)[0],
        )

    def admitted(ahead: list[Entry]) -> bool:
        return len(ahead) < permits

    return (await acquire(ctx.node, where, params, admitted, value=b"%d" % permits)).to_wire()
