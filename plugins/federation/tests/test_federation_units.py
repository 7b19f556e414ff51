"""Unit tests: identity and announcement encoding, trust rules, the gossip rate limiter,
the in-memory discovery backend."""

from __future__ import annotations

import anyio
import pytest

from aspen.errors import InvalidArgumentError
from aspen_federation import limits
from aspen_federation.announce import Announcement, AnnouncementError
from aspen_federation.discovery import MemoryDiscovery, MemoryNetwork
from aspen_federation.identity import (
    ClusterKey,
    IdentityDocument,
    key_id,
    parse_public_key,
    seal,
    sealing_key,
    unseal,
)
from aspen_federation.ratelimit import GossipLimiter
from aspen_federation.trust import may_read, read_capability

NOW = 1_800_000_000


def _flip(data: bytes, index: int) -> bytes:
    return data[:index] + bytes([data[index] ^ 0x01]) + data[index + 1 :]


def test_key_id_is_short_and_stable() -> None:
    key = ClusterKey(bytes(range(32)))
    assert key.id == key_id(key.public) and len(key.id) == 16
    assert parse_public_key(key.public.hex()) == key.public
    with pytest.raises(InvalidArgumentError, match="64 hex"):
        parse_public_key("abc")


def test_identity_document_signed_and_sealed_at_rest() -> None:
    key = ClusterKey.generate()
    doc = IdentityDocument.create(key, "acme", "Acme's forge", created=NOW)
    assert IdentityDocument.decode(doc.encode()) == doc
    data = doc.encode()
    with pytest.raises(InvalidArgumentError, match="bad signature"):
        IdentityDocument.decode(_flip(data, len(data) - 1))
    for index in range(len(data)):
        with pytest.raises(InvalidArgumentError):
            IdentityDocument.decode(_flip(data, index))
    sealing = sealing_key(b"the root token")
    stored = seal(key, doc, sealing)
    assert key.seed not in stored
    assert unseal(stored, sealing) == (key, doc)
    with pytest.raises(InvalidArgumentError, match="cannot be opened"):
        unseal(stored, sealing_key(b"another token"))


def test_announcement_round_trip_fits_bep44_and_is_verified() -> None:
    key = ClusterKey.generate()
    ann = Announcement.create(key, "acme", ["10.0.0.1:2379"], ["forge:acme/widgets"], now=NOW)
    data = ann.encode()
    assert len(data) <= limits.MAX_ANNOUNCEMENT_BYTES
    assert Announcement.decode(data, expected_key=key.public, now=NOW) == ann
    # every single-bit flip is refused (or at least never yields a different valid value)
    for index in range(len(data)):
        with pytest.raises(AnnouncementError):
            Announcement.decode(_flip(data, index), expected_key=key.public, now=NOW)
    other = ClusterKey.generate()
    with pytest.raises(AnnouncementError, match="not"):
        Announcement.decode(data, expected_key=other.public, now=NOW)


def test_the_largest_announcement_still_fits_996_bytes() -> None:
    key = ClusterKey.generate()
    endpoints = [f"{i}" * limits.MAX_ENDPOINT_BYTES for i in range(limits.MAX_ENDPOINTS)]
    shares = ["forge:" + "x" * (limits.MAX_RESOURCE_BYTES - 6)] * limits.MAX_ANNOUNCED_SHARES
    with pytest.raises(AnnouncementError, match="MAX_ANNOUNCEMENT_BYTES"):
        Announcement.create(key, "n" * limits.MAX_NAME_BYTES, endpoints, shares, now=NOW)
    # shares are dropped first to fit
    ann = Announcement.create(key, "n" * limits.MAX_NAME_BYTES, endpoints[:4], shares, now=NOW)
    assert len(ann.encode()) <= limits.MAX_ANNOUNCEMENT_BYTES
    assert 0 < len(ann.shares) < limits.MAX_ANNOUNCED_SHARES
    with pytest.raises(AnnouncementError, match="over MAX_ANNOUNCEMENT_BYTES"):
        Announcement.decode(b"\x00" * (limits.MAX_ANNOUNCEMENT_BYTES + 1))


def test_freshness_is_inside_the_signature() -> None:
    key = ClusterKey.generate()
    data = Announcement.create(key, "acme", ["h:1"], now=NOW).encode()
    late = NOW + limits.ANNOUNCEMENT_MAX_AGE_SECONDS + 1
    with pytest.raises(AnnouncementError, match="stale"):
        Announcement.decode(data, now=late)
    early = NOW - limits.ANNOUNCEMENT_MAX_FUTURE_SECONDS - 1
    with pytest.raises(AnnouncementError, match="future"):
        Announcement.decode(data, now=early)


@pytest.mark.parametrize(
    ("level", "mode", "listed", "allowed"),
    [
        ("public", "disabled", False, False),
        ("trusted", "disabled", True, False),
        ("public", "public", False, True),
        ("trusted", "public", False, True),
        ("blocked", "public", False, False),  # blocked wins over a public resource
        ("blocked", "allow-list", True, False),  # and over the allow-list
        ("trusted", "allow-list", True, True),
        ("trusted", "allow-list", False, False),
        ("public", "allow-list", True, False),  # listed but not trusted
    ],
)
def test_trust_rules(level: str, mode: str, listed: bool, allowed: bool) -> None:
    remote = b"r" * 32
    assert may_read(level, mode, {remote} if listed else set(), remote) is allowed


def test_a_grant_reads_one_resource_only() -> None:
    assert read_capability("forge:acme/widgets") == ["forge:read:acme/widgets"]


class _Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_limiter_peer_budget_spares_the_global_one() -> None:
    clock = _Clock()
    limiter = GossipLimiter(clock, peer_rate=1, peer_burst=3, global_rate=1, global_burst=5)
    noisy, quiet = b"n" * 32, b"q" * 32
    assert [limiter.admit(noisy) for _ in range(10)] == [True] * 3 + [False] * 7
    # the noisy peer's refused messages did not use the global budget
    assert [limiter.admit(quiet) for _ in range(3)] == [True, True, False]
    # a backward clock step mints nothing; time moving on again refills
    clock.now -= 50
    assert not limiter.admit(noisy)
    clock.now += 1
    assert not limiter.admit(noisy)  # still behind the newest stamp
    clock.now = 102.0
    assert limiter.admit(noisy)


def test_limiter_global_budget_caps_all_peers() -> None:
    limiter = GossipLimiter(_Clock(), peer_rate=1, peer_burst=2, global_rate=1, global_burst=4)
    admitted = [limiter.admit(bytes([i]) * 32) for i in range(4) for _ in range(2)]
    assert admitted.count(True) == 4


def test_memory_discovery_publishes_and_finds() -> None:
    async def main() -> None:
        network = MemoryNetwork()
        a, b = MemoryDiscovery(network), MemoryDiscovery(network)
        key = ClusterKey.generate()
        assert await b.lookup(key.public) is None
        await a.publish(key, b"one")
        await a.publish(key, b"two")
        assert await b.lookup(key.public) == b"two"
        assert network.items[key.public][0] == 2
        assert a.node_count() == 1

    anyio.run(main)
