"""The fair FIFO queue under locks, elections, semaphores and read-write locks (etcd's
concurrency recipe).

A caller joins the queue of a primitive by putting ``<prefix><lease as 16 hex digits>``,
attached to its lease, if absent; the key's ``create_revision`` — a store revision, so
strictly increasing across every joiner — is its place in the queue and, once admitted, its
**fencing token**. Whether a caller is admitted depends only on the entries that joined
before it (``admitted(ahead)``): nothing ahead for a lock, no writer ahead for a reader,
fewer than N ahead for a semaphore. Entries only ever leave (release, or their lease
expires), so once admitted a caller stays admitted while its entry lives. A waiter sleeps
on a watch of the queue's deletions, never by polling, and re-checks on each one.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import anyio

from aspen.client import prefix_end
from aspen.errors import AspenError, InvalidArgumentError, ResourceExhaustedError
from aspen.rpc.params import optional_int
from aspen_coord import limits, store
from aspen_coord.errors import BusyError, NotHeldError, raise_typed

__all__ = ["Entry", "Ticket", "acquire", "entries", "entry_key", "lease_params", "leave"]


@dataclass(frozen=True)
class Entry:
    """One queue entry: its key, place (create revision), lease and value."""

    key: bytes
    fence: int
    lease: int
    value: bytes


@dataclass(frozen=True)
class Ticket:
    """What an admitted caller holds: its fencing token, lease, and whether this request
    granted that lease."""

    fence: int
    lease: int
    granted: bool

    def to_wire(self) -> dict[str, int]:
        """``{fence, lease}``."""
        return {"fence": self.fence, "lease": self.lease}


def predecessor(ahead: list[Entry]) -> Entry | None:
    """The entry just ahead (what an exclusive waiter waits on)."""
    return ahead[-1] if ahead else None


def entry_key(prefix: bytes, lease: int) -> bytes:
    """The key of ``lease``'s entry in the queue at ``prefix``."""
    return prefix + b"%016x" % lease


def entry_of(kv: dict[str, Any]) -> Entry:
    """The queue entry of a wire ``kv`` record."""
    return Entry(kv["key"], int(kv["create_revision"]), int(kv["lease"]), kv["value"])


async def entries(node: Any, prefix: bytes) -> tuple[list[Entry], int]:
    """The queue's entries in order of arrival, and the revision they were read at."""
    records, _, revision = await store.collect(node, prefix, most=2 * limits.COORD_MAX_WAITERS)
    return sorted((entry_of(kv) for kv in records), key=lambda e: e.fence), revision


def lease_params(params: dict[str, Any]) -> tuple[int, int]:
    """(``lease``, ``ttl``) of a request: an existing lease to attach to, or the TTL of a
    lease to grant (exactly one is used; ``lease`` wins)."""
    lease = optional_int(params, "lease", 0, min=0, max=2**63 - 1)
    ttl = optional_int(
        params,
        "ttl",
        60,
        min=limits.COORD_MIN_TTL_SECONDS,
        max=limits.COORD_MAX_TTL_SECONDS,
    )
    return lease, ttl


def wait_seconds(params: dict[str, Any], default: float) -> float:
    """The ``timeout`` of a waiting request (0: try once), within COORD_MAX_WAIT_SECONDS."""
    value = params.get("timeout", default)
    if value is None:
        value = default
    if not isinstance(value, int | float) or isinstance(value, bool):
        raise InvalidArgumentError("'timeout' must be a number of seconds", field="timeout")
    if not 0 <= value <= limits.COORD_MAX_WAIT_SECONDS:
        raise InvalidArgumentError(
            f"'timeout' must be 0 to COORD_MAX_WAIT_SECONDS ({limits.COORD_MAX_WAIT_SECONDS})",
            field="timeout",
            limit=limits.COORD_MAX_WAIT_SECONDS,
        )
    return float(value)


def _queue_range(prefix: bytes, values: bool) -> dict[str, Any]:
    """Txn op: read the queue (at most twice COORD_MAX_WAITERS entries; values only if
    admission needs them)."""
    limit = 2 * limits.COORD_MAX_WAITERS
    spec = {"key": prefix, "end": prefix_end(prefix), "limit": limit, "keys_only": not values}
    return {"range": spec}


def _sorted(kvs: list[dict[str, Any]]) -> list[Entry]:
    return sorted((entry_of(kv) for kv in kvs), key=lambda e: e.fence)


async def _local_queue(node: Any, prefix: bytes, values: bool) -> tuple[list[Entry], int]:
    """The queue as this node has it (a serializable read). Safe for admission: the node
    has applied at least the departure its watch just reported, entries only ever leave,
    and newcomers queue behind, so whoever is ahead now was ahead in this read: a caller
    admitted by it is admitted now."""
    params = {**_queue_range(prefix, values)["range"], "serializable": True}
    got = await node.call("kv.range", params)
    if got["more"]:  # a page cut short by its byte bound: read the whole queue
        return await entries(node, prefix)
    return _sorted(got["kvs"]), int(got["header"]["revision"])


async def _join(
    node: Any, prefix: bytes, lease: int, value: bytes, values: bool
) -> tuple[int, list[Entry], int]:
    """Put ``lease``'s entry if absent (a retried request finds its own) and read the queue
    in the same txn: (its fence, the queue, the revision read at)."""
    key = entry_key(prefix, lease)
    queue = _queue_range(prefix, values)
    result = await store.txn(
        node,
        [store.cmp(key, "create_revision", "==", 0)],
        [store.put_op(key, value, lease=lease), queue],
        [store.range_op(key), queue],
    )
    revision = int(result["header"]["revision"])
    entries = _sorted(result["responses"][1]["range"]["kvs"])
    if not result["succeeded"]:
        return int(result["responses"][0]["range"]["kvs"][0]["create_revision"]), entries, revision
    if len(entries) > limits.COORD_MAX_WAITERS:
        await leave(node, prefix, lease, revision)
        raise ResourceExhaustedError(
            f"{len(entries) - 1} callers are queued; COORD_MAX_WAITERS is "
            f"{limits.COORD_MAX_WAITERS}",
            limit=limits.COORD_MAX_WAITERS,
        )
    return revision, entries, revision


async def leave(node: Any, prefix: bytes, lease: int, fence: int) -> bool:
    """Delete ``lease``'s entry if it is still the one at ``fence``; whether it was."""
    key = entry_key(prefix, lease)
    result = await store.txn(
        node, [store.cmp(key, "create_revision", "==", fence)], [store.delete_op(key)]
    )
    return bool(result["succeeded"])


async def _await_turn(
    node: Any,
    prefix: bytes,
    fence: int,
    admitted: Callable[[list[Entry]], bool],
    deadline: store.Deadline,
    first: tuple[list[Entry], int],
    blocker: Callable[[list[Entry]], Entry | None],
    values: bool,
) -> None:
    """Return once ``admitted(entries ahead)`` (``first``: the queue as the join read it);
    ``busy`` at the deadline, ``not_held`` if the entry vanished (its lease expired) while
    waiting. In between, sleep until ``blocker(ahead)`` leaves (etcd's wait on the key just
    ahead: one release wakes one waiter, not the whole queue), or, when it names no single
    entry, until any entry leaves."""
    queue, revision = first
    while True:
        if not any(e.fence == fence for e in queue):
            raise_typed(NotHeldError, "the lease expired while waiting in the queue")
        ahead = [e for e in queue if e.fence < fence]
        if admitted(ahead):
            return
        blocking = blocker(ahead)
        watched = prefix if blocking is None else blocking.key
        if deadline.left() <= 0 or not await store.wait_for_change(
            node, watched, revision, deadline, deletes_only=True, single=blocking is not None
        ):
            raise_typed(BusyError, f"still {len(ahead)} ahead in the queue", ahead=len(ahead))
        queue, revision = await _local_queue(node, prefix, values)


async def acquire(
    node: Any,
    prefix: bytes,
    params: dict[str, Any],
    admitted: Callable[[list[Entry]], bool],
    *,
    value: bytes = b"",
    values: bool = False,
    blocker: Callable[[list[Entry]], Entry | None] = lambda ahead: None,
) -> Ticket:
    """Join the queue at ``prefix`` (granting a lease unless ``params`` names one) and wait
    until admitted or ``params["timeout"]`` (``values``: admission looks at the entries'
    values; ``blocker``: see :func:`_await_turn`); the lease is kept alive while waiting. On
    failure leave the queue (and revoke a lease granted here) before raising."""
    lease, ttl = lease_params(params)
    seconds = wait_seconds(params, 0.0)
    granted = lease == 0
    if granted:
        lease = await store.lease_grant(node, ttl)
    fence = 0
    try:
        fence, queue, revision = await _join(node, prefix, lease, value, values)
        deadline = store.Deadline(seconds)
        refused: AspenError | None = None
        async with anyio.create_task_group() as group:
            group.start_soon(store.keep_alive, node, lease)
            try:
                await _await_turn(
                    node, prefix, fence, admitted, deadline, (queue, revision), blocker, values
                )
            except AspenError as exc:
                refused = exc  # raised below, not wrapped in the task group's ExceptionGroup
            group.cancel_scope.cancel()
        if refused is not None:
            raise refused
    except BaseException:
        with anyio.CancelScope(shield=True):
            if fence:
                await leave(node, prefix, lease, fence)
            if granted:
                await store.lease_revoke(node, lease)
        raise
    return Ticket(fence, lease, granted)


async def release(node: Any, prefix: bytes, lease: int) -> int:
    """Delete ``lease``'s entry in one txn; the fence it had (``not_held`` if none)."""
    key = entry_key(prefix, lease)
    result = await store.txn(
        node,
        [store.cmp(key, "create_revision", ">", 0)],
        [{"delete": {"key": key, "prev_kv": True}}],
    )
    if not result["succeeded"]:
        raise_typed(NotHeldError, f"lease {lease} holds no entry here (released or expired)")
    return int(result["responses"][0]["delete"]["prev_kvs"][0]["create_revision"])


async def held_entry(node: Any, prefix: bytes, lease: int) -> Entry:
    """``lease``'s live entry in the queue at ``prefix``; ``not_held`` if there is none."""
    kv = await store.get(node, entry_key(prefix, lease))
    if kv is None:
        raise_typed(NotHeldError, f"lease {lease} holds no entry here (released or expired)")
    return entry_of(kv)
