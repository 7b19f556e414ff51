"""Gossip admission: rate check before signature check, trust, freshness, duplicates."""

from __future__ import annotations

import anyio
import pytest

from aspen.errors import InvalidArgumentError, ResourceExhaustedError, UnauthorizedError
from aspen_federation import limits
from aspen_federation.gossip import GossipInbox, GossipMessage
from aspen_federation.identity import ClusterKey
from aspen_federation.ratelimit import GossipLimiter

NOW = 1_800_000_000.0


class _Clock:
    def __init__(self) -> None:
        self.now = 10.0

    def __call__(self) -> float:
        return self.now


def _inbox(trusted: set[bytes], burst: int = 3) -> tuple[GossipInbox, _Clock]:
    async def trust(key: bytes) -> str:
        return "trusted" if key in trusted else "public"

    clock = _Clock()
    limiter = GossipLimiter(clock, peer_rate=1, peer_burst=burst, global_rate=100, global_burst=100)
    return GossipInbox(trust, limiter, clock=lambda: NOW), clock


def test_a_trusted_signed_message_is_admitted_once() -> None:
    key = ClusterKey.generate()
    inbox, _ = _inbox({key.public})
    data = GossipMessage.create(key, "ref.updated", "acme/w", seq=1, now=NOW).encode()

    async def main() -> None:
        msg = await inbox.receive(data)
        assert msg is not None and msg.subject == "acme/w"
        assert await inbox.receive(data) is None  # re-delivered: dropped, idempotent

    anyio.run(main)
    assert inbox.refused["duplicate"] == 1


def test_rate_check_runs_before_the_signature_check() -> None:
    key = ClusterKey.generate()
    inbox, _ = _inbox({key.public}, burst=2)
    good = GossipMessage.create(key, "ref.updated", "a/b", seq=1, now=NOW).encode()
    forged = good[:-1] + bytes([good[-1] ^ 1])

    async def main() -> None:
        for _ in range(2):
            with pytest.raises(UnauthorizedError, match="signature"):
                await inbox.receive(forged)
        # the budget is spent: refused by rate, the signature never looked at
        with pytest.raises(ResourceExhaustedError):
            await inbox.receive(good)

    anyio.run(main)
    assert inbox.refused == {"rate": 1, "signature": 2, "trust": 0, "stale": 0, "duplicate": 0}


def test_untrusted_stale_and_malformed_gossip_is_refused() -> None:
    key, stranger = ClusterKey.generate(), ClusterKey.generate()
    inbox, _ = _inbox({key.public}, burst=10)

    async def main() -> None:
        with pytest.raises(UnauthorizedError, match="not trusted"):
            await inbox.receive(
                GossipMessage.create(stranger, "repo.created", "x/y", 1, now=NOW).encode()
            )
        old = NOW - limits.GOSSIP_MAX_AGE_SECONDS - 1
        with pytest.raises(InvalidArgumentError, match="stale"):
            await inbox.receive(
                GossipMessage.create(key, "repo.created", "x/y", 2, now=old).encode()
            )
        with pytest.raises(InvalidArgumentError, match="MAX_GOSSIP_BYTES"):
            await inbox.receive(b"\x00" * (limits.MAX_GOSSIP_BYTES + 1))
        with pytest.raises(InvalidArgumentError, match="kind"):
            GossipMessage.create(key, "everything.deleted", "x", 3, now=NOW)

    anyio.run(main)
