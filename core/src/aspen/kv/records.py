"""Stored forms of key records and history entries, and their protocol (wire) forms.

A key record is stored as the msgpack array ``[key, value, create_revision,
mod_revision, version, lease]`` (the full key, also for long keys). A history entry is
stored under ``revision (8 bytes BE) + sub-index (4 bytes BE)`` as the msgpack array
``[type, kv, prev]`` where ``type`` is ``"put"`` or ``"delete"``, ``kv`` the record
written (a delete's is its tombstone) and ``prev`` the record before, or nil.
"""

from __future__ import annotations

import struct
from typing import Any

import msgpack

from aspen.events import KeyValue, KvDelete, KvPut

__all__ = [
    "HISTORY_KEY",
    "U64",
    "Record",
    "history_event",
    "history_key",
    "record_key",
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


def unpack(raw: bytes) -> Any:
    """Decode a stored msgpack value (bytes stay bytes, strings stay strings)."""
    return msgpack.unpackb(raw, raw=False)


def record_key(raw: bytes) -> bytes:
    """The full key of a stored key record."""
    return msgpack.unpackb(raw, raw=False)[0]


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


def history_event(db_key: bytes, raw: bytes) -> dict[str, Any]:
    """The protocol watch event of a stored history entry, plus its ``revision``."""
    kind, kv, prev = unpack(raw)
    return {
        "type": kind,
        "kv": record_to_wire(kv),
        "prev_kv": record_to_wire(prev),
        "revision": HISTORY_KEY.unpack(db_key)[0],
    }


def watch_event(event: KvPut | KvDelete) -> dict[str, Any]:
    """The protocol watch event of a bus event, plus its ``revision`` (as :func:`history_event`)."""
    return {
        "type": "put" if isinstance(event, KvPut) else "delete",
        "kv": event.kv.to_wire(),
        "prev_kv": event.prev.to_wire() if event.prev is not None else None,
        "revision": event.revision,
    }
