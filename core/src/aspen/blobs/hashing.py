"""Naming and verifying blobs: BLAKE3 hashes, per-chunk sums, :class:`BlobRef`.

A blob is named by the BLAKE3 hash of its bytes, printed as 64 lowercase hex digits. Next to
its bytes a node keeps the *sums* of the blob: the BLAKE3 hash of every ``VERIFY_CHUNK_BYTES``
piece, then a trailer that binds them to the blob's hash. A read checks each piece against
its sum before it hands the piece on, so a damaged replica is caught at the first bad piece
and never reaches a caller, even in the middle of a stream or a range read.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

import blake3

from aspen.errors import InvalidArgumentError

__all__ = [
    "DIGEST_BYTES",
    "HASH_RE",
    "VERIFY_CHUNK_BYTES",
    "BlobRef",
    "ChunkSums",
    "Hasher",
    "check_range",
    "chunk_count",
    "parse_hash",
]

#: Bytes of a BLAKE3 digest.
DIGEST_BYTES = 32
#: Size of the pieces a blob is verified in (part of the on-disk format: never change it).
VERIFY_CHUNK_BYTES = 1024 * 1024
#: What a blob hash looks like.
HASH_RE = re.compile(r"[0-9a-f]{64}")


def parse_hash(value: object, field: str = "hash") -> str:
    """Return ``value`` if it is a blob hash (64 lowercase hex digits), else raise
    ``invalid_argument`` saying what a hash looks like."""
    if isinstance(value, bytes) and len(value) == DIGEST_BYTES:
        return value.hex()
    if not isinstance(value, str) or HASH_RE.fullmatch(value) is None:
        shown = repr(value)[:80]
        raise InvalidArgumentError(
            f"{field} {shown} is not a blob hash (64 lowercase hex digits of BLAKE3)",
            field=field,
        )
    return value


def chunk_count(size: int) -> int:
    """How many verify chunks a blob of ``size`` bytes has (an empty blob has none)."""
    return -(-size // VERIFY_CHUNK_BYTES)


def check_range(size: int, offset: int, length: int | None) -> int:
    """Return how many bytes a read of ``[offset, offset + length)`` covers in a blob of
    ``size`` bytes (``length`` None: to the end); raise ``invalid_argument`` past the end."""
    if offset < 0 or (length is not None and length < 0):
        raise InvalidArgumentError("offset and length must not be negative", field="offset")
    if offset > size or (length is not None and offset + length > size):
        raise InvalidArgumentError(
            f"range [{offset}, {offset + (length or 0)}) is past the end of the blob "
            f"({size} bytes)",
            field="offset",
            size=size,
        )
    return size - offset if length is None else length


@dataclass(frozen=True, slots=True)
class BlobRef:
    """A stored blob: its ``hash`` (lowercase hex BLAKE3) and ``size`` in bytes; after a
    put, ``replicas`` is how many nodes held it when the put was acknowledged."""

    hash: str
    size: int
    replicas: int | None = field(default=None, compare=False)

    def to_wire(self) -> dict[str, Any]:
        """``{"hash", "size"}``."""
        return {"hash": self.hash, "size": self.size}


class Hasher:
    """Hashes a blob as it streams by: the blob's hash and each verify chunk's sum."""

    def __init__(self) -> None:
        self._whole = blake3.blake3(max_threads=blake3.blake3.AUTO)
        self._piece = blake3.blake3()
        self._piece_len = 0
        self._sums = bytearray()
        self.size = 0

    def update(self, data: bytes | memoryview) -> None:
        """Add the next bytes of the blob."""
        self._whole.update(data)
        self.size += len(data)
        view = memoryview(data)
        while view:
            take = min(len(view), VERIFY_CHUNK_BYTES - self._piece_len)
            self._piece.update(view[:take])
            self._piece_len += take
            view = view[take:]
            if self._piece_len == VERIFY_CHUNK_BYTES:
                self._sums += self._piece.digest()
                self._piece, self._piece_len = blake3.blake3(), 0

    def finish(self) -> tuple[str, ChunkSums]:
        """The blob's hash and its sums (call once, after the last byte)."""
        if self._piece_len:
            self._sums += self._piece.digest()
        digest = self._whole.hexdigest()
        return digest, ChunkSums(digest, self.size, bytes(self._sums))


class ChunkSums:
    """The per-chunk BLAKE3 sums of one blob, bound to its hash by a trailer."""

    def __init__(self, digest: str, size: int, sums: bytes) -> None:
        self.digest = digest
        self.size = size
        self.sums = sums

    def _trailer(self) -> bytes:
        head = bytes.fromhex(self.digest) + self.size.to_bytes(8, "big")
        return blake3.blake3(head + self.sums).digest()

    def encode(self) -> bytes:
        """The bytes of the sums file: every chunk sum, then the trailer."""
        return self.sums + self._trailer()

    @classmethod
    def decode(cls, digest: str, size: int, data: bytes) -> ChunkSums | None:
        """Read a sums file; ``None`` if it is damaged or does not belong to this blob."""
        expected = chunk_count(size) * DIGEST_BYTES
        if len(data) != expected + DIGEST_BYTES:
            return None
        sums = cls(digest, size, data[:expected])
        return sums if sums._trailer() == data[expected:] else None

    def check(self, index: int, piece: bytes | memoryview) -> bool:
        """Whether ``piece`` is chunk number ``index`` of the blob."""
        want = self.sums[index * DIGEST_BYTES : (index + 1) * DIGEST_BYTES]
        return blake3.blake3(piece).digest() == want
