"""Events published on the bus (DESIGN §5).

Every event is a frozen dataclass with a ``name`` (``kv.put``, ``raft.leader_changed``…),
the Raft ``index`` and ``term`` of the log entry that produced it and, where meaningful,
the KV ``revision``. Subscribers use (index, revision) to detect gaps: in-process
delivery is at-most-once, and the durable KV history is the source of truth.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

__all__ = [
    "BlobAdded",
    "BlobEvent",
    "BlobPinned",
    "BlobRemoved",
    "ClusterEvent",
    "Event",
    "KeyValue",
    "KvBatch",
    "KvDelete",
    "KvEvent",
    "KvPut",
    "LeaderChanged",
    "LeaseExpired",
    "MembershipChanged",
    "RaftEvent",
    "SnapshotCreated",
    "SnapshotInstalled",
]


@dataclass(frozen=True, slots=True)
class KeyValue:
    """One key's record, as etcd shows it."""

    key: bytes
    value: bytes
    create_revision: int
    mod_revision: int
    version: int
    lease: int = 0

    def to_wire(self) -> dict:
        """Return the msgpack-able form."""
        return {
            "key": self.key,
            "value": self.value,
            "create_revision": self.create_revision,
            "mod_revision": self.mod_revision,
            "version": self.version,
            "lease": self.lease,
        }

    @classmethod
    def from_wire(cls, obj: dict) -> KeyValue:
        """Build from the msgpack form."""
        return cls(
            key=obj["key"],
            value=obj["value"],
            create_revision=obj["create_revision"],
            mod_revision=obj["mod_revision"],
            version=obj["version"],
            lease=obj.get("lease", 0),
        )


@dataclass(frozen=True, slots=True)
class Event:
    """Base of every bus event."""

    name: ClassVar[str] = "event"
    index: int
    term: int


@dataclass(frozen=True, slots=True)
class KvEvent(Event):
    """Base of the ``kv.*`` events; ``revision`` is the store revision they belong to."""

    revision: int


@dataclass(frozen=True, slots=True)
class KvPut(KvEvent):
    """A key was written. ``prev`` is the record before, or ``None`` if it was created."""

    name: ClassVar[str] = "kv.put"
    kv: KeyValue
    prev: KeyValue | None = None


@dataclass(frozen=True, slots=True)
class KvDelete(KvEvent):
    """A key was deleted. ``prev`` is the record it had; ``kv`` is a tombstone record
    (empty value, ``mod_revision`` = the deleting revision, version 0)."""

    name: ClassVar[str] = "kv.delete"
    kv: KeyValue
    prev: KeyValue


@dataclass(frozen=True, slots=True)
class KvBatch(KvEvent):
    """Once per transaction that changed more than one key, listing its changes in order."""

    name: ClassVar[str] = "kv.batch"
    events: tuple[KvPut | KvDelete, ...]


@dataclass(frozen=True, slots=True)
class LeaseExpired(KvEvent):
    """A lease ran out; ``keys`` were deleted with it (their ``kv.delete`` events follow).

    A lease with more keys than one expiry command deletes (``LEASE_EXPIRY_SLICE_KEYS``)
    loses the others in the commands before, each key with its ``kv.delete`` event."""

    name: ClassVar[str] = "kv.lease_expired"
    lease: int
    keys: tuple[bytes, ...] = field(default=())


@dataclass(frozen=True, slots=True)
class RaftEvent(Event):
    """Base of the ``raft.*`` events."""


@dataclass(frozen=True, slots=True)
class LeaderChanged(RaftEvent):
    """The leader changed; ``leader`` is the new leader's node id (``None`` while unknown)."""

    name: ClassVar[str] = "raft.leader_changed"
    leader: str | None
    previous: str | None


@dataclass(frozen=True, slots=True)
class SnapshotCreated(RaftEvent):
    """This node wrote a snapshot of its state machine up to ``index``."""

    name: ClassVar[str] = "raft.snapshot_created"
    size_bytes: int


@dataclass(frozen=True, slots=True)
class SnapshotInstalled(RaftEvent):
    """This node replaced its state with a snapshot received from ``source``."""

    name: ClassVar[str] = "raft.snapshot_installed"
    source: str
    size_bytes: int


@dataclass(frozen=True, slots=True)
class ClusterEvent(Event):
    """Base of the ``cluster.*`` events."""


@dataclass(frozen=True, slots=True)
class MembershipChanged(ClusterEvent):
    """Voters or learners changed."""

    name: ClassVar[str] = "cluster.membership_changed"
    voters_before: tuple[str, ...]
    learners_before: tuple[str, ...]
    voters_after: tuple[str, ...]
    learners_after: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class BlobEvent(Event):
    """Base of the ``blob.*`` events: ``hash`` is the blob's, ``revision`` the store revision
    of the KV change that recorded it."""

    revision: int
    hash: str


@dataclass(frozen=True, slots=True)
class BlobAdded(BlobEvent):
    """A blob became stored in the cluster (its first put was acknowledged)."""

    name: ClassVar[str] = "blob.added"
    size: int


@dataclass(frozen=True, slots=True)
class BlobPinned(BlobEvent):
    """A pin now names the blob (a put with a pin, or ``blob pin``): the blob is stored."""

    name: ClassVar[str] = "blob.pinned"
    pin: str


@dataclass(frozen=True, slots=True)
class BlobRemoved(BlobEvent):
    """A blob was removed from the cluster by GC (its replicas are deleted next)."""

    name: ClassVar[str] = "blob.removed"
