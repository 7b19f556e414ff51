"""``blob.added`` / ``blob.removed``: derived from the KV changes of a blob's record.

A blob exists exactly while its record ``/_aspen/blobs/b/<hash>`` does, so every node
derives the same events, at the same revisions, from the changes it applies."""

from __future__ import annotations

import json

from aspen.blobs.meta import BLOB
from aspen.events import BlobAdded, BlobRemoved, Event, KvDelete, KvPut

__all__ = ["blob_events"]

_BLOB_KEY = BLOB.encode()


def blob_events(events: list[Event]) -> list[Event]:
    """The blob events that the applied ``events`` amount to (usually none)."""
    out: list[Event] = []
    for event in events:
        if type(event) is KvPut and event.prev is None and event.kv.key.startswith(_BLOB_KEY):
            size = int(json.loads(event.kv.value)["size"])
            digest = event.kv.key[len(_BLOB_KEY) :].decode()
            out.append(BlobAdded(event.index, event.term, event.revision, digest, size))
        elif type(event) is KvDelete and event.kv.key.startswith(_BLOB_KEY):
            digest = event.kv.key[len(_BLOB_KEY) :].decode()
            out.append(BlobRemoved(event.index, event.term, event.revision, digest))
    return out
