"""The lease lifecycle, all of it: grant, revoke, keepalive, time-to-live, expiry, and what
happens when this node gains or loses the leadership.

The state machine stores each lease's granted TTL and its keys (:mod:`aspen.kv.leases`).
*When* a lease runs out is not replicated: the leader keeps a deadline per lease from its
monotonic clock, keepalives push the deadline, and a check every
``LEASE_CHECK_INTERVAL_SECONDS`` proposes ``lease_expire`` commands for the leases that ran
out, so every replica deletes the same keys at the same log index. Each command deletes at
most ``LEASE_EXPIRY_SLICE_KEYS`` keys and ``LEASE_EXPIRY_SLICE_BYTES`` bytes (the apply says
which leases remain), and the next follows ``LEASE_EXPIRY_PAUSE_SECONDS`` after it is
applied: many leases running out at once never make one apply that stalls the driver.

A node that becomes leader forgets what it knew and, once its election no-op is applied
(everything earlier leaders committed is visible), loads every stored lease with a fresh
full TTL (as etcd does after a restart or a leader change). The load reads and indexes the
leases in a worker thread, so 100k leases do not stall the event loop (and the heartbeats
it sends); until it is installed, a keepalive or time-to-live of a stored lease tracks that
lease on demand. When the node stops leading it forgets every deadline. Keepalive and
time-to-live are answered by the leader only.

Deadlines also sit in a min-heap of ``(deadline, id)``, so a check costs what expires, not
what is granted: a keepalive pushes a new entry and leaves the old one behind (stale
entries are dropped when they reach the top, and the heap is rebuilt once they outnumber
the live ones), so granting and renewing cost O(log n).
"""

from __future__ import annotations

import heapq
import logging
import math
import secrets
import time
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

import anyio

from aspen import limits
from aspen.auth.access import ROOT, Authority, lease_key_error
from aspen.errors import AspenError, NotFoundError
from aspen.kv import commands
from aspen.kv.state_machine import KVStateMachine
from aspen.storage import Storage

__all__ = ["MAX_LEASE_ID", "LeaseService"]

log = logging.getLogger(__name__)

#: Largest lease id the node picks (etcd's ids are positive int64).
MAX_LEASE_ID = 2**63 - 1

#: lease id -> (granted ttl, monotonic deadline)
Deadlines = dict[int, tuple[int, float]]
#: (deadline, lease id) entries, a min-heap
DeadlineHeap = list[tuple[float, int]]


def _index(granted: Iterable[tuple[int, int]], now: float) -> tuple[Deadlines, DeadlineHeap]:
    """Deadlines (each a full TTL from ``now``) and their heap for ``(id, ttl)`` pairs."""
    leases = {lease_id: (ttl, now + ttl) for lease_id, ttl in granted}
    heap = [(deadline, i) for i, (_, deadline) in leases.items()]
    heapq.heapify(heap)
    return leases, heap


async def _nothing_unsettled() -> None:
    """The default ``settled`` of a :class:`LeaseService`: no answer is ahead of its apply."""


class LeaseService:
    """Lease deadlines (kept in memory by the leader), the ``lease.*`` operations, the
    load of a new leader's leases, and the loop that proposes the expiry of leases that
    ran out."""

    def __init__(
        self,
        storage: Storage,
        state_machine: KVStateMachine,
        *,
        propose: Callable[[dict[str, Any]], Awaitable[Any]],
        require_leader: Callable[[], None],
        settled: Callable[[], Awaitable[None]] = _nothing_unsettled,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """``propose`` replicates a command and returns its result; ``require_leader``
        raises ``not_leader`` (with the leader's endpoint) unless this node leads;
        ``settled`` waits until every write this node answered is visible (lease reads of
        the stored state wait for it)."""
        self._storage = storage
        self._state_machine = state_machine
        self._propose = propose
        self._require_leader = require_leader
        self._settled = settled
        self._clock = clock
        self._leases: Deadlines = {}
        #: possibly stale entries (the lease renewed or gone): see the module doc
        self._heap: DeadlineHeap = []
        #: heap entries examined by :meth:`expired` so far (tests pin its cost with it)
        self.examined = 0
        #: bumped whenever the leadership changes: a load begun before is dropped
        self._generation = 0
        #: the generation whose lease load is wanted (None: no load wanted)
        self._load_wanted: int | None = None
        #: set when a load is wanted (made by :meth:`run`, on the event loop)
        self._wake: anyio.Event | None = None
        #: this node leads and its leases are not loaded yet
        self.loading = False
        #: leases forgotten while loading (the load must not bring them back)
        self._forgotten: set[int] = set()

    # ------------------------------------------------------------------ operations
    async def grant(self, params: dict[str, Any]) -> Any:
        """Create a lease (``lease.grant``); the node picks the id unless one is given."""
        command = commands.lease_grant_command(params, secrets.randbelow(MAX_LEASE_ID) + 1)
        result = await self._propose(command)
        self._set(result["id"], result["ttl"], self._clock() + result["ttl"])
        return result

    async def revoke(self, params: dict[str, Any], authority: Authority = ROOT) -> Any:
        """Delete a lease and every key attached to it (``lease.revoke``).

        Like an expiry, one command deletes at most ``LEASE_EXPIRY_SLICE_KEYS`` keys and
        ``LEASE_EXPIRY_SLICE_BYTES`` bytes: a lease with more loses them over several
        commands, ``LEASE_EXPIRY_PAUSE_SECONDS`` apart (writes go on between them), the last
        of which deletes the lease; the answer comes after it. A capability token's revoke
        carries its ``kv:write`` prefixes and each command is refused, deleting nothing,
        unless they cover every key it would delete (checked in the apply: a key attached
        meanwhile is seen)."""
        writable = None
        if not authority.unrestricted:
            writable = [prefix for prefix, _ in authority.kv.get("write", ())]
        command = commands.lease_revoke_command(params, writable)
        result = await self._propose(command)
        while result.get("remaining"):
            await anyio.sleep(limits.LEASE_EXPIRY_PAUSE_SECONDS)
            try:
                result = await self._propose(command)
            except NotFoundError:  # expired or revoked by another caller meanwhile: gone
                result = {}
        self.forget(command["id"])
        return {k: v for k, v in result.items() if k != "remaining"}

    async def require_keys(
        self, lease_id: int, authority: Authority, operation: str, method: str
    ) -> None:
        """Raise ``unauthorized`` unless ``authority`` may ``operation`` (``read``/``write``)
        every key attached to the lease (read in a worker thread; root: no check)."""
        if authority.unrestricted:
            return
        await self._settled()
        outside = await anyio.to_thread.run_sync(
            self._state_machine.lease_key_outside, lease_id, authority.kv, operation
        )
        if outside is not None:
            raise lease_key_error(lease_id, operation, outside, method, token_id=authority.token_id)

    def keepalive(self, lease_id: int) -> int:
        """Renew a lease to its full TTL and return that TTL (leader only)."""
        self._require_leader()
        entry = self._tracked(lease_id)
        if entry is None:
            raise NotFoundError(f"lease {lease_id} not found", lease=lease_id)
        self._set(lease_id, entry[0], self._clock() + entry[0])
        return entry[0]

    async def time_to_live(self, lease_id: int, with_keys: bool) -> dict[str, Any]:
        """Remaining and granted TTL of a lease, optionally with its keys (leader only;
        read in a worker thread: a lease may list ``MAX_LEASE_KEYS_LISTED`` keys)."""
        self._require_leader()
        await self._settled()
        info = await anyio.to_thread.run_sync(
            self._state_machine.lease_info, None, lease_id, with_keys
        )
        if info is None:
            raise NotFoundError(f"lease {lease_id} not found", lease=lease_id)
        return {
            "id": lease_id,
            "ttl": self.remaining(lease_id),
            "granted_ttl": info["granted_ttl"],
            "keys": info.get("keys", []),
        }

    async def ids(self) -> list[int]:
        """Every granted lease id, ascending (from this node's state, read in a worker
        thread)."""
        await self._settled()
        return await anyio.to_thread.run_sync(self._state_machine.lease_ids)

    def remaining(self, lease_id: int) -> int:
        """Seconds left on a lease (rounded up), or -1 when it is not known."""
        entry = self._tracked(lease_id)
        if entry is None:
            return -1
        return max(0, math.ceil(entry[1] - self._clock()))

    def __len__(self) -> int:
        """Number of leases this node keeps a deadline for (0 unless it leads)."""
        return len(self._leases)

    # ------------------------------------------------------------------ leadership
    def leadership_changed(self, leading: bool) -> None:
        """This node became leader (its leases load once :meth:`leader_ready`) or stopped
        leading: either way every deadline known so far is forgotten."""
        self._generation += 1
        self._load_wanted = None
        self.loading = leading
        self._forgotten.clear()
        self._leases, self._heap = {}, []

    def leader_ready(self) -> None:
        """Our election no-op applied: every lease earlier leaders committed is visible; load
        them all (in :meth:`run`, off the event loop)."""
        if not self.loading:
            return
        self._load_wanted = self._generation
        if self._wake is not None:
            self._wake.set()

    def _tracked(self, lease_id: int) -> tuple[int, float] | None:
        """A lease's (ttl, deadline); while the leases load, a stored lease not reached yet
        is tracked on demand (full TTL from now), so its keepalive or ttl does not wait."""
        entry = self._leases.get(lease_id)
        if entry is None and self.loading and lease_id not in self._forgotten:
            info = self._state_machine.lease_info(None, lease_id)
            if info is not None:
                self._set(lease_id, info["granted_ttl"], self._clock() + info["granted_ttl"])
                entry = self._leases[lease_id]
        return entry

    def _read_stored(self) -> tuple[Deadlines, DeadlineHeap]:
        """Every stored lease, indexed with a full TTL (runs in a worker thread)."""
        return _index(self._state_machine.lease_ttls(), self._clock())

    async def _load_leases(self, generation: int) -> None:
        """Read and index every stored lease in a worker thread, then install them (on the
        loop, costing only what changed meanwhile) unless the leadership changed."""
        leases, heap = await anyio.to_thread.run_sync(self._read_stored)
        if generation != self._generation:
            return  # we stopped leading (or lead again, with a newer load wanted)
        for lease_id in self._forgotten:
            leases.pop(lease_id, None)
        for lease_id, entry in self._leases.items():  # granted or renewed while loading
            leases[lease_id] = entry
            heapq.heappush(heap, (entry[1], lease_id))
        self._leases, self._heap = leases, heap
        self._forgotten.clear()
        self.loading = False
        log.info("tracking %d leases as the new leader", len(leases))

    async def _load_when_wanted(self) -> None:
        """Run the lease load each time this node becomes a ready leader."""
        while True:
            self._wake = anyio.Event()
            if self._load_wanted is None:
                await self._wake.wait()
            generation, self._load_wanted = self._load_wanted, None
            if generation is not None:
                await self._load_leases(generation)

    def track(self, granted: Iterable[tuple[int, int]], *, replace: bool) -> None:
        """Keep a deadline for these leases (id, granted ttl), each a full TTL from now.

        With ``replace`` exactly these are tracked; without, leases already known keep
        their deadline and only new ones are added."""
        now = self._clock()
        if replace:
            self._leases, self._heap = _index(granted, now)
            return
        for lease_id, ttl in granted:
            if lease_id not in self._leases:
                self._set(lease_id, ttl, now + ttl)

    def forget(self, lease_id: int) -> None:
        """Stop tracking a lease that was revoked or expired (its heap entry goes stale)."""
        self._leases.pop(lease_id, None)
        if self.loading:
            self._forgotten.add(lease_id)

    def _set(self, lease_id: int, ttl: int, deadline: float) -> None:
        """Record a lease's deadline (in the map and the heap)."""
        self._leases[lease_id] = (ttl, deadline)
        heapq.heappush(self._heap, (deadline, lease_id))
        if len(self._heap) > 2 * len(self._leases) + 64:  # mostly stale: rebuild, O(n) per n pushes
            self._heap = [(d, i) for i, (_, d) in self._leases.items()]
            heapq.heapify(self._heap)

    # ------------------------------------------------------------------ expiry
    def expired(self) -> list[int]:
        """Ids whose deadline has passed, oldest first, at most one command's worth.

        Costs O(k log n) for k expired leases (plus the stale heap entries it drops): the
        due ones stay tracked until :meth:`forget` (their expiry may fail to commit)."""
        now = self._clock()
        heap = self._heap
        due: list[tuple[float, int]] = []
        while heap and heap[0][0] <= now and len(due) < limits.MAX_LEASES_EXPIRED_PER_COMMAND:
            entry = heapq.heappop(heap)
            self.examined += 1
            current = self._leases.get(entry[1])
            if current is not None and current[1] == entry[0]:
                due.append(entry)
        for entry in due:
            heapq.heappush(heap, entry)
        return [i for _, i in due]

    async def expire_due(self) -> bool:
        """Propose one bounded expiry command for leases that ran out; forget those the
        apply deleted (or found gone). True when it made progress (more may be due)."""
        due = self.expired()
        if not due:
            return False
        try:
            result = await self._propose(commands.lease_expire_command(due))
        except AspenError as exc:
            log.warning("expiring %d leases failed: %s", len(due), exc)
            return False
        remaining = set(result.get("remaining", ()))
        for lease_id in due:
            if lease_id not in remaining:
                self.forget(lease_id)
        return True

    async def run(self) -> None:
        """Load a new leader's leases when asked, and every ``LEASE_CHECK_INTERVAL_SECONDS``
        propose the expiry of leases that ran out: command after command while more are due,
        ``LEASE_EXPIRY_PAUSE_SECONDS`` apart."""
        async with anyio.create_task_group() as tg:
            tg.start_soon(self._load_when_wanted, name="lease-load")
            while True:
                await anyio.sleep(limits.LEASE_CHECK_INTERVAL_SECONDS)
                while await self.expire_due():
                    await anyio.sleep(limits.LEASE_EXPIRY_PAUSE_SECONDS)
