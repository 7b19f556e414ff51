"""Token buckets for gossip: per peer and global, with an injected clock.

The rate check runs before the signature check (a flood costs a dict lookup, not an
Ed25519 verify). A message is admitted when both its peer's bucket and the global one have
a token; a peer over its own budget is refused **without** taking from the global one, so
one noisy peer cannot starve the others. The clock is injected; a backward step never
mints tokens (elapsed time is clamped at zero and the bucket keeps its newest stamp).
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

from aspen_federation import limits

__all__ = ["Bucket", "GossipLimiter"]


@dataclass
class Bucket:
    """``tokens`` out of ``burst``, refilled at ``rate`` per second since ``stamp``."""

    rate: float
    burst: float
    tokens: float
    stamp: float

    def refill(self, now: float) -> None:
        """Add what elapsed since the last stamp (nothing on a backward step)."""
        if now > self.stamp:
            self.tokens = min(self.burst, self.tokens + (now - self.stamp) * self.rate)
            self.stamp = now

    def has(self) -> bool:
        """Whether a token is there."""
        return self.tokens >= 1.0


class GossipLimiter:
    """Per-peer and global gossip budgets (see the module docstring)."""

    def __init__(
        self,
        clock: Callable[[], float] = time.monotonic,
        *,
        peer_rate: float = limits.GOSSIP_PEER_RATE,
        peer_burst: float = limits.GOSSIP_PEER_BURST,
        global_rate: float = limits.GOSSIP_GLOBAL_RATE,
        global_burst: float = limits.GOSSIP_GLOBAL_BURST,
        max_peers: int = limits.GOSSIP_MAX_BUCKETS,
    ) -> None:
        self._clock = clock
        self._peer = (peer_rate, peer_burst)
        self._max_peers = max_peers
        now = clock()
        self._global = Bucket(global_rate, global_burst, global_burst, now)
        self._peers: OrderedDict[bytes, Bucket] = OrderedDict()

    def admit(self, peer: bytes) -> bool:
        """Take one token from ``peer``'s bucket and the global one, or neither."""
        now = self._clock()
        bucket = self._peers.get(peer)
        if bucket is None:
            rate, burst = self._peer
            bucket = self._peers[peer] = Bucket(rate, burst, burst, now)
            while len(self._peers) > self._max_peers:
                self._peers.popitem(last=False)
        self._peers.move_to_end(peer)
        bucket.refill(now)
        if not bucket.has():
            return False
        self._global.refill(now)
        if not self._global.has():
            return False
        bucket.tokens -= 1.0
        self._global.tokens -= 1.0
        return True
