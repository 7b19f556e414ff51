"""Stored forms of history entries and index rows, and the protocol (wire) forms of records.

In memory a key record is the list ``[key, value, create_revision, mod_revision, version,
lease]`` (the full key, also for long keys). On disk (storage format 2, see
:mod:`aspen.kv.layout`) it is stored once, as the history entry of the change that wrote
it: under ``revision (8 bytes BE) + sub-index (4 bytes BE)`` (its *position*), the msgpack
array ``[PUT, key, value, create_revision, version, lease]`` (``mod_revision`` is the
position's revision), or ``[DELETE, key]`` for a delete.
"""

from __future__ import annotations

import struct
from typing import Any

import msgpack

from aspen.events import KeyValue, KvDelete, KvPut

__all__ = [
    "DELETE",
    "HISTORY_KEY",
    "POSITION_BYTES",
    "PUT",
    "U64",
    "Record",
    "entry_key",
    "entry_record",
    "entry_to_wire",
    "history_key",
    "is_put",
    "pack_delete",
    "pack_put",
    "record_to_kv",
    "record_to_wire",
    "tombstone",
    "unpack",
    "watch_event",
]

#: A key record: [key, value, create_revision, mod_revision, version, lease].
Record = list[Any]
#: 8-byte big-endian unsigned integer (lease ids, revisions).
U64 = struct.Struct(">Q")
#: History key: revision (8 bytes BE) then sub-index within the revision (4 bytes BE).
HISTORY_KEY = struct.Struct(">QI")
#: Bytes of a history key (a change's position).
POSITION_BYTES = HISTORY_KEY.size
#: Kind of a history entry that wrote a key.
PUT = 0
#: Kind of a history entry that deleted a key.
DELETE = 1


def unpack(raw: bytes) -> Any:
    """Decode a stored msgpack value (bytes stay bytes, strings stay strings)."""
    return msgpack.unpackb(raw, raw=False)


def pack_put(packer: msgpack.Packer, rec: Record) -> bytes:
    """The stored history entry of a put that wrote ``rec``."""
    return packer.pack((PUT, rec[0], rec[1], rec[2], rec[4], rec[5]))


def pack_delete(packer: msgpack.Packer, key: bytes) -> bytes:
    """The stored history entry of a delete of ``key``."""
    return packer.pack((DELETE, key))


def entry_record(position: bytes, raw: bytes) -> tuple[int, Record]:
    """``(kind, record)`` of the history entry ``raw`` stored at ``position``: the record it
    wrote, or for a delete its tombstone."""
    entry = msgpack.unpackb(raw)
    revision = HISTORY_KEY.unpack(position)[0]
    if entry[0] == PUT:
        return PUT, [entry[1], entry[2], entry[3], revision, entry[4], entry[5]]
    return DELETE, tombstone(entry[1], revision)


def entry_to_wire(position: bytes, raw: bytes, keys_only: bool = False) -> dict[str, Any]:
    """The protocol ``kv`` map of the record a stored put entry wrote (as
    ``record_to_wire(entry_record(position, raw)[1])``, without the record in between)."""
    entry = msgpack.unpackb(raw)
    return {
        "key": entry[1],
        "value": b"" if keys_only else entry[2],
        "create_revision": entry[3],
        "mod_revision": HISTORY_KEY.unpack(position)[0],
        "version": entry[4],
        "lease": entry[5],
    }


def is_put(raw: bytes) -> bool:
    """True if the stored history entry ``raw`` is a put (read off its first field)."""
    return raw[1] == PUT  # after the array header, a positive fixint: the kind


def entry_key(raw: bytes) -> bytes:
    """The full key a stored history entry changed."""
    return msgpack.unpackb(raw)[1]


def history_key(revision: int, sub: int = 0) -> bytes:
    """The history database key of the ``sub``-th change of ``revision``."""
    return HISTORY_KEY.pack(revision, sub)


def tombstone(key: bytes, revision: int) -> Record:
    """The record a delete at ``revision`` leaves in events and history."""
    return [key, b"", 0, revision, 0, 0]


def record_to_kv(rec: Record) -> KeyValue:
    """Build the event dataclass of a record."""
    return KeyValue(rec[0], rec[1], rec[2], rec[3], rec[4], rec[5])


def record_to_wire(rec: Record | None, keys_only: bool = False) -> dict[str, Any] | None:
    """The protocol ``kv`` map of a record (``None`` stays ``None``)."""
    if rec is None:
        return None
    return {
        "key": rec[0],
        "value": b"" if keys_only else rec[1],
        "create_revision": rec[2],
        "mod_revision": rec[3],
        "version": rec[4],
        "lease": rec[5],
    }


def watch_event(event: KvPut | KvDelete) -> dict[str, Any]:
    """The protocol watch event of a bus event, plus its ``revision`` (as a watch reads it)."""
    return {
        "type": "put" if isinstance(event, KvPut) else "delete",
        "kv": event.kv.to_wire(),
        "prev_kv": event.prev.to_wire() if event.prev is not None else None,
        "revision": event.revision,
    }
