"""A repository's refs as the origin cluster signs them for a puller.

Wire form (msgpack map): ``{"resource", "refs": [[name, sha], …], "timestamp", "key",
"signature", "git_url"}``. The signature (the origin's cluster key) covers a context
string, the resource, the sorted refs and the timestamp; ``git_url`` is a hint where the
objects can be fetched, not trusted: the objects fetched from it must be exactly what the
signed refs name (their ids are their hashes).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import msgpack

from aspen.errors import InvalidArgumentError
from aspen_federation import limits
from aspen_federation.identity import ClusterKey

__all__ = ["SignedRefs", "SignedRefsError"]

_CONTEXT = b"aspen-federation/refs/v1\x00"


class SignedRefsError(InvalidArgumentError):
    """A ref list with a bad signature, the wrong resource or key, or stale."""


@dataclass(frozen=True)
class SignedRefs:
    """``refs`` of ``resource`` at ``timestamp``, signed by cluster ``key``."""

    resource: str
    refs: tuple[tuple[str, str], ...]
    timestamp: int
    key: bytes
    signature: bytes = b""
    git_url: str = ""

    def _body(self) -> bytes:
        return _CONTEXT + msgpack.packb(
            [self.resource, [list(r) for r in self.refs], self.timestamp], use_bin_type=True
        )

    @classmethod
    def create(
        cls, key: ClusterKey, resource: str, refs: dict[str, str], git_url: str
    ) -> SignedRefs:
        """Sign ``refs`` (name -> hex sha) of ``resource`` now."""
        if len(refs) > limits.MAX_SYNC_REFS:
            raise InvalidArgumentError(f"over MAX_SYNC_REFS ({limits.MAX_SYNC_REFS}) refs")
        unsigned = cls(resource, tuple(sorted(refs.items())), int(time.time()), key.public)
        return cls(
            resource,
            unsigned.refs,
            unsigned.timestamp,
            key.public,
            key.sign(unsigned._body()),
            git_url,
        )

    def to_wire(self) -> dict[str, Any]:
        """The map sent over RPC."""
        return {
            "resource": self.resource,
            "refs": [list(r) for r in self.refs],
            "timestamp": self.timestamp,
            "key": self.key,
            "signature": self.signature,
            "git_url": self.git_url,
        }

    @classmethod
    def verified(
        cls, wire: dict[str, Any], *, key: bytes, resource: str, now: float | None = None
    ) -> SignedRefs:
        """The ref list in ``wire``, if signed by ``key`` for ``resource`` and fresh."""
        try:
            refs = tuple((str(n), str(s)) for n, s in wire["refs"])
            signed = cls(
                str(wire["resource"]),
                refs,
                int(wire["timestamp"]),
                bytes(wire["key"]),
                bytes(wire["signature"]),
                str(wire.get("git_url") or ""),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise SignedRefsError(f"malformed signed refs: {exc}") from None
        if len(refs) > limits.MAX_SYNC_REFS:
            raise SignedRefsError(f"over MAX_SYNC_REFS ({limits.MAX_SYNC_REFS}) refs")
        for name, sha in refs:
            if len(name.encode()) > limits.MAX_SYNC_REF_BYTES or not name.startswith("refs/"):
                raise SignedRefsError(f"refused ref name {name[:80]!r}")
            if len(sha) != 40 or any(c not in "0123456789abcdef" for c in sha):
                raise SignedRefsError(f"ref {name} does not name a git object id")
        from aspen_federation.signedstate import check_signed

        check_signed(signed, key, resource, now, "refs", SignedRefsError)
        return signed
