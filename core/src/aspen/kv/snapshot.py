"""State machine snapshots: a consistent dump of the replicated databases, and its restore.

A snapshot is a stream of chunks, each a msgpack list of ``[db, key, value]`` records, read
from ONE LMDB read transaction (so it is the state at exactly one applied index). The
receiver spools the chunks to a file and restores them in one write transaction.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any, BinaryIO

import lmdb
import msgpack

from aspen import limits
from aspen.storage import Storage

__all__ = ["SNAPSHOT_DBS", "SNAPSHOT_META_KEYS", "dump_chunks", "read_spool", "restore"]

#: Databases that make up the replicated state.
SNAPSHOT_DBS = ("kv", "history", "leases", "lease_keys")
#: Keys of the ``meta`` database that belong to the replicated state.
SNAPSHOT_META_KEYS = (b"kv/state", b"kv/compact_revision", b"raft/conf", b"cluster/members")


def dump_chunks(storage: Storage, txn: lmdb.Transaction) -> Iterator[bytes]:
    """Yield the replicated state read in ``txn`` as chunks of at most ~SNAPSHOT_CHUNK_BYTES."""
    packer = msgpack.Packer(use_bin_type=True)
    batch: list[list[object]] = []
    size = 0
    for name in SNAPSHOT_DBS:
        with txn.cursor(db=storage.db(name)) as cur:
            for key, value in cur:
                batch.append([name, key, value])
                size += len(key) + len(value) + 16
                if size >= limits.SNAPSHOT_CHUNK_BYTES:
                    yield packer.pack(batch)
                    batch, size = [], 0
    meta = storage.db("meta")
    for key in SNAPSHOT_META_KEYS:
        value = txn.get(key, db=meta)
        if value is not None:
            batch.append(["meta", key, value])
    yield packer.pack(batch)


def read_spool(spool: BinaryIO) -> Iterator[list[list[bytes]]]:
    """Read back chunks written to a spool file as length-prefixed blobs."""
    while header := spool.read(4):
        size = int.from_bytes(header, "big")
        yield msgpack.unpackb(spool.read(size), raw=False, use_list=True)


def restore(storage: Storage, txn: lmdb.Transaction, chunks: Iterable[list[list[Any]]]) -> None:
    """Replace the replicated state with the snapshot ``chunks`` inside write ``txn``."""
    for name in SNAPSHOT_DBS:
        txn.drop(storage.db(name), delete=False)
    meta = storage.db("meta")
    for key in SNAPSHOT_META_KEYS:
        txn.delete(key, db=meta)
    for chunk in chunks:
        for name, key, value in chunk:
            if name != "meta" and name not in SNAPSHOT_DBS:
                raise ValueError(f"snapshot names an unknown database {name!r}")
            txn.put(key, value, db=storage.db(name))
