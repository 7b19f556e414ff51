"""The lease lifecycle, all of it: grant, revoke, keepalive, time-to-live, expiry, and what
happens when this node gains or loses the leadership.

The state machine stores each lease's granted TTL and its keys (:mod:`aspen.kv.leases`).
*When* a lease runs out is not replicated: the leader keeps a deadline per lease from its
monotonic clock, keepalives push the deadline, and a periodic check proposes one
``lease_expire`` command for the leases that ran out, so every replica deletes the same keys
at the same log index. When a node becomes leader it loads every stored lease with a fresh
full TTL (as etcd does after a restart or a leader change); once its election no-op is
applied it also picks up leases granted under the previous leader; when it stops leading it
forgets every deadline. Keepalive and time-to-live are answered by the leader only.

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
from aspen.errors import AspenError, NotFoundError
from aspen.kv import commands
from aspen.kv.state_machine import KVStateMachine
from aspen.storage import Storage

__all__ = ["MAX_LEASE_ID", "LeaseService"]

log = logging.getLogger(__name__)

#: Largest lease id the node picks (etcd's ids are positive int64).
MAX_LEASE_ID = 2**63 - 1


class LeaseService:
    """Lease deadlines (kept in memory by the leader), the ``lease.*`` operations, and the
    loop that proposes the expiry of leases that ran out."""

    def __init__(
        self,
        storage: Storage,
        state_machine: KVStateMachine,
        *,
        propose: Callable[[dict[str, Any]], Awaitable[Any]],
        require_leader: Callable[[], None],
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """``propose`` replicates a command and returns its result; ``require_leader``
        raises ``not_leader`` (with the leader's endpoint) unless this node leads."""
        self._storage = storage
        self._state_machine = state_machine
        self._propose = propose
        self._require_leader = require_leader
        self._clock = clock
        #: lease id -> (granted ttl, monotonic deadline)
        self._leases: dict[int, tuple[int, float]] = {}
        #: (deadline, lease id), possibly stale (the lease renewed or gone): see the module doc
        self._heap: list[tuple[float, int]] = []
        #: heap entries examined by :meth:`expired` so far (tests pin its cost with it)
        self.examined = 0

    # ------------------------------------------------------------------ operations
    async def grant(self, params: dict[str, Any]) -> Any:
        """Create a lease (``lease.grant``); the node picks the id unless one is given."""
        command = commands.lease_grant_command(params, secrets.randbelow(MAX_LEASE_ID) + 1)
        result = await self._propose(command)
        self._set(result["id"], result["ttl"], self._clock() + result["ttl"])
        return result

    async def revoke(self, params: dict[str, Any]) -> Any:
        """Delete a lease and every key attached to it (``lease.revoke``)."""
        command = commands.lease_revoke_command(params)
        result = await self._propose(command)
        self.forget(command["id"])
        return result

    def keepalive(self, lease_id: int) -> int:
        """Renew a lease to its full TTL and return that TTL (leader only)."""
        self._require_leader()
        try:
            ttl, _ = self._leases[lease_id]
        except KeyError:
            raise NotFoundError(f"lease {lease_id} not found", lease=lease_id) from None
        self._set(lease_id, ttl, self._clock() + ttl)
        return ttl

    def time_to_live(self, lease_id: int, with_keys: bool) -> dict[str, Any]:
        """Remaining and granted TTL of a lease, optionally with its keys (leader only)."""
        self._require_leader()
        with self._storage.begin() as txn:
            info = self._state_machine.lease_info(txn, lease_id, with_keys)
        if info is None:
            raise NotFoundError(f"lease {lease_id} not found", lease=lease_id)
        return {
            "id": lease_id,
            "ttl": self.remaining(lease_id),
            "granted_ttl": info["granted_ttl"],
            "keys": info.get("keys", []),
        }

    def ids(self) -> list[int]:
        """Every granted lease id, ascending (from this node's state)."""
        with self._storage.begin() as txn:
            return self._state_machine.lease_ids(txn)

    def remaining(self, lease_id: int) -> int:
        """Seconds left on a lease (rounded up), or -1 when it is not known."""
        entry = self._leases.get(lease_id)
        if entry is None:
            return -1
        return max(0, math.ceil(entry[1] - self._clock()))

    def __len__(self) -> int:
        """Number of leases this node keeps a deadline for (0 unless it leads)."""
        return len(self._leases)

    # ------------------------------------------------------------------ leadership
    def leadership_changed(self, leading: bool) -> None:
        """This node became leader (track every stored lease, full TTL from now) or stopped
        leading (forget every deadline; the next leader reloads)."""
        if leading:
            self.track(self._stored(), replace=True)
        else:
            self._leases.clear()
            self._heap.clear()

    def leader_ready(self) -> None:
        """Our election no-op applied: leases granted under earlier leaders are visible now;
        track those not known yet (known ones keep their deadline)."""
        self.track(self._stored(), replace=False)

    def _stored(self) -> list[tuple[int, int]]:
        with self._storage.begin() as txn:
            return self._state_machine.lease_ttls(txn)

    def track(self, granted: Iterable[tuple[int, int]], *, replace: bool) -> None:
        """Keep a deadline for these leases (id, granted ttl), each a full TTL from now.

        With ``replace`` exactly these are tracked; without, leases already known keep
        their deadline and only new ones are added."""
        now = self._clock()
        if replace:
            self._leases = {lease_id: (ttl, now + ttl) for lease_id, ttl in granted}
            self._heap = [(deadline, i) for i, (_, deadline) in self._leases.items()]
            heapq.heapify(self._heap)
            return
        for lease_id, ttl in granted:
            if lease_id not in self._leases:
                self._set(lease_id, ttl, now + ttl)

    def forget(self, lease_id: int) -> None:
        """Stop tracking a lease that was revoked or expired (its heap entry goes stale)."""
        self._leases.pop(lease_id, None)

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

    async def run(self) -> None:
        """Every ``LEASE_CHECK_INTERVAL_SECONDS``, propose the expiry of leases that ran out."""
        while True:
            await anyio.sleep(limits.LEASE_CHECK_INTERVAL_SECONDS)
            due = self.expired()
            if not due:
                continue
            try:
                await self._propose(commands.lease_expire_command(due))
            except AspenError as exc:
                log.warning("expiring leases %s failed: %s", due, exc)
                continue
            for lease_id in due:
                self.forget(lease_id)
