"""Gossip sent: the leader tells trusted peers what changed, best-effort.

:class:`GossipOutbox` follows the event journal on the leader (from the moment it leads;
events applied while no leader follows are not gossiped) and turns local events into
gossip about shared resources:

* ``forge.push`` of a shared repository -> ``ref.updated`` (subject ``OWNER/NAME``);
* ``pijul.channel_update`` of a shared Pijul repository -> ``channel.updated`` (subject
  ``REPO:CHANNEL``);
* a blob newly pinned under a shared blob prefix (the core's ``blob.pinned`` bus event,
  on the leader) -> ``blob.available`` (subject: the pin name);
* a resource newly shared -> ``repo.created`` (the moment peers may first read it);
* a grant revoked (unshare, narrowed allow-list, block) -> ``token.revoked`` to the
  cluster that held it, if this one trusts it (subject: the token id).

Recipients are the clusters this one **trusts** that may read the resource
(:func:`aspen_federation.trust.may_read`); their inbox is the URL endpoint of their
verified DHT announcement (cached ``GOSSIP_ENDPOINT_CACHE_SECONDS``). Queued messages are
bounded (``GOSSIP_OUTBOX_MESSAGES``, ``GOSSIP_OUTBOX_BYTES``: the oldest is dropped), a
repeat of a queued ``(kind, subject)`` is folded into it, and every
``GOSSIP_SEND_INTERVAL_SECONDS`` what queued goes out in one batch per peer (at most
``GOSSIP_BATCH_MESSAGES``), to ``GOSSIP_SEND_CONCURRENCY`` peers at once, within the
per-peer budget the receiver admits. A peer that cannot be found or reached loses the
batch (counted in ``stats``).
"""

from __future__ import annotations

import logging
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import anyio
import msgpack

from aspen.errors import AspenError
from aspen_federation import limits
from aspen_federation.follow import follow_on_leader
from aspen_federation.gossip import GossipMessage
from aspen_federation.inbox import GOSSIP_PATH, post, remote_inbox, resource_of
from aspen_federation.ratelimit import GossipLimiter
from aspen_federation.trust import may_read

if TYPE_CHECKING:
    from aspen_federation.service import FederationService

__all__ = ["GossipOutbox", "Pending"]

log = logging.getLogger("aspen_federation")

#: Journal events the outbox follows, and the gossip kind each becomes.
WATCHED = {"forge.push": "ref.updated", "pijul.channel_update": "channel.updated"}


@dataclass(frozen=True)
class Pending:
    """One message to send: ``kind`` and ``subject``, to ``only`` (a cluster key) or to
    every trusted peer that may read the resource."""

    kind: str
    subject: str
    only: bytes = b""

    def size(self) -> int:
        """What it holds in bytes (the outbox's byte bound)."""
        return len(self.kind) + len(self.subject.encode()) + len(self.only)


class GossipOutbox:
    """The leader's gossip sender (see the module docstring)."""

    def __init__(self, service: FederationService) -> None:
        self.service = service
        self._queue: OrderedDict[Pending, None] = OrderedDict()
        self._bytes = 0
        self._wake = anyio.Event()
        self._seq = 0
        self._urls: dict[bytes, tuple[str, float]] = {}
        self.limiter = GossipLimiter()
        #: Counters for status and tests.
        self.stats = {"queued": 0, "folded": 0, "dropped": 0, "sent": 0, "failed": 0}

    # -- queueing ------------------------------------------------------------------------

    def enqueue(self, kind: str, subject: str, only: bytes = b"") -> None:
        """Queue a message (folded into a queued equal one; the oldest dropped when full)."""
        item = Pending(kind, subject, only)
        if item in self._queue:
            self.stats["folded"] += 1
            return
        if len(subject.encode()) > limits.MAX_GOSSIP_SUBJECT_BYTES:
            self.stats["dropped"] += 1
            return
        self._queue[item] = None
        self._bytes += item.size()
        self.stats["queued"] += 1
        while (
            len(self._queue) > limits.GOSSIP_OUTBOX_MESSAGES
            or self._bytes > limits.GOSSIP_OUTBOX_BYTES
        ):
            old, _ = self._queue.popitem(last=False)
            self._bytes -= old.size()
            self.stats["dropped"] += 1
        self._wake.set()

    def on_blob_pinned(self, pin: str) -> None:
        """Queue ``blob.available`` for a blob newly pinned as ``pin`` (whether a shared
        prefix covers it is checked on send)."""
        self.enqueue("blob.available", pin)

    def on_event(self, event: dict[str, Any]) -> None:
        """Queue the gossip a journal event calls for (shared or not is checked on send)."""
        kind = WATCHED.get(str(event.get("name")))
        if kind is not None:
            self.enqueue(kind, str(event.get("subject") or ""))

    # -- the tasks -----------------------------------------------------------------------

    async def run(self) -> None:
        """Follow the journal and send, while this node leads (a node task)."""
        async with anyio.create_task_group() as tg:
            tg.start_soon(self._follow)
            tg.start_soon(self._send_loop)

    async def _follow(self) -> None:
        """Queue gossip for ``WATCHED`` events applied while this node leads."""
        await follow_on_leader(self.service.node, WATCHED, self.on_event)

    async def _send_loop(self) -> None:
        while True:
            await self._wake.wait()
            self._wake = anyio.Event()
            await anyio.sleep(limits.GOSSIP_SEND_INTERVAL_SECONDS)  # let a burst batch up
            if self.service.node.is_leader:
                try:
                    await self.flush()
                except AspenError as exc:
                    log.info("federation: gossip not sent: %s", exc)
                except Exception:  # best-effort: a bug here must not stop the node
                    log.exception("federation: gossip not sent")

    # -- sending -------------------------------------------------------------------------

    async def flush(self) -> int:
        """Send what is queued now: one batch per recipient; how many messages went out."""
        batch = list(self._queue)[: limits.GOSSIP_BATCH_MESSAGES]
        for item in batch:
            del self._queue[item]
            self._bytes -= item.size()
        if self._queue:
            self._wake.set()
        if not batch:
            return 0
        key, _ = await self.service.identity()
        trusted = [
            bytes.fromhex(p["cluster_key"])
            for p in await self.service.peers()
            if p["level"] == "trusted"
        ]
        per_peer: dict[bytes, list[bytes]] = {}
        for item in batch:
            recipients = await self._recipients(item, trusted)
            if not recipients:
                continue
            self._seq = max(self._seq + 1, time.time_ns())
            message = GossipMessage.create(key, item.kind, item.subject, self._seq).encode()
            for peer in recipients:
                per_peer.setdefault(peer, []).append(message)
        before = self.stats["sent"]
        limiter = anyio.CapacityLimiter(limits.GOSSIP_SEND_CONCURRENCY)
        async with anyio.create_task_group() as tg:
            for peer, messages in per_peer.items():
                tg.start_soon(self._deliver, peer, messages, limiter)
        return self.stats["sent"] - before

    async def _recipients(self, item: Pending, trusted: list[bytes]) -> list[bytes]:
        """The trusted clusters that may read what ``item`` is about."""
        if item.only:
            return [item.only] if item.only in trusted else []
        if item.kind == "blob.available":  # subject: the pin, under any shared prefix
            shares = await self.service.blob_shares_of(item.subject)
        else:
            shares = [await self.service.share(resource_of(item.kind, item.subject))]
        return [p for p in trusted if any(may_read("trusted", m, a, p) for m, a in shares)]

    async def _deliver(
        self, peer: bytes, messages: list[bytes], limiter: anyio.CapacityLimiter
    ) -> None:
        """Post ``messages`` to ``peer``'s inbox within its budget (counted in ``stats``)."""
        allowed = [m for m in messages if self.limiter.admit(peer)]
        self.stats["dropped"] += len(messages) - len(allowed)
        if not allowed:
            return
        async with limiter:
            try:
                url = await self._inbox(peer)
                body = msgpack.packb(allowed, use_bin_type=True)
                await anyio.to_thread.run_sync(post, url, GOSSIP_PATH, body)
            except AspenError as exc:
                self._urls.pop(peer, None)
                self.stats["failed"] += len(allowed)
                log.info("federation: gossip to %s failed: %s", peer.hex()[:16], exc)
                return
        self.stats["sent"] += len(allowed)

    async def _inbox(self, peer: bytes) -> str:
        """``peer``'s inbox URL from its verified announcement (cached)."""
        cached = self._urls.get(peer)
        now = time.monotonic()
        if cached and cached[1] > now:
            return cached[0]
        url = await remote_inbox(self.service, peer)
        if len(self._urls) >= limits.MAX_PEERS:
            self._urls.clear()
        self._urls[peer] = (url, now + limits.GOSSIP_ENDPOINT_CACHE_SECONDS)
        return url
