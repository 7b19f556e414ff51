"""Signed gossip between trusted clusters: small announcements of what changed (a
repository created, a ref updated, a channel updated, a blob available, a token revoked).

Wire form (msgpack)::

    [version, sender key, kind, subject, timestamp, seq, signature]

:class:`GossipInbox` admits a message in this order, cheapest first: size, shape, **the
rate check** (per peer, then global: :class:`aspen_federation.ratelimit.GossipLimiter`),
then **the signature**, then the sender's trust (``trusted`` only), freshness, and
duplicates (a re-delivered ``(sender, seq)`` is dropped, idempotently). A flood therefore
costs a dict lookup per message, not an Ed25519 verify.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from typing import Any

import msgpack

from aspen.errors import InvalidArgumentError, ResourceExhaustedError, UnauthorizedError
from aspen_federation import limits
from aspen_federation.identity import PUBLIC_KEY_BYTES, ClusterKey, key_id, verify
from aspen_federation.ratelimit import GossipLimiter

__all__ = ["KINDS", "GossipInbox", "GossipMessage"]

#: What gossip may say.
KINDS = ("repo.created", "ref.updated", "channel.updated", "blob.available", "token.revoked")
_VERSION = 1
_CONTEXT = b"aspen-federation/gossip/v1\x00"


@dataclass(frozen=True)
class GossipMessage:
    """One signed gossip message."""

    sender: bytes
    kind: str
    subject: str
    timestamp: int
    seq: int
    signature: bytes = b""

    def _fields(self) -> list[Any]:
        return [_VERSION, self.sender, self.kind, self.subject, self.timestamp, self.seq]

    def _signed_bytes(self) -> bytes:
        return _CONTEXT + msgpack.packb(self._fields(), use_bin_type=True)

    @classmethod
    def create(
        cls, key: ClusterKey, kind: str, subject: str, seq: int, now: float | None = None
    ) -> GossipMessage:
        """A message from ``key``, signed."""
        unsigned = cls(key.public, kind, subject, int(time.time() if now is None else now), seq)
        _check(unsigned)
        return replace(unsigned, signature=key.sign(unsigned._signed_bytes()))

    def encode(self) -> bytes:
        """The wire form."""
        return msgpack.packb([*self._fields(), self.signature], use_bin_type=True)

    @classmethod
    def parse(cls, data: bytes) -> GossipMessage:
        """Shape and bounds only: the signature is NOT checked (see :class:`GossipInbox`)."""
        if len(data) > limits.MAX_GOSSIP_BYTES:
            raise InvalidArgumentError(f"gossip over MAX_GOSSIP_BYTES ({limits.MAX_GOSSIP_BYTES})")
        try:
            version, sender, kind, subject, timestamp, seq, signature = msgpack.unpackb(
                data, raw=False
            )
            msg = cls(
                bytes(sender), str(kind), str(subject), int(timestamp), int(seq), bytes(signature)
            )
        except (ValueError, TypeError, msgpack.UnpackException) as exc:
            raise InvalidArgumentError(f"malformed gossip: {exc}") from None
        if version != _VERSION:
            raise InvalidArgumentError(f"gossip version {version!r} is not {_VERSION}")
        _check(msg)
        return msg

    def verified(self) -> bool:
        """Whether the sender signed it."""
        return verify(self.sender, self.signature, self._signed_bytes())


def _check(msg: GossipMessage) -> None:
    if len(msg.sender) != PUBLIC_KEY_BYTES:
        raise InvalidArgumentError(f"gossip sender must be a {PUBLIC_KEY_BYTES}-byte key")
    if msg.kind not in KINDS:
        raise InvalidArgumentError(f"gossip kind must be one of {', '.join(KINDS)}")
    if len(msg.subject.encode()) > limits.MAX_GOSSIP_SUBJECT_BYTES:
        raise InvalidArgumentError(
            f"gossip subject over MAX_GOSSIP_SUBJECT_BYTES ({limits.MAX_GOSSIP_SUBJECT_BYTES})"
        )
    if msg.seq < 0:
        raise InvalidArgumentError("gossip seq must be >= 0")


class GossipInbox:
    """Admits gossip (see the module docstring); ``trust(key)`` answers a sender's level;
    ``clock`` is wall time for freshness (the limiter has its own, monotonic one)."""

    def __init__(
        self,
        trust: Callable[[bytes], Awaitable[str]],
        limiter: GossipLimiter | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._trust = trust
        self.limiter = limiter or GossipLimiter()
        self._clock = clock
        self._seen: OrderedDict[tuple[bytes, int], None] = OrderedDict()
        #: Messages refused by each check (for status and tests).
        self.refused = {"rate": 0, "signature": 0, "trust": 0, "stale": 0, "duplicate": 0}

    async def receive(self, data: bytes, peer: bytes | None = None) -> GossipMessage | None:
        """The admitted message, or ``None`` for a duplicate; raises for a refused one.
        ``peer`` is who delivered it as the transport knows it (its token id), which the
        per-peer budget is keyed by; default the claimed sender."""
        msg = GossipMessage.parse(data)
        if not self.limiter.admit(peer or msg.sender):
            self.refused["rate"] += 1
            raise ResourceExhaustedError("gossip over the peer's or the global budget")
        if not msg.verified():
            self.refused["signature"] += 1
            raise UnauthorizedError("gossip: bad signature")
        if await self._trust(msg.sender) != "trusted":
            self.refused["trust"] += 1
            raise UnauthorizedError(
                f"gossip from cluster {key_id(msg.sender)}, which is not trusted"
            )
        if abs(self._clock() - msg.timestamp) > limits.GOSSIP_MAX_AGE_SECONDS:
            self.refused["stale"] += 1
            raise InvalidArgumentError("gossip is stale (GOSSIP_MAX_AGE_SECONDS)")
        seen = (msg.sender, msg.seq)
        if seen in self._seen:
            self.refused["duplicate"] += 1
            return None
        self._seen[seen] = None
        while len(self._seen) > limits.GOSSIP_SEEN:
            self._seen.popitem(last=False)
        return msg
