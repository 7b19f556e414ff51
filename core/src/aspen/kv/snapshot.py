"""State machine snapshots: a consistent dump of the replicated databases, and its restore.

A snapshot is a stream of chunks read from ONE LMDB read transaction (so it is the state
at exactly one applied index), the ``meta`` records first. Each chunk is the msgpack list
``[db, [key, value, key, value, ...]]``: records of one database, in key order (so the
receiver appends them with LMDB's append mode, no B-tree search per record). The receiver
spools the chunks to a file and restores them in one write transaction. Memory on both
sides is one chunk (about ``SNAPSHOT_CHUNK_BYTES``) plus LMDB's own dirty pages on the
receiving side.

The meta chunk carries the storage format (:data:`~aspen.storage.env.STORAGE_FORMAT`); a
snapshot of another format (or of a node from before formats were recorded) is refused
with :class:`~aspen.errors.StorageFormatError`, never restored into the wrong layout.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any, BinaryIO

import lmdb
import msgpack

from aspen import limits
from aspen.errors import StorageFormatError
from aspen.journal.store import JOURNAL_META_KEYS
from aspen.storage import Storage
from aspen.storage.env import FORMAT_KEY, STORAGE_FORMAT

__all__ = [
    "SNAPSHOT_DBS",
    "SNAPSHOT_META_KEYS",
    "check_format",
    "dump_chunks",
    "read_spool",
    "restore",
]

#: Databases that make up the replicated state.
SNAPSHOT_DBS = ("kv", "history", "keyrevs", "leases", "lease_keys", "events")
#: Keys of the ``meta`` database that belong to the replicated state.
SNAPSHOT_META_KEYS = (
    b"kv/state",
    b"kv/compact_revision",
    b"kv/compact_position",
    b"raft/conf",
    b"cluster/members",
    *JOURNAL_META_KEYS,  # the event journal's extent and retention
)


def dump_chunks(storage: Storage, txn: lmdb.Transaction) -> Iterator[bytes]:
    """Yield the replicated state read in ``txn`` as chunks of at most ~SNAPSHOT_CHUNK_BYTES."""
    packer = msgpack.Packer(use_bin_type=True)
    meta = storage.db("meta")
    flat: list[bytes] = [FORMAT_KEY, STORAGE_FORMAT.to_bytes(8, "big")]
    for key in SNAPSHOT_META_KEYS:
        value = txn.get(key, db=meta)
        if value is not None:
            flat += (key, value)
    yield packer.pack(["meta", flat])
    for name in SNAPSHOT_DBS:
        flat = []
        size = 0
        with txn.cursor(db=storage.db(name)) as cur:
            for key, value in cur:
                flat += (key, value)
                size += len(key) + len(value) + 10
                if size >= limits.SNAPSHOT_CHUNK_BYTES:
                    yield packer.pack([name, flat])
                    flat, size = [], 0
        if flat:
            yield packer.pack([name, flat])


def read_spool(spool: BinaryIO) -> Iterator[list[list[bytes]]]:
    """Read back chunks written to a spool file as length-prefixed blobs."""
    while header := spool.read(4):
        size = int.from_bytes(header, "big")
        yield msgpack.unpackb(spool.read(size), raw=False, use_list=True)


def restore(storage: Storage, txn: lmdb.Transaction, chunks: Iterable[list[Any]]) -> None:
    """Replace the replicated state with the snapshot ``chunks`` inside write ``txn``."""
    for name in SNAPSHOT_DBS:
        txn.drop(storage.db(name), delete=False)
    meta = storage.db("meta")
    for key in SNAPSHOT_META_KEYS:
        txn.delete(key, db=meta)
    for n, (name, flat) in enumerate(chunks):
        if name != "meta" and name not in SNAPSHOT_DBS:
            raise ValueError(f"snapshot names an unknown database {name!r}")
        if n == 0:
            check_format(name, flat)
        pairs = zip(flat[::2], flat[1::2], strict=True)
        with txn.cursor(db=storage.db(name)) as cur:
            # the dropped databases are filled in key order: append (meta is not dropped)
            _, added = cur.putmulti(pairs, append=name != "meta")
        if added != len(flat) // 2:
            raise ValueError(f"snapshot records of {name!r} are not in key order")


def check_format(name: str, flat: list[bytes]) -> None:
    """Refuse a snapshot whose first chunk (``name``, ``flat``) is not a meta chunk naming
    this storage format (format 1 sent meta last, without a format)."""
    raw = dict(zip(flat[::2], flat[1::2], strict=True)).get(FORMAT_KEY) if name == "meta" else None
    found = int.from_bytes(raw, "big") if raw is not None else 1
    if found != STORAGE_FORMAT:
        raise StorageFormatError(
            f"snapshot holds storage format {found}; this node reads format "
            f"{STORAGE_FORMAT} only (upgrade the node that sent it)",
            found=found,
            expected=STORAGE_FORMAT,
        )
