"""The announcement a cluster publishes into the DHT: compact, signed, dated.

Wire form (msgpack, at most :data:`limits.MAX_ANNOUNCEMENT_BYTES`)::

    [version, key (32 bytes), name, endpoints [..], shares [..], timestamp, signature (64)]

The signature covers a context string and every field before it, so the freshness
timestamp is inside the signed value: a replayed old announcement is refused as stale
even though its signature is good. libtorrent also signs the BEP-44 item with the same
key (seq + salt + value); this signature makes the value verifiable on its own (from a
cache, a file, a proxy) and binds it to its purpose.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field, replace
from typing import Any

import msgpack

from aspen.errors import InvalidArgumentError
from aspen_federation import limits
from aspen_federation.identity import PUBLIC_KEY_BYTES, ClusterKey, key_id, verify

__all__ = ["VERSION", "Announcement", "AnnouncementError"]

#: The announcement format version.
VERSION = 1
_CONTEXT = b"aspen-federation/announcement/v1\x00"


class AnnouncementError(InvalidArgumentError):
    """An announcement that is malformed, badly signed, stale or too large."""


@dataclass(frozen=True)
class Announcement:
    """A cluster's announcement: who (key, name), where (endpoints), what it shares, when."""

    key: bytes
    name: str
    endpoints: tuple[str, ...] = ()
    shares: tuple[str, ...] = ()
    timestamp: int = 0
    signature: bytes = field(default=b"", repr=False)

    def _fields(self) -> list[Any]:
        return [
            VERSION,
            self.key,
            self.name,
            list(self.endpoints),
            list(self.shares),
            self.timestamp,
        ]

    def _signed_bytes(self) -> bytes:
        return _CONTEXT + msgpack.packb(self._fields(), use_bin_type=True)

    @classmethod
    def create(
        cls,
        key: ClusterKey,
        name: str,
        endpoints: list[str] | tuple[str, ...],
        shares: list[str] | tuple[str, ...] = (),
        now: float | None = None,
    ) -> Announcement:
        """An announcement signed by ``key``, dated ``now``; shares beyond what fits are
        left out (the announcement names the first ones; the cluster lists the rest)."""
        unsigned = cls(
            key.public,
            name,
            tuple(endpoints),
            tuple(shares[: limits.MAX_ANNOUNCED_SHARES]),
            int(time.time() if now is None else now),
        )
        _check_fields(unsigned)
        while True:
            signed = replace(unsigned, signature=key.sign(unsigned._signed_bytes()))
            if len(signed.encode()) <= limits.MAX_ANNOUNCEMENT_BYTES or not unsigned.shares:
                break
            unsigned = replace(unsigned, shares=unsigned.shares[:-1])
        signed.encode(check=True)
        return signed

    def encode(self, *, check: bool = False) -> bytes:
        """The wire form; with ``check``, refuse one over MAX_ANNOUNCEMENT_BYTES."""
        data = msgpack.packb([*self._fields(), self.signature], use_bin_type=True)
        if check and len(data) > limits.MAX_ANNOUNCEMENT_BYTES:
            raise AnnouncementError(
                f"announcement is {len(data)} bytes, over MAX_ANNOUNCEMENT_BYTES "
                f"({limits.MAX_ANNOUNCEMENT_BYTES}): fewer or shorter endpoints"
            )
        return data

    @classmethod
    def decode(
        cls, data: bytes, *, expected_key: bytes | None = None, now: float | None = None
    ) -> Announcement:
        """A verified announcement: size, shape, signature, the key it was looked up by,
        and freshness (``AnnouncementError`` naming what failed)."""
        if len(data) > limits.MAX_ANNOUNCEMENT_BYTES:
            raise AnnouncementError(
                f"announcement is {len(data)} bytes, over MAX_ANNOUNCEMENT_BYTES "
                f"({limits.MAX_ANNOUNCEMENT_BYTES})"
            )
        try:
            version, key, name, endpoints, shares, timestamp, signature = msgpack.unpackb(
                data, raw=False
            )
            ann = cls(
                bytes(key),
                str(name),
                tuple(str(e) for e in endpoints),
                tuple(str(s) for s in shares),
                int(timestamp),
                bytes(signature),
            )
        except (ValueError, TypeError, msgpack.UnpackException) as exc:
            raise AnnouncementError(f"malformed announcement: {exc}") from None
        if version != VERSION:
            raise AnnouncementError(f"announcement version {version!r} is not {VERSION}")
        _check_fields(ann)
        if not verify(ann.key, ann.signature, ann._signed_bytes()):
            raise AnnouncementError("announcement: bad signature")
        if expected_key is not None and ann.key != expected_key:
            raise AnnouncementError(
                f"announcement is for cluster {key_id(ann.key)}, not {key_id(expected_key)}"
            )
        moment = time.time() if now is None else now
        if ann.timestamp < moment - limits.ANNOUNCEMENT_MAX_AGE_SECONDS:
            raise AnnouncementError(
                f"announcement is stale: dated {int(moment - ann.timestamp)} s ago, over "
                f"ANNOUNCEMENT_MAX_AGE_SECONDS ({limits.ANNOUNCEMENT_MAX_AGE_SECONDS})"
            )
        if ann.timestamp > moment + limits.ANNOUNCEMENT_MAX_FUTURE_SECONDS:
            raise AnnouncementError(
                "announcement is dated in the future, beyond ANNOUNCEMENT_MAX_FUTURE_SECONDS "
                f"({limits.ANNOUNCEMENT_MAX_FUTURE_SECONDS})"
            )
        return ann

    def to_json(self) -> dict[str, Any]:
        """A JSON-friendly view (what ``aspen federation discover --json`` prints)."""
        return {
            "cluster_key": self.key.hex(),
            "key_id": key_id(self.key),
            "name": self.name,
            "endpoints": list(self.endpoints),
            "shares": list(self.shares),
            "timestamp": self.timestamp,
            "verified": True,
        }


def _check_fields(ann: Announcement) -> None:
    """Bounds on each field (``AnnouncementError`` naming the bound)."""
    if len(ann.key) != PUBLIC_KEY_BYTES:
        raise AnnouncementError(f"announcement key must be {PUBLIC_KEY_BYTES} bytes")
    if len(ann.name.encode()) > limits.MAX_NAME_BYTES:
        raise AnnouncementError(f"announcement name over MAX_NAME_BYTES ({limits.MAX_NAME_BYTES})")
    if len(ann.endpoints) > limits.MAX_ENDPOINTS:
        raise AnnouncementError(f"more than MAX_ENDPOINTS ({limits.MAX_ENDPOINTS}) endpoints")
    if any(len(e.encode()) > limits.MAX_ENDPOINT_BYTES for e in ann.endpoints):
        raise AnnouncementError(
            f"an endpoint is over MAX_ENDPOINT_BYTES ({limits.MAX_ENDPOINT_BYTES})"
        )
    if len(ann.shares) > limits.MAX_ANNOUNCED_SHARES:
        raise AnnouncementError(
            f"more than MAX_ANNOUNCED_SHARES ({limits.MAX_ANNOUNCED_SHARES}) shares"
        )
    if any(len(s.encode()) > limits.MAX_RESOURCE_BYTES for s in ann.shares):
        raise AnnouncementError(f"a share is over MAX_RESOURCE_BYTES ({limits.MAX_RESOURCE_BYTES})")
