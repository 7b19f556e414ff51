"""The blob store as plugins see it: ``node.blobs`` is a :class:`BlobsAPI`.

It imports nothing heavy, so ``aspen.node.api`` can name it without loading the store.
"""

from __future__ import annotations

from collections.abc import AsyncIterable, AsyncIterator, Iterable
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

if TYPE_CHECKING:
    from aspen.blobs.hashing import BlobRef

__all__ = ["BlobsAPI"]


@runtime_checkable
class BlobsAPI(Protocol):
    """Content-addressed, replicated, verified blobs (docs/blobs.md)."""

    async def put(
        self,
        source: bytes | Iterable[bytes] | AsyncIterable[bytes],
        *,
        replicas: int | None = None,
        pin: str | None = None,
        size: int | None = None,
    ) -> BlobRef:
        """Store the bytes of ``source``; return their :class:`BlobRef` once ``replicas``
        nodes (default: the cluster's setting, else ``min(3, voters)``) hold them durably."""
        ...

    async def put_durable(
        self,
        source: bytes | Iterable[bytes] | AsyncIterable[bytes],
        *,
        pin: str | None = None,
        size: int | None = None,
    ) -> BlobRef:
        """Like :meth:`put` at the cluster's replica count, but when members are down
        acknowledged once a majority of the voters hold the bytes (as durable as the Raft
        log that will name them; repaired to the replica count when members return).
        ``unavailable`` if not even a majority can hold them."""
        ...

    def open(self, digest: str, offset: int = 0, length: int | None = None) -> AsyncIterator[bytes]:
        """Iterate the verified bytes of ``digest`` (``[offset, offset + length)``)."""
        ...

    async def stat(self, digest: str) -> dict[str, Any]:
        """``{"hash", "size", "holders", "pins", "replicas", "created"}``; ``not_found``
        for an unknown hash."""
        ...

    async def pin(self, name: str, digest: str) -> None:
        """Keep ``digest`` under the pin ``name`` (prefix names with your plugin's)."""
        ...

    async def unpin(self, name: str) -> str:
        """Drop the pin ``name``; return the hash it kept."""
        ...
