"""Map Aspen keys (up to ``MAX_KEY_BYTES``) onto LMDB keys (at most 511 bytes).

A key of at most :data:`SHORT_KEY_BYTES` bytes is stored as itself. A longer key is
stored as its first :data:`SHORT_KEY_BYTES` bytes followed by a 16-byte blake2b digest of
the whole key, so every long-encoded key is exactly :data:`LONG_ENCODED_BYTES` long and no
short key is. Records always carry the full key.

Order: for keys whose 480-byte prefixes differ, encoded order is true order; a short key
sorts against a long one exactly as it sorts against its encoding. Only long keys that
share their 480-byte prefix come out of LMDB in digest order — and such a *run* is
contiguous in the encoded space. :func:`scan` therefore buffers each run, sorts it by full
key and filters it against the bounds, yielding records in true byte order.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator

import lmdb

__all__ = ["DIGEST_BYTES", "LONG_ENCODED_BYTES", "SHORT_KEY_BYTES", "encode_key", "is_long", "scan"]

#: Keys up to this length are stored as themselves.
SHORT_KEY_BYTES = 480
#: Length of the blake2b digest appended to a long key's prefix.
DIGEST_BYTES = 16
#: Length of every long-encoded key.
LONG_ENCODED_BYTES = SHORT_KEY_BYTES + DIGEST_BYTES


def encode_key(key: bytes) -> bytes:
    """Return the LMDB key for ``key``."""
    if len(key) <= SHORT_KEY_BYTES:
        return key
    return key[:SHORT_KEY_BYTES] + hashlib.blake2b(key, digest_size=DIGEST_BYTES).digest()


def is_long(encoded: bytes) -> bool:
    """True if ``encoded`` is the encoding of a long key (so the record holds the full key)."""
    return len(encoded) == LONG_ENCODED_BYTES


def scan(
    cursor: lmdb.Cursor,
    start: bytes,
    end: bytes | None,
    full_key: Callable[[bytes], bytes],
    *,
    prefix: bytes = b"",
    distinct: bool = False,
) -> Iterator[tuple[bytes, bytes, bytes]]:
    """Yield ``(db_key, key, value)`` for every key with ``start <= key < end``, in key order.

    ``end=None`` means no upper bound. ``prefix`` is a fixed prefix of every database key
    in the scanned space (it is stripped before decoding); ``full_key(value)`` returns the
    full key of a long-encoded entry from its stored value. The cursor is moved. With
    ``distinct`` (a database of sorted duplicates) each key comes once, with its first value.
    """
    plen = len(prefix)
    step = cursor.next_nodup if distinct else cursor.next
    seek = start if len(start) <= SHORT_KEY_BYTES else start[:SHORT_KEY_BYTES]
    if not cursor.set_range(prefix + seek):
        return
    db_key = cursor.key()
    while db_key:
        if plen and not db_key.startswith(prefix):
            return
        enc = db_key[plen:]
        if len(enc) != LONG_ENCODED_BYTES:
            # A short key is its own encoding.
            if end is not None and enc >= end:
                return
            if enc >= start:
                yield db_key, enc, cursor.value()
            db_key = cursor.key() if step() else b""
            continue
        run_prefix = enc[:SHORT_KEY_BYTES]
        if end is not None and run_prefix >= end:
            return  # every key of the run is longer than run_prefix, so past end
        run: list[tuple[bytes, bytes, bytes]] = []
        while True:
            value = cursor.value()
            run.append((full_key(value), db_key, value))
            if not step():
                db_key = b""
                break
            db_key = cursor.key()
            if not (
                db_key.startswith(prefix)
                and len(db_key) - plen == LONG_ENCODED_BYTES
                and db_key[plen : plen + SHORT_KEY_BYTES] == run_prefix
            ):
                break
        run.sort()
        for key, run_db_key, value in run:
            if end is not None and key >= end:
                return
            if key >= start:
                yield run_db_key, key, value
