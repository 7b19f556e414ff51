"""A trust request on the wire: a cluster's signed identity document, addressed to one
remote cluster and dated, the whole envelope signed again by the same key.

Wire form (msgpack, at most :data:`limits.MAX_TRUST_REQUEST_BYTES`)::

    [version, identity document (bytes), recipient key, timestamp, signature]

The identity document alone is signed but carries neither a recipient nor a date, so a
copy could be replayed to any cluster at any time; the envelope binds it to one recipient
and a freshness window (``TRUST_REQUEST_MAX_AGE_SECONDS``).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, replace
from typing import Any

import msgpack

from aspen.errors import InvalidArgumentError, UnauthorizedError
from aspen_federation import limits
from aspen_federation.identity import ClusterKey, IdentityDocument, verify

__all__ = ["TrustRequest"]

_VERSION = 1
_CONTEXT = b"aspen-federation/trust-request/v1\x00"


@dataclass(frozen=True)
class TrustRequest:
    """One signed trust request (see the module docstring)."""

    document: bytes
    recipient: bytes
    timestamp: int
    signature: bytes = b""

    def _fields(self) -> list[Any]:
        return [_VERSION, self.document, self.recipient, self.timestamp]

    def _signed_bytes(self) -> bytes:
        return _CONTEXT + msgpack.packb(self._fields(), use_bin_type=True)

    @classmethod
    def create(
        cls, key: ClusterKey, document: IdentityDocument, recipient: bytes, now: float | None = None
    ) -> TrustRequest:
        """``document`` (of ``key``) addressed to ``recipient``, signed by ``key``."""
        unsigned = cls(document.encode(), recipient, int(time.time() if now is None else now))
        return replace(unsigned, signature=key.sign(unsigned._signed_bytes()))

    def encode(self) -> bytes:
        """The wire form."""
        return msgpack.packb([*self._fields(), self.signature], use_bin_type=True)

    @classmethod
    def parse(cls, data: bytes) -> TrustRequest:
        """Size and shape only (cheap: run before any rate or signature check)."""
        if len(data) > limits.MAX_TRUST_REQUEST_BYTES:
            raise InvalidArgumentError(
                f"trust request over MAX_TRUST_REQUEST_BYTES ({limits.MAX_TRUST_REQUEST_BYTES})"
            )
        try:
            version, document, recipient, timestamp, signature = msgpack.unpackb(data, raw=False)
            request = cls(bytes(document), bytes(recipient), int(timestamp), bytes(signature))
        except (ValueError, TypeError, msgpack.UnpackException) as exc:
            raise InvalidArgumentError(f"malformed trust request: {exc}") from None
        if version != _VERSION:
            raise InvalidArgumentError(f"trust request version {version!r} is not {_VERSION}")
        return request

    def verified(self, recipient: bytes, now: float | None = None) -> IdentityDocument:
        """The sender's identity document, once the document's signature, the envelope's
        signature (by the same key), the recipient and the date are checked."""
        doc = IdentityDocument.decode(self.document)
        if not verify(doc.key, self.signature, self._signed_bytes()):
            raise UnauthorizedError("trust request: bad signature")
        if self.recipient != recipient:
            raise InvalidArgumentError("trust request addressed to another cluster")
        age = abs((time.time() if now is None else now) - self.timestamp)
        if age > limits.TRUST_REQUEST_MAX_AGE_SECONDS:
            raise InvalidArgumentError("trust request is stale (TRUST_REQUEST_MAX_AGE_SECONDS)")
        return doc
