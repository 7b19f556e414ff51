"""Leases in storage: each lease's granted TTL and the keys attached to it.

``leases`` maps the lease id (8 bytes BE) to msgpack ``{"ttl": granted_ttl}``;
``lease_keys`` maps lease id + encoded key to the full key (for long keys) or ``b""`` (a
short key is its own encoding). When a lease runs out is not stored: the node keeps
deadlines in memory and proposes ``lease_expire`` commands.
"""

from __future__ import annotations

from collections.abc import Iterator

import lmdb
import msgpack

from aspen.kv.keycodec import is_long, scan
from aspen.kv.records import U64
from aspen.storage.env import Storage

__all__ = ["LeaseTable"]


def _stored_key(value: bytes) -> bytes:
    """Full key of a long-encoded ``lease_keys`` entry (its value)."""
    return value


class LeaseTable:
    """The ``leases`` and ``lease_keys`` databases."""

    def __init__(self, storage: Storage) -> None:
        """Bind to ``storage``'s databases."""
        self._leases = storage.db("leases")
        self._keys = storage.db("lease_keys")

    def exists(self, txn: lmdb.Transaction, lease_id: int) -> bool:
        """True if the lease is granted."""
        return txn.get(U64.pack(lease_id), db=self._leases) is not None

    def ttl(self, txn: lmdb.Transaction, lease_id: int) -> int | None:
        """The granted TTL of a lease, or None if there is no such lease."""
        raw = txn.get(U64.pack(lease_id), db=self._leases)
        return None if raw is None else msgpack.unpackb(raw)["ttl"]

    def grant(self, txn: lmdb.Transaction, lease_id: int, ttl: int) -> None:
        """Store a new lease."""
        txn.put(U64.pack(lease_id), msgpack.packb({"ttl": ttl}), db=self._leases)

    def remove(self, txn: lmdb.Transaction, lease_id: int) -> None:
        """Drop a lease and all its key attachments (the keys themselves are the caller's)."""
        prefix = U64.pack(lease_id)
        txn.delete(prefix, db=self._leases)
        with txn.cursor(db=self._keys) as cur:
            if cur.set_range(prefix):
                while cur.key().startswith(prefix) and cur.delete():
                    pass

    def attach(self, txn: lmdb.Transaction, lease_id: int, encoded: bytes, key: bytes) -> None:
        """Record that ``key`` (stored as ``encoded``) belongs to the lease."""
        txn.put(U64.pack(lease_id) + encoded, key if is_long(encoded) else b"", db=self._keys)

    def detach(self, txn: lmdb.Transaction, lease_id: int, encoded: bytes) -> None:
        """Forget that the key stored as ``encoded`` belongs to the lease."""
        txn.delete(U64.pack(lease_id) + encoded, db=self._keys)

    def keys(self, txn: lmdb.Transaction, lease_id: int) -> Iterator[tuple[bytes, bytes]]:
        """Yield ``(encoded, key)`` of the lease's keys, in key order."""
        prefix = U64.pack(lease_id)
        with txn.cursor(db=self._keys) as cur:
            for db_key, key, _ in scan(cur, b"", None, _stored_key, prefix=prefix):
                yield db_key[len(prefix) :], key

    def ids(self, txn: lmdb.Transaction) -> list[int]:
        """Every granted lease id, ascending."""
        with txn.cursor(db=self._leases) as cur:
            return [U64.unpack(k)[0] for k in cur.iternext(keys=True, values=False)]

    def ttls(self, txn: lmdb.Transaction) -> list[tuple[int, int]]:
        """(id, granted ttl) of every lease, ascending by id, in one cursor pass."""
        with txn.cursor(db=self._leases) as cur:
            return [(U64.unpack(k)[0], msgpack.unpackb(v)["ttl"]) for k, v in cur]

    def count(self, txn: lmdb.Transaction) -> int:
        """Number of granted leases."""
        return txn.stat(self._leases)["entries"]
