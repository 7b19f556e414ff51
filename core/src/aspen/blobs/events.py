"""``blob.added`` / ``blob.removed`` / ``blob.pinned``: derived from the KV changes of a
blob's record and of its pins.

A blob exists exactly while its record ``/_aspen/blobs/b/<hash>`` does, and a pin names it
while ``/_aspen/blobs/p/<name>`` holds its hash, so every node derives the same events, at
the same revisions, from the changes it applies."""

from __future__ import annotations

import json

from aspen.blobs.meta import BLOB, PIN
from aspen.events import BlobAdded, BlobPinned, BlobRemoved, Event, KvDelete, KvPut

__all__ = ["blob_events"]

_BLOB_KEY = BLOB.encode()
_PIN_KEY = PIN.encode()


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
        elif type(event) is KvPut and event.kv.key.startswith(_PIN_KEY):
            if event.prev is not None and event.prev.value == event.kv.value:
                continue  # the same pin rewritten: nothing new
            pin = event.kv.key[len(_PIN_KEY) :].decode()
            digest = str(json.loads(event.kv.value))
            out.append(BlobPinned(event.index, event.term, event.revision, digest, pin))
    return out
