"""Lease deadlines, kept by the node (the leader, once there is Raft), never by apply.

The state machine stores each lease's granted TTL and its keys. When a lease runs out is
decided here, from the node's monotonic clock: keepalives push the deadline, and a
periodic check proposes one ``lease_expire`` command for the leases that ran out, so every
replica deletes the same keys at the same log index. After a restart (or a leader change)
every lease gets a fresh full TTL, as etcd does.

Deadlines also sit in a min-heap of ``(deadline, id)``, so a check costs what expires, not
what is granted: a keepalive pushes a new entry and leaves the old one behind (stale
entries are dropped when they reach the top, and the heap is rebuilt once they outnumber
the live ones), so granting and renewing cost O(log n).
"""

from __future__ import annotations

import heapq
import logging
import math
import time
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

import anyio

from aspen import limits
from aspen.errors import AspenError, NotFoundError
from aspen.kv.commands import lease_expire_command

__all__ = ["LeaseKeeper"]

log = logging.getLogger(__name__)


class LeaseKeeper:
    """In-memory lease deadlines and the loop that expires them."""

    def __init__(
        self,
        propose: Callable[[dict], Awaitable[Any]],
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._propose = propose
        self._clock = clock
        #: lease id -> (granted ttl, monotonic deadline)
        self._leases: dict[int, tuple[int, float]] = {}
        #: (deadline, lease id), possibly stale (the lease renewed or gone): see the module doc
        self._heap: list[tuple[float, int]] = []
        #: heap entries examined by :meth:`expired` so far (tests pin its cost with it)
        self.examined = 0

    def load(self, granted: Iterable[tuple[int, int]]) -> None:
        """Track exactly these leases (id, granted ttl), each with a full TTL from now."""
        now = self._clock()
        self._leases = {lease_id: (ttl, now + ttl) for lease_id, ttl in granted}
        self._heap = [(deadline, i) for i, (_, deadline) in self._leases.items()]
        heapq.heapify(self._heap)

    def merge(self, granted: Iterable[tuple[int, int]]) -> None:
        """Also track leases not known yet (full TTL from now); known ones keep their deadline."""
        now = self._clock()
        for lease_id, ttl in granted:
            if lease_id not in self._leases:
                self._set(lease_id, ttl, now + ttl)

    def clear(self) -> None:
        """Forget every deadline (this node stopped leading; the next leader reloads)."""
        self._leases.clear()
        self._heap.clear()

    def _set(self, lease_id: int, ttl: int, deadline: float) -> None:
        """Record a lease's deadline (in the map and the heap)."""
        self._leases[lease_id] = (ttl, deadline)
        heapq.heappush(self._heap, (deadline, lease_id))
        if len(self._heap) > 2 * len(self._leases) + 64:  # mostly stale: rebuild, O(n) per n pushes
            self._heap = [(d, i) for i, (_, d) in self._leases.items()]
            heapq.heapify(self._heap)

    def granted(self, lease_id: int, ttl: int) -> None:
        """Track a lease that was just granted."""
        self._set(lease_id, ttl, self._clock() + ttl)

    def revoked(self, lease_id: int) -> None:
        """Forget a lease that was revoked or expired."""
        self._leases.pop(lease_id, None)

    def keepalive(self, lease_id: int) -> int:
        """Renew a lease to its full TTL and return that TTL."""
        try:
            ttl, _ = self._leases[lease_id]
        except KeyError:
            raise NotFoundError(f"lease {lease_id} not found", lease=lease_id) from None
        self._set(lease_id, ttl, self._clock() + ttl)
        return ttl

    def remaining(self, lease_id: int) -> int:
        """Seconds left on a lease (rounded up), or -1 when it is not known."""
        entry = self._leases.get(lease_id)
        if entry is None:
            return -1
        return max(0, math.ceil(entry[1] - self._clock()))

    def __len__(self) -> int:
        return len(self._leases)

    def expired(self) -> list[int]:
        """Ids whose deadline has passed, oldest first, at most one command's worth.

        Costs O(k log n) for k expired leases (plus the stale heap entries it drops): the
        due ones stay tracked until :meth:`revoked` (their expiry may fail to commit)."""
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
                await self._propose(lease_expire_command(due))
            except AspenError as exc:
                log.warning("expiring leases %s failed: %s", due, exc)
                continue
            for lease_id in due:
                self.revoked(lease_id)
