"""A resource's state as the origin cluster signs it for a puller: the envelope of the
Pijul, blob and KV kinds (forge refs have their own, :mod:`signedrefs`).

Wire form (msgpack map): ``{"resource", "state", "timestamp", "key", "signature"}``.
``state`` is the msgpack encoding of the kind's map (a channel's length and log digest, a
blob listing, a KV snapshot's revision and digest), kept as the bytes that were signed so
that verifying never depends on how a map was re-encoded. The signature (the origin's
cluster key) covers a context string, the resource, those bytes and the timestamp.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import msgpack

from aspen.errors import InvalidArgumentError
from aspen_federation import limits
from aspen_federation.identity import ClusterKey, key_id, verify

__all__ = ["SignedState", "SignedStateError", "check_signed"]

_CONTEXT = b"aspen-federation/state/v1\x00"


class SignedStateError(InvalidArgumentError):
    """A signed state with a bad signature, the wrong resource or key, or stale."""


@dataclass(frozen=True)
class SignedState:
    """``state`` (packed) of ``resource`` at ``timestamp``, signed by cluster ``key``."""

    resource: str
    packed: bytes
    timestamp: int
    key: bytes
    signature: bytes = b""

    def _body(self) -> bytes:
        return _CONTEXT + msgpack.packb(
            [self.resource, self.packed, self.timestamp], use_bin_type=True
        )

    @property
    def state(self) -> dict[str, Any]:
        """The signed map."""
        return dict(msgpack.unpackb(self.packed, raw=False))

    @classmethod
    def create(cls, key: ClusterKey, resource: str, state: dict[str, Any]) -> SignedState:
        """Sign ``state`` of ``resource`` now."""
        packed = msgpack.packb(state, use_bin_type=True)
        if len(packed) > limits.MAX_SIGNED_STATE_BYTES:
            raise InvalidArgumentError(
                f"state over MAX_SIGNED_STATE_BYTES ({limits.MAX_SIGNED_STATE_BYTES})"
            )
        unsigned = cls(resource, packed, int(time.time()), key.public)
        return cls(resource, packed, unsigned.timestamp, key.public, key.sign(unsigned._body()))

    def to_wire(self) -> dict[str, Any]:
        """The map sent over RPC."""
        return {
            "resource": self.resource,
            "state": self.packed,
            "timestamp": self.timestamp,
            "key": self.key,
            "signature": self.signature,
        }

    @classmethod
    def verified(
        cls, wire: dict[str, Any], *, key: bytes, resource: str, now: float | None = None
    ) -> SignedState:
        """The state in ``wire``, if signed by ``key`` for ``resource`` and fresh."""
        try:
            signed = cls(
                str(wire["resource"]),
                bytes(wire["state"]),
                int(wire["timestamp"]),
                bytes(wire["key"]),
                bytes(wire["signature"]),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise SignedStateError(f"malformed signed state: {exc}") from None
        if len(signed.packed) > limits.MAX_SIGNED_STATE_BYTES:
            raise SignedStateError(
                f"state over MAX_SIGNED_STATE_BYTES ({limits.MAX_SIGNED_STATE_BYTES})"
            )
        check_signed(signed, key, resource, now, "state", SignedStateError)
        try:
            signed.state  # noqa: B018 - decodes, or refuses
        except (ValueError, TypeError, msgpack.ExtraData) as exc:
            raise SignedStateError(f"malformed signed state: {exc}") from None
        return signed


def check_signed(
    signed: Any,
    key: bytes,
    resource: str,
    now: float | None,
    what: str,
    error: type[InvalidArgumentError],
) -> None:
    """The checks every signed answer of an origin passes (``signed`` has ``key``,
    ``signature``, ``resource``, ``timestamp`` and ``_body()``): signed by ``key``, for
    ``resource``, not older than ``SIGNED_REFS_MAX_AGE_SECONDS``."""
    if signed.key != key or not verify(key, signed.signature, signed._body()):
        raise error(f"{what} of {resource}: bad signature (not cluster {key_id(key)})")
    if signed.resource != resource:
        raise error(f"the signed {what}: for {signed.resource}, not {resource}")
    moment = time.time() if now is None else now
    if signed.timestamp < moment - limits.SIGNED_REFS_MAX_AGE_SECONDS:
        raise error(f"the signed {what}: stale (SIGNED_REFS_MAX_AGE_SECONDS)")
