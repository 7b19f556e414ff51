"""A cluster repository's changes: a small index record per change in KV, the bytes of
any change over ``INLINE_CHANGE_BYTES`` in the core blob store.

The record under ``/_aspen/pijul/<repo>/c/<HASH>`` is msgpack ``{"size", "data"}`` (the
change inline) or ``{"size", "blob"}`` (the BLAKE3 hash of a blob pinned
``pijul/<repo>/<HASH>``). Whatever holds the bytes, they are verified against the change
hash when they are stored and every time they are read, so a record pointing at other
bytes, or bytes damaged anywhere, is refused with :class:`CorruptChangeError`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import anyio
import msgpack

from aspen_pijul import limits
from aspen_pijul.errors import CorruptChangeError, TooLargeError, UnknownChangeError
from aspen_pijul.model.change import Change

__all__ = [
    "ChangeRecord",
    "check_size",
    "majority",
    "pin_name",
    "put_blob",
    "read_blob",
    "read_change",
    "record_for",
    "verify",
]


@dataclass(frozen=True)
class ChangeRecord:
    """The KV index record of one stored change."""

    size: int
    data: bytes | None = None
    blob: str | None = None

    def to_value(self) -> bytes:
        """The KV value (msgpack)."""
        fields = {"size": self.size, "data": self.data, "blob": self.blob}
        return msgpack.packb({k: v for k, v in fields.items() if v is not None})

    @classmethod
    def from_value(cls, value: bytes) -> ChangeRecord:
        """Decode a value written by :meth:`to_value`."""
        try:
            d = msgpack.unpackb(value, raw=False)
            return cls(size=int(d["size"]), data=d.get("data"), blob=d.get("blob"))
        except Exception as exc:
            raise CorruptChangeError(f"bad change record: {exc}") from exc


def pin_name(repo: str, h: str) -> str:
    """The blob pin that keeps change ``h`` of ``repo``."""
    return f"pijul/{repo}/{h}"


def check_size(size: int) -> None:
    """Refuse a change of ``size`` bytes over ``MAX_CLUSTER_CHANGE_BYTES``."""
    if size > limits.MAX_CLUSTER_CHANGE_BYTES:
        raise TooLargeError(
            f"change of {size} bytes is over "
            f"MAX_CLUSTER_CHANGE_BYTES={limits.MAX_CLUSTER_CHANGE_BYTES}"
        )


async def verify(data: bytes, expected: str | None = None) -> Change:
    """Parse and verify change bytes off the event loop (against ``expected`` if given)."""
    check_size(len(data))
    return await anyio.to_thread.run_sync(Change.from_bytes, data, expected)


async def read_blob(node: Any, digest: str, size: int) -> bytes:
    """The bytes of blob ``digest`` (each piece verified by the blob store), refused if
    they are more than ``size`` or ``MAX_CLUSTER_CHANGE_BYTES``."""
    bound = min(size, limits.MAX_CLUSTER_CHANGE_BYTES)
    parts: list[bytes] = []
    total = 0
    async for piece in node.blobs.open(digest):
        total += len(piece)
        if total > bound:
            raise CorruptChangeError(f"blob {digest} holds more than its change's {bound} bytes")
        parts.append(piece)
    return b"".join(parts)


async def majority(node: Any) -> int:
    """How many nodes are a majority of the cluster's voters."""
    voters = (await node.call("cluster.status", {}))["conf"]["voters"]
    return len(voters) // 2 + 1


async def put_blob(node: Any, data: bytes, pin: str) -> str:
    """Put ``data`` as a blob pinned ``pin``; its hash (``node.blobs.put_durable``: at the
    cluster's replica count, or a majority of the voters while members are down)."""
    return str((await node.blobs.put_durable(data, pin=pin)).hash)


async def record_for(node: Any, repo: str, change: Change, data: bytes) -> ChangeRecord:
    """The record of verified ``data``: inline if small, else the bytes put (pinned) in
    the blob store first."""
    if len(data) <= limits.INLINE_CHANGE_BYTES:
        return ChangeRecord(size=len(data), data=data)
    digest = await put_blob(node, data, pin_name(repo, change.hash))
    return ChangeRecord(size=len(data), blob=digest)


async def read_change(node: Any, key: bytes, repo: str, h: str) -> Change:
    """Change ``h``, from its record at ``key`` (and its blob), verified."""
    kvs = (await node.call("kv.range", {"key": key}))["kvs"]
    if not kvs:
        raise UnknownChangeError(f"repository {repo!r} has no change {h}")
    record = ChangeRecord.from_value(kvs[0]["value"])
    data = record.data
    if data is None:
        data = await read_blob(node, str(record.blob), record.size)
    return await verify(data, h)
