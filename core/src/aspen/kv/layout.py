"""How the key-value state lies in LMDB (storage format 2): each value stored once.

Three databases, in the style of etcd's MVCC store (a revision-keyed store plus a key
index of revisions):

``history``
    position (``revision + sub-index``, see :mod:`aspen.kv.records`) → the change made
    there: ``[PUT, key, value, create_revision, version, lease]`` or ``[DELETE, key]``.
    The only place a value is stored.
``kv``
    encoded key (:mod:`aspen.kv.keycodec`) → the position of the key's current record,
    followed by the full key for a long key. Live keys only: a delete removes the row, so
    a range at the current revision walks live keys and reads each record by position.
``keyrevs``
    encoded key → the positions of the key's *earlier* changes (LMDB sorted duplicates of
    :data:`~aspen.kv.records.POSITION_BYTES` each, so oldest first; the current position
    is in ``kv`` only). A key written once has no row here.

A read at an old revision R walks the keys of both ``kv`` and ``keyrevs`` in key order
and finds each one's latest position at or before R with one seek: O(page) however often
keys changed after R (a key created after R, or deleted before it and kept, is one step
over, as in etcd's key index). A watch finds a change's previous record (``prev_kv``) the same way.

Compaction to C (:meth:`KeyIndex.compact_entry`, in slices from a stored position)
visits every change below C in order and deletes its predecessor (superseded before C),
and a delete itself; what stays below C is the record each live key had at C. So every
read at or after C, and every watch from C on (``prev_kv`` included), still finds what
it needs, also between slices.
"""

from __future__ import annotations

from collections.abc import Iterator

import lmdb

from aspen.kv.keycodec import encode_key, is_long, scan
from aspen.kv.records import DELETE, POSITION_BYTES, entry_key, entry_record
from aspen.storage.env import Storage

__all__ = ["KeyIndex", "index_key", "index_row"]


def index_row(position: bytes, key: bytes, encoded: bytes) -> bytes:
    """The ``kv`` row of a key whose current record is at ``position``."""
    return position + key if is_long(encoded) else position


def index_key(row: bytes) -> bytes:
    """The full key held by the ``kv`` row of a long key."""
    return row[POSITION_BYTES:]


class KeyIndex:
    """The ``kv``, ``keyrevs`` and ``history`` databases of one :class:`Storage`."""

    def __init__(self, storage: Storage) -> None:
        """Bind to ``storage``'s databases."""
        self.kv = storage.db("kv")
        self.revs = storage.db("keyrevs")
        self.history = storage.db("history")

    # ------------------------------------------------------------------ writes
    def supersede(self, txn: lmdb.Transaction, encoded: bytes, position: bytes) -> None:
        """Keep ``position`` (a key's current record until now) among its earlier changes."""
        txn.put(encoded, position, db=self.revs)

    def forget(self, txn: lmdb.Transaction, encoded: bytes, position: bytes) -> None:
        """Delete the change at ``position`` of the key stored as ``encoded``."""
        txn.delete(position, db=self.history)
        txn.delete(encoded, position, db=self.revs)

    # ------------------------------------------------------------------ lookups
    def before(
        self, cur: lmdb.Cursor, encoded: bytes, position: bytes, current: bytes | None
    ) -> bytes | None:
        """Position of the change of a key just before its change at ``position`` (None:
        none kept), with ``cur`` a ``keyrevs`` cursor and ``current`` the key's ``kv`` row."""
        if current is None or current[:POSITION_BYTES] != position:
            if not cur.set_key_dup(encoded, position):
                return None  # compacted away
            return cur.value() if cur.prev_dup() else None
        if cur.set_key(encoded) and cur.last_dup():
            return cur.value()
        return None

    def at(self, cur: lmdb.Cursor, encoded: bytes, bound: bytes) -> bytes | None:
        """Position of the latest earlier change of a key before ``bound`` (a position), or
        None, with ``cur`` a ``keyrevs`` cursor."""
        if cur.set_range_dup(encoded, bound):
            return cur.value() if cur.prev_dup() else None
        if cur.set_key(encoded) and cur.last_dup():
            return cur.value()  # every change kept is before the bound
        return None

    def keys_between(
        self, txn: lmdb.Transaction, start: bytes, end: bytes | None
    ) -> Iterator[tuple[bytes, bytes, bytes | None]]:
        """``(key, encoded, kv row or None)`` of every key in ``[start, end)`` (``end`` None:
        no bound) that is live or has earlier changes kept, in key order."""
        with txn.cursor(db=self.kv) as live_cur, txn.cursor(db=self.revs) as revs_cur:

            def full_key(position: bytes) -> bytes:
                return entry_key(txn.get(position, db=self.history))

            live = scan(live_cur, start, end, index_key)
            old = scan(revs_cur, start, end, full_key, distinct=True)
            nxt_live = next(live, None)
            nxt_old = next(old, None)
            while nxt_live is not None or nxt_old is not None:
                if nxt_old is None or (nxt_live is not None and nxt_live[1] <= nxt_old[1]):
                    assert nxt_live is not None
                    encoded, key, row = nxt_live
                    yield key, encoded, row
                    if nxt_old is not None and nxt_old[1] == key:
                        nxt_old = next(old, None)
                    nxt_live = next(live, None)
                else:
                    encoded, key, _ = nxt_old
                    yield key, encoded, None
                    nxt_old = next(old, None)

    # ------------------------------------------------------------------ compaction
    def compact_entry(self, txn: lmdb.Transaction, position: bytes, raw: bytes) -> int:
        """Compact one change below the compact revision: delete its predecessor, and the
        change itself if it is a delete; return how many changes were deleted."""
        kind, rec = entry_record(position, raw)
        encoded = encode_key(rec[0])
        current = txn.get(encoded, db=self.kv)
        deleted = 0
        with txn.cursor(db=self.revs) as cur:
            prev = self.before(cur, encoded, position, current)
        if prev is not None:
            self.forget(txn, encoded, prev)
            deleted += 1
        if kind == DELETE:
            self.forget(txn, encoded, position)
            deleted += 1
        return deleted
