"""Reads of the plugin's records over the node's in-process KV methods, and the request
maps of the writes (``kv.txn`` ops and compares)."""

from __future__ import annotations

from typing import Any

from aspen.client import prefix_end
from aspen.errors import NotFoundError
from aspen_pubsub import keys
from aspen_pubsub.model import Head, Topic, pack, unpack


async def get(node: Any, key: bytes, *, local: bool = False) -> tuple[Any, int]:
    """``(decoded value, mod_revision)`` of ``key``, ``(None, 0)`` when absent (``local``:
    a serializable read of this node's state, for what never changes once written)."""
    got = await node.call("kv.range", {"key": key, "serializable": local})
    if not got["kvs"]:
        return None, 0
    kv = got["kvs"][0]
    return unpack(kv["value"]), kv["mod_revision"]


async def read_range(
    node: Any, start: bytes, end: bytes, limit: int, *, local: bool = False
) -> list[dict[str, Any]]:
    """Up to ``limit`` key-values in ``[start, end)`` (one page: costs what it returns)."""
    got = await node.call(
        "kv.range", {"key": start, "end": end, "limit": limit, "serializable": local}
    )
    return list(got["kvs"])


async def count(node: Any, prefix: bytes) -> int:
    """How many keys start with ``prefix`` (a read of them all)."""
    got = await node.call(
        "kv.range", {"key": prefix, "end": prefix_end(prefix), "count_only": True}
    )
    return int(got.get("count") or 0)


async def topic(node: Any, name: str) -> tuple[Topic, int]:
    """The topic ``name`` and its mod_revision; ``not_found`` if it does not exist."""
    record, revision = await get(node, keys.topic(name))
    if record is None:
        raise NotFoundError(f"topic {name!r} does not exist", topic=name)
    return Topic.from_record(name, record), revision


async def head(node: Any, name: str, partition: int) -> tuple[Head, int]:
    """A partition's head and its mod_revision (a new partition: empty head, 0)."""
    record, revision = await get(node, keys.head(name, partition))
    return (Head() if record is None else Head.from_record(record)), revision


def segment(key: bytes, value: bytes) -> list[tuple[int, bytes]]:
    """``(offset, packed message)`` of one stored record: a segment (the consecutive
    messages one entry added to a partition, a list keyed by its LAST offset) or, as
    written before segments, a single message (a map)."""
    last = keys.offset_of(key)
    record = unpack(value)
    if not isinstance(record, list):
        return [(last, value)]
    first = last - len(record) + 1
    return [(first + i, blob) for i, blob in enumerate(record)]


async def segments(
    node: Any, name: str, partition: int, offset: int, most: int
) -> list[tuple[bytes, list[tuple[int, bytes]]]]:
    """Whole segments of a partition, from the one holding ``offset`` (or the first after
    it), until they hold at least ``most`` messages at or after ``offset``: ``(key,
    [(offset, packed message)])``. Pages grow from 2 segments (1 for one message): a read costs
    what it returns whether entries held one message or hundreds.

    A serializable read of this node: messages never change once written (retention only
    removes the oldest) and are applied in order, so a node that lags returns fewer, never
    different ones (a leader has applied every publish it answered; a subscriber on a
    follower gets the rest from its watch)."""
    start = keys.message(name, partition, offset)
    end = keys.messages(name, partition) + b"\xff"
    out: list[tuple[bytes, list[tuple[int, bytes]]]] = []
    count, page = 0, min(2, most)
    while count < most:
        found = await read_range(node, start, end, page, local=True)
        for kv in found:
            held = segment(kv["key"], kv["value"])
            out.append((kv["key"], held))
            count += sum(1 for o, _ in held if o >= offset)
        if len(found) < page:
            break
        start = found[-1]["key"] + b"\0"
        page = min(page * 2, max(2, most - count))
    return out


async def messages(
    node: Any, name: str, partition: int, offset: int, limit: int
) -> list[tuple[int, dict[str, Any]]]:
    """Up to ``limit`` messages of a partition from ``offset`` on: ``(offset, record)``
    (see :func:`segments`)."""
    out: list[tuple[int, dict[str, Any]]] = []
    for _, held in await segments(node, name, partition, offset, limit):
        for at, blob in held:
            if at >= offset and len(out) < limit:
                out.append((at, unpack(blob)))
    return out


async def message(node: Any, name: str, partition: int, offset: int) -> dict[str, Any] | None:
    """The message at ``offset`` (``None``: removed by retention, or not yet applied here)."""
    found = await messages(node, name, partition, offset, 1)
    return found[0][1] if found and found[0][0] == offset else None


async def txn(
    node: Any, compare: list[dict[str, Any]], success: list[dict[str, Any]]
) -> int | None:
    """Propose one transaction (one Raft entry): the revision its writes got, or ``None``
    if a compare failed (nothing was written)."""
    answer = await node.call("kv.txn", {"compare": compare, "success": success, "failure": []})
    return int(answer["header"]["revision"]) if answer["succeeded"] else None


def put(key: bytes, value: Any) -> dict[str, Any]:
    """A txn put of ``value`` (msgpack-encoded unless bytes)."""
    return {"put": {"key": key, "value": value if isinstance(value, bytes) else pack(value)}}


def delete(key: bytes, end: bytes | None = None) -> dict[str, Any]:
    """A txn delete of ``key`` (or ``[key, end)``)."""
    return {"delete": {"key": key} if end is None else {"key": key, "end": end}}


def same(key: bytes, mod_revision: int) -> dict[str, Any]:
    """A compare: ``key`` is still at ``mod_revision`` (0: still absent)."""
    return {"key": key, "target": "mod_revision", "op": "==", "value": mod_revision}
