"""Lease deadlines, kept by the node (the leader, once there is Raft), never by apply.

The state machine stores each lease's granted TTL and its keys. When a lease runs out is
decided here, from the node's monotonic clock: keepalives push the deadline, and a
periodic check proposes one ``lease_expire`` command for the leases that ran out, so every
replica deletes the same keys at the same log index. After a restart (or a leader change)
every lease gets a fresh full TTL, as etcd does.
"""

from __future__ import annotations

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

    def load(self, granted: Iterable[tuple[int, int]]) -> None:
        """Track exactly these leases (id, granted ttl), each with a full TTL from now."""
        now = self._clock()
        self._leases.clear()
        for lease_id, ttl in granted:
            self._leases[lease_id] = (ttl, now + ttl)

    def merge(self, granted: Iterable[tuple[int, int]]) -> None:
        """Also track leases not known yet (full TTL from now); known ones keep their deadline."""
        now = self._clock()
        for lease_id, ttl in granted:
            self._leases.setdefault(lease_id, (ttl, now + ttl))

    def clear(self) -> None:
        """Forget every deadline (this node stopped leading; the next leader reloads)."""
        self._leases.clear()

    def granted(self, lease_id: int, ttl: int) -> None:
        """Track a lease that was just granted."""
        self._leases[lease_id] = (ttl, self._clock() + ttl)

    def revoked(self, lease_id: int) -> None:
        """Forget a lease that was revoked or expired."""
        self._leases.pop(lease_id, None)

    def keepalive(self, lease_id: int) -> int:
        """Renew a lease to its full TTL and return that TTL."""
        try:
            ttl, _ = self._leases[lease_id]
        except KeyError:
            raise NotFoundError(f"lease {lease_id} not found", lease=lease_id) from None
        self._leases[lease_id] = (ttl, self._clock() + ttl)
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
        """Ids whose deadline has passed, oldest first, at most one command's worth."""
        now = self._clock()
        due = sorted((deadline, i) for i, (_, deadline) in self._leases.items() if deadline <= now)
        return [i for _, i in due[: limits.MAX_LEASES_EXPIRED_PER_COMMAND]]

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
