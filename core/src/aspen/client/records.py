"""Frozen result records returned by the client, built from wire maps (docs/protocol.md)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, Literal

from aspen.events import KeyValue

__all__ = [
    "DeleteResult",
    "KeyValue",
    "Lease",
    "LeaseInfo",
    "PublishResult",
    "PutResult",
    "RangeResult",
    "TxnResult",
    "WatchEvent",
    "WatchResponse",
    "kv_or_none",
    "to_bytes",
]

_kv_from_wire = KeyValue.from_wire


def to_bytes(value: bytes | str | bytearray | memoryview, name: str = "key") -> bytes:
    """Return ``value`` as bytes (str is encoded as UTF-8); refuse other types."""
    if type(value) is bytes:
        return value
    if isinstance(value, str):
        return value.encode()
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value)
    raise TypeError(f"{name} must be bytes or str, not {type(value).__name__}")


def kv_or_none(obj: Any) -> KeyValue | None:
    """Return a :class:`KeyValue` from its wire map, or ``None`` for nil."""
    return None if obj is None else _kv_from_wire(obj)


def _revision(obj: dict[str, Any], revision: int | None) -> int:
    """The header revision of a result map (or the enclosing txn's ``revision``)."""
    if revision is not None:
        return revision
    header = obj.get("header")
    return header.get("revision", 0) if header else 0


@dataclass(frozen=True, slots=True)
class PutResult:
    """Result of ``kv.put``: the revision of the write and, if asked, the previous record."""

    revision: int
    prev_kv: KeyValue | None = None

    @classmethod
    def from_wire(cls, obj: dict[str, Any], revision: int | None = None) -> PutResult:
        """Build from a ``kv.put`` result map."""
        return cls(_revision(obj, revision), kv_or_none(obj.get("prev_kv")))


@dataclass(frozen=True, slots=True)
class PublishResult:
    """Result of a ``publish`` txn op: the event's journal position and its revision."""

    position: int
    revision: int

    @classmethod
    def from_wire(cls, obj: dict[str, Any], revision: int | None = None) -> PublishResult:
        """Build from a ``publish`` response map."""
        return cls(obj["position"], _revision(obj, revision))


@dataclass(frozen=True, slots=True)
class RangeResult:
    """Result of ``kv.range``: iterable over ``kvs``; ``more`` when a page was cut short;
    ``count`` the number of keys in the whole range when asked for (else None)."""

    kvs: list[KeyValue]
    more: bool
    count: int | None
    revision: int

    @classmethod
    def from_wire(cls, obj: dict[str, Any], revision: int | None = None) -> RangeResult:
        """Build from a ``kv.range`` result map."""
        kvs = [_kv_from_wire(kv) for kv in obj.get("kvs") or ()]
        return cls(kvs, bool(obj.get("more")), obj.get("count"), _revision(obj, revision))

    def __iter__(self) -> Iterator[KeyValue]:
        """Iterate over the returned records."""
        return iter(self.kvs)

    def __len__(self) -> int:
        """Return how many records were returned (not ``count``)."""
        return len(self.kvs)

    def __getitem__(self, index: int) -> KeyValue:
        """Return the record at ``index``."""
        return self.kvs[index]


@dataclass(frozen=True, slots=True)
class DeleteResult:
    """Result of ``kv.delete``: how many keys went, their records if asked, the revision."""

    deleted: int
    prev_kvs: list[KeyValue]
    revision: int

    @classmethod
    def from_wire(cls, obj: dict[str, Any], revision: int | None = None) -> DeleteResult:
        """Build from a ``kv.delete`` result map."""
        prev = [_kv_from_wire(kv) for kv in obj.get("prev_kvs") or ()]
        return cls(obj.get("deleted", 0), prev, _revision(obj, revision))


@dataclass(frozen=True, slots=True)
class TxnResult:
    """Result of ``kv.txn``: which branch ran and one response per op of that branch."""

    succeeded: bool
    responses: list[PutResult | DeleteResult | RangeResult | TxnResult]
    revision: int

    @classmethod
    def from_wire(cls, obj: dict[str, Any], revision: int | None = None) -> TxnResult:
        """Build from a ``kv.txn`` result map (nested txns share the outer revision)."""
        rev = _revision(obj, revision)
        responses = [_txn_response(resp, rev) for resp in obj.get("responses") or ()]
        return cls(bool(obj.get("succeeded")), responses, rev)


_RESPONSE_TYPES: dict[str, Any] = {
    "put": PutResult,
    "delete": DeleteResult,
    "range": RangeResult,
    "txn": TxnResult,
    "publish": PublishResult,
}


def _txn_response(obj: dict[str, Any], revision: int) -> Any:
    """Build the record of one txn op response (``{"put": {...}}`` and so on)."""
    for kind, cls in _RESPONSE_TYPES.items():
        if kind in obj:
            return cls.from_wire(obj[kind], revision)
    raise ValueError(f"unknown txn response {obj!r}")


@dataclass(frozen=True, slots=True)
class Lease:
    """A granted lease: its id and the TTL (seconds) the node gave it."""

    id: int
    ttl: int


@dataclass(frozen=True, slots=True)
class LeaseInfo:
    """What ``lease.ttl`` says: remaining and granted TTL, and attached keys if asked."""

    id: int
    ttl: int
    granted_ttl: int
    keys: list[bytes] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class WatchEvent:
    """One change seen by a watch: ``type`` is ``"put"`` or ``"delete"``."""

    type: Literal["put", "delete"]
    kv: KeyValue
    prev_kv: KeyValue | None = None

    @classmethod
    def from_wire(cls, obj: dict[str, Any]) -> WatchEvent:
        """Build from a watch event map."""
        return cls(obj["type"], _kv_from_wire(obj["kv"]), kv_or_none(obj.get("prev_kv")))


@dataclass(frozen=True, slots=True)
class WatchResponse:
    """One watch message: events of one or more revisions, or a progress notification."""

    revision: int
    events: list[WatchEvent]
    progress: bool = False
    #: More history follows at once; the revision of the last event may go on in it.
    more: bool = False

    @classmethod
    def from_wire(cls, obj: dict[str, Any]) -> WatchResponse:
        """Build from a watch stream item."""
        events = [WatchEvent.from_wire(ev) for ev in obj.get("events") or ()]
        return cls(_revision(obj, None), events, bool(obj.get("progress")), bool(obj.get("more")))
