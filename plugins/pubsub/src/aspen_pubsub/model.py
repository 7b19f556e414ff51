"""The plugin's records and their validation: names, messages, topics, the key hash."""

from __future__ import annotations

import re
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import msgpack

from aspen.errors import InvalidArgumentError
from aspen_pubsub import limits

_NAME_RE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]*")


def check_name(what: str, name: Any) -> str:
    """``name`` if it is a valid topic/group/consumer name, else ``invalid_argument``."""
    if not isinstance(name, str) or not name:
        raise InvalidArgumentError(f"{what} must be a non-empty string", field=what)
    if len(name) > limits.PUBSUB_MAX_NAME_CHARS:
        raise InvalidArgumentError(
            f"{what} {name[:40]!r}… is longer than PUBSUB_MAX_NAME_CHARS "
            f"({limits.PUBSUB_MAX_NAME_CHARS})",
            field=what,
            limit=limits.PUBSUB_MAX_NAME_CHARS,
        )
    if not _NAME_RE.fullmatch(name):
        raise InvalidArgumentError(
            f"{what} {name!r} may hold only letters, digits, '_', '.' and '-'", field=what
        )
    return name


def check_bound(field: str, what: str, value: int, bound: str) -> None:
    """Refuse ``value`` over ``limits.<bound>`` with ``invalid_argument`` naming the bound."""
    limit = getattr(limits, bound)
    if value > limit:
        raise InvalidArgumentError(
            f"{what} ({value}) exceeds {bound} ({limit})", field=field, limit=limit
        )


def partition_for(key: bytes, partitions: int) -> int:
    """The partition of a keyed message: CRC-32 of the key modulo the partition count (a
    fixed hash, the same on every node and in every process, unlike ``hash()``)."""
    return zlib.crc32(key) % partitions


def pack(value: Any) -> bytes:
    """msgpack, as every record is stored."""
    return msgpack.packb(value, use_bin_type=True)


def unpack(data: bytes) -> Any:
    """The inverse of :func:`pack`."""
    return msgpack.unpackb(data, raw=False)


@dataclass(frozen=True, slots=True)
class Topic:
    """A topic's settings (``t/<topic>``)."""

    name: str
    partitions: int
    max_messages: int = 0  #: 0: unbounded
    max_bytes: int = 0  #: 0: unbounded
    max_age: float = 0.0  #: seconds, 0: unbounded
    dedup_window: float = limits.PUBSUB_DEFAULT_DEDUP_SECONDS
    created: float = 0.0

    def record(self) -> dict[str, Any]:
        """The stored map."""
        return {
            "partitions": self.partitions,
            "max_messages": self.max_messages,
            "max_bytes": self.max_bytes,
            "max_age": self.max_age,
            "dedup_window": self.dedup_window,
            "created": self.created,
        }

    @classmethod
    def from_record(cls, name: str, record: dict[str, Any]) -> Topic:
        """The topic stored as ``record``."""
        return cls(name=name, **record)


@dataclass(slots=True)
class Head:
    """A partition's head (``h/<topic>/<p>``): the next offset, the first kept one, bytes kept."""

    next: int = 0
    first: int = 0
    bytes: int = 0

    def record(self) -> dict[str, int]:
        """The stored map."""
        return {"n": self.next, "f": self.first, "b": self.bytes}

    @classmethod
    def from_record(cls, record: dict[str, int]) -> Head:
        """The head stored as ``record``."""
        return cls(record["n"], record["f"], record["b"])


@dataclass(slots=True)
class Message:
    """One message to publish (validated)."""

    data: bytes
    key: bytes | None = None
    headers: dict[str, str] = field(default_factory=dict)
    msg_id: str | None = None

    @property
    def size(self) -> int:
        """Bytes it counts against the batch bound."""
        size = len(self.data)
        if self.key is not None:
            size += len(self.key)
        if self.headers:
            size += sum(len(k) + len(v) for k, v in self.headers.items())
        if self.msg_id is not None:
            size += len(self.msg_id)
        return size

    def stored(self, now_ms: int, packer: Callable[[Any], bytes] = pack) -> bytes:
        """The message record (``m/…``), stamped with the leader's publish time (packed by
        ``packer``: the publisher passes a reused ``msgpack.Packer``'s)."""
        record: dict[str, Any] = {"d": self.data, "t": now_ms}
        if self.key is not None:
            record["k"] = self.key
        if self.headers:
            record["h"] = self.headers
        if self.msg_id is not None:
            record["i"] = self.msg_id
        return packer(record)


def _as_bytes(what: str, value: Any) -> bytes:
    if isinstance(value, str):
        return value.encode()
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value)
    raise InvalidArgumentError(f"{what} must be bytes or str", field=what)


def parse_message(raw: Any) -> Message:
    """A :class:`Message` from a request map (``data``, ``key``, ``headers``, ``id``)."""
    if not isinstance(raw, dict):
        raise InvalidArgumentError("a message must be a map with 'data'", field="messages")
    data = raw.get("data")
    if data is None:
        raise InvalidArgumentError("missing required field 'data'", field="data")
    if type(data) is not bytes:
        data = _as_bytes("data", data)
    if len(data) > limits.PUBSUB_MAX_MESSAGE_BYTES:
        check_bound("data", "message bytes", len(data), "PUBSUB_MAX_MESSAGE_BYTES")
    key = raw.get("key")
    if key is not None:
        key = _as_bytes("key", key)
        check_bound("key", "key bytes", len(key), "PUBSUB_MAX_KEY_BYTES")
    headers = raw.get("headers")
    if headers:
        if not isinstance(headers, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in headers.items()
        ):
            raise InvalidArgumentError("headers must be a map of str to str", field="headers")
        check_bound("headers", "headers", len(headers), "PUBSUB_MAX_HEADERS")
        header_bytes = sum(len(k.encode()) + len(v.encode()) for k, v in headers.items())
        check_bound("headers", "header bytes", header_bytes, "PUBSUB_MAX_HEADER_BYTES")
        headers = dict(headers)
    else:
        headers = {}
    msg_id = raw.get("id")
    if msg_id is not None:
        if not isinstance(msg_id, str) or not msg_id or "/" in msg_id:
            raise InvalidArgumentError("id must be a non-empty string without '/'", field="id")
        check_bound("id", "id bytes", len(msg_id.encode()), "PUBSUB_MAX_MSG_ID_BYTES")
    return Message(data, key, headers, msg_id)


def delivered(
    topic: str, partition: int, offset: int, record: dict[str, Any], **extra: Any
) -> dict[str, Any]:
    """A message as consumers receive it: payload plus delivery metadata."""
    return {
        "topic": topic,
        "partition": partition,
        "offset": offset,
        "data": record["d"],
        "key": record.get("k"),
        "headers": record.get("h", {}),
        "published": record["t"] / 1000.0,
        "delivery_count": extra.pop("delivery_count", 1),
        "redelivered": extra.pop("redelivered", False),
        **extra,
    }
