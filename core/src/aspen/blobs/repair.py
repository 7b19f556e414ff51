"""The repairer and the GC: one per cluster, on the Raft leader's node.

Like the hooks plugin's runner it runs only where ``node.is_leader`` holds, so at most one
node repairs at a time (a deposed leader's KV writes are refused, and a copy it started is
harmless: copies are idempotent). Every ``repair_interval_seconds`` one pass:

1. forgets holders that are no longer members (``aspen cluster remove``);
2. GC: deletes the record of every blob that no pin keeps and that nobody put, pinned or
   unpinned for ``gc_grace_seconds`` — only if the record is unchanged since it was read
   (a concurrent put or pin rewrites it, so that put wins); each node then removes its
   now-unreferenced replica (:meth:`BlobService.collect_local`);
3. repairs: a blob with fewer live holders than its replica count is copied from a live
   holder to a live member without it (a holder is dead once it has not answered for
   ``holder_grace_seconds``), ``BLOB_REPAIR_CONCURRENCY`` copies at a time; the copies in
   flight are published under ``/_aspen/blobs/repairing`` for ``aspen blob status``.
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING

import anyio

from aspen.blobs.hashing import BlobRef
from aspen.blobs.meta import BlobInfo
from aspen.errors import AspenError
from aspen.limits import BLOB_REPAIR_CONCURRENCY, BLOB_REPAIR_SCAN_BLOBS

if TYPE_CHECKING:
    from aspen.blobs.service import BlobService

__all__ = ["Repairer"]

log = logging.getLogger("aspen.blobs.repair")

#: Seconds a liveness probe of a member may take.
PROBE_TIMEOUT_SECONDS = 2.0


class Repairer:
    """Re-replication and GC of the cluster's blobs (see the module docstring)."""

    def __init__(self, service: BlobService) -> None:
        self.service = service
        self.node = service.node
        #: Member -> when it last answered (monotonic), while this node leads.
        self.last_seen: dict[str, float] = {}
        self.leading_since: float | None = None
        self.repairing: set[str] = set()
        self.passes = 0

    async def run(self) -> None:
        """Run a pass every interval while this node is the leader."""
        while True:
            await anyio.sleep(self.service.settings.repair_interval_seconds)
            if not self.node.is_leader:
                self.leading_since = None
                self.last_seen.clear()
                continue
            if self.leading_since is None:
                self.leading_since = time.monotonic()
            try:
                await self.run_pass()
            except AspenError as exc:  # lost leadership, timeouts: next pass
                log.debug("blobs: repair pass: %s", exc)
            except Exception:
                log.exception("blobs: repair pass failed")

    async def _probe(self, members: set[str]) -> set[str]:
        """Members that answered within the holder grace period (this node included)."""
        now = time.monotonic()

        async def probe(member: str) -> None:
            try:
                await self.service.peers.call(member, "ping", {}, PROBE_TIMEOUT_SECONDS)
            except (AspenError, OSError):
                return
            self.last_seen[member] = time.monotonic()

        async with anyio.create_task_group() as tg:
            for member in members - {self.node.id}:
                tg.start_soon(probe, member)
        grace = self.service.settings.holder_grace_seconds
        since = self.leading_since or now
        alive = {self.node.id}
        for member in members:
            if now - max(self.last_seen.get(member, since), since) < grace:
                alive.add(member)
        return alive

    async def run_pass(self) -> None:
        """One pass: forget departed holders, GC, repair."""
        meta = self.service.meta
        members = set(self.node.parts.cluster.members())
        alive = await self._probe(members)
        holders = await meta.holders(serializable=False)
        pinned = await meta.pinned(serializable=False)
        grace = self.service.settings.gc_grace_seconds
        now = time.time()
        work: list[tuple[BlobInfo, list[str], int]] = []
        examined = 0
        async for info in meta.blobs(serializable=False):
            examined += 1
            if examined > BLOB_REPAIR_SCAN_BLOBS:
                break
            held = holders.get(info.hash, [])
            for gone in [h for h in held if h not in members]:
                await meta.remove_holder(info.hash, gone)
            if info.hash not in pinned and info.touched < now - grace:
                if await meta.forget(info):
                    log.info("blobs: GC removed %s (unpinned for %.0f s)", info.hash, grace)
                continue
            live = [h for h in held if h in members and h in alive]
            want = min(info.replicas or 1, len(alive))
            if live and len(live) < want:
                work.append((info, live, want))
        self.passes += 1
        if work:
            await self._repair(work, alive)

    async def _repair(self, work: list[tuple[BlobInfo, list[str], int]], alive: set[str]) -> None:
        """Copy each under-replicated blob to live members that lack it."""
        meta = self.service.meta
        self.repairing = {info.hash for info, _, _ in work}
        await meta.set_repairing(self.node.id, sorted(self.repairing))
        limiter = anyio.CapacityLimiter(BLOB_REPAIR_CONCURRENCY)
        try:
            async with anyio.create_task_group() as tg:
                for info, live, want in work:
                    tg.start_soon(self._repair_one, limiter, info, live, want, alive)
        finally:
            self.repairing = set()
            with anyio.CancelScope(shield=True), anyio.move_on_after(5):
                try:
                    await meta.set_repairing(self.node.id, [])
                except AspenError as exc:
                    log.debug("blobs: clearing the repair list: %s", exc)

    async def _repair_one(
        self,
        limiter: anyio.CapacityLimiter,
        info: BlobInfo,
        live: list[str],
        want: int,
        alive: set[str],
    ) -> None:
        """Copy one blob until it has ``want`` live holders (or no candidate is left)."""
        async with limiter:
            ref = BlobRef(info.hash, info.size)
            targets = sorted(alive - set(live))
            have = len(live)
            for i, target in enumerate(targets):
                if have >= want:
                    break
                if await self.service.copy(ref, live[i % len(live)], target):
                    have += 1
                    log.info("blobs: repaired %s onto %s", info.hash, target)
