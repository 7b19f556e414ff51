"""The ``pubsub.*`` RPC methods: validation, capabilities, and calls into the services.

Capabilities: ``pubsub:publish:<topic>``, ``pubsub:consume:<topic>`` (subscribe, read,
fetch, ack, stats, dead letters), ``pubsub:admin:<topic>`` (create and delete topics and
groups, claim).
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable
from typing import Any

from aspen.errors import CompareFailedError, InvalidArgumentError
from aspen.kv import paging
from aspen.plugins.types import RpcHandler
from aspen.rpc.params import (
    optional_bool,
    optional_int,
    optional_list,
    optional_str,
    require_str,
)
from aspen_pubsub import keys, limits, store
from aspen_pubsub.groups import ACK_KINDS, GroupService, gone, new_group
from aspen_pubsub.model import Topic, check_bound, check_name, delivered, parse_message, unpack
from aspen_pubsub.partitioned import PartitionedGroups, group_state
from aspen_pubsub.publisher import Publisher
from aspen_pubsub.subjects import is_pattern, literal_prefix
from aspen_pubsub.subscribe import subscription

PLUGIN = "pubsub"


def _publisher(ctx: Any) -> Publisher:
    return ctx.node.plugin_state(PLUGIN)["publisher"]


def _groups(ctx: Any) -> GroupService:
    return ctx.node.plugin_state(PLUGIN)["groups"]


def _partitioned(ctx: Any) -> PartitionedGroups:
    return ctx.node.plugin_state(PLUGIN)["partitioned"]


def _topic(params: dict[str, Any]) -> str:
    return check_name("topic", params.get("topic"))


def _group(params: dict[str, Any]) -> str:
    return check_name("group", params.get("group"))


def _float(params: dict[str, Any], name: str, default: float, most: float) -> float:
    value = params.get(name, default)
    if value is None:
        return default
    if not isinstance(value, (int, float)) or isinstance(value, bool) or not 0 <= value <= most:
        raise InvalidArgumentError(f"{name!r} must be seconds in [0, {most}]", field=name)
    return float(value)


async def require_leader(node: Any) -> None:
    """Raise ``not_leader`` (with the leader's address, so the client retries there) on a
    follower: a delete of a key nobody has is refused by a follower before proposing."""
    if not node.is_leader:
        await node.call("kv.delete", {"key": keys.PREFIX + b"leader-probe"})


# ---------------------------------------------------------------------- topics
async def topic_create(ctx: Any, params: dict[str, Any]) -> dict[str, Any]:
    """Create a topic: ``partitions`` (≤ PUBSUB_MAX_PARTITIONS), retention ``max_messages``,
    ``max_bytes``, ``max_age`` (seconds; 0: unbounded), ``dedup_window`` (seconds)."""
    name = _topic(params)
    partitions = optional_int(params, "partitions", 1, min=1)
    check_bound("partitions", "partitions", partitions, "PUBSUB_MAX_PARTITIONS")
    topic = Topic(
        name=name,
        partitions=partitions,
        max_messages=optional_int(params, "max_messages", 0, min=0, max=2**62),
        max_bytes=optional_int(params, "max_bytes", 0, min=0, max=2**62),
        max_age=_float(params, "max_age", 0.0, 10 * 365 * 86400.0),
        dedup_window=_float(
            params,
            "dedup_window",
            limits.PUBSUB_DEFAULT_DEDUP_SECONDS,
            limits.PUBSUB_MAX_DEDUP_SECONDS,
        ),
        created=time.time(),
    )
    key = keys.topic(name)
    if await store.txn(ctx.node, [store.same(key, 0)], [store.put(key, topic.record())]) is None:
        raise CompareFailedError(f"topic {name!r} already exists", topic=name)
    return {"topic": name, **topic.record()}


async def topic_delete(ctx: Any, params: dict[str, Any]) -> dict[str, Any]:
    """Delete a topic, its messages and its groups."""
    name = _topic(params)
    await store.topic(ctx.node, name)
    spans = keys.topic_prefixes(name)
    head_spans = [spans[0], spans[1], spans[4]]  # topic, heads, groups: gone in one entry
    await store.txn(ctx.node, [], [store.delete(a, b) for a, b in head_spans])
    for start, end in spans[2:4] + spans[5:]:
        await _delete_span(ctx.node, start, end)
    _publisher(ctx).forget(name)
    _groups(ctx).forget(name)
    return {"deleted": name}


async def _delete_span(node: Any, start: bytes, end: bytes) -> None:
    """Delete ``[start, end)`` page by page (each page one bounded entry)."""
    while True:
        got = await node.call(
            "kv.range", {"key": start, "end": end, "limit": 10_000, "keys_only": True}
        )
        if not got["kvs"]:
            return
        last = got["kvs"][-1]["key"]
        await node.call("kv.delete", {"key": start, "end": last + b"\0"})
        if not got["more"]:
            return
        start = last + b"\0"


async def topics(ctx: Any, params: dict[str, Any]) -> dict[str, Any]:
    """One page of topics: ``limit``, ``after`` (a name); ``{topics, more}``."""
    limit = optional_int(params, "limit", 100, min=1, max=limits.PUBSUB_MAX_LIST)
    after = optional_str(params, "after", "", max_len=limits.PUBSUB_MAX_NAME_CHARS) or ""
    page = await paging.page_after(ctx.node.call, keys.TOPICS, limit=limit, after=after.encode())
    return {
        "topics": [
            {"topic": kv["key"][len(keys.TOPICS) :].decode(), **unpack(kv["value"])}
            for kv in page["kvs"]
        ],
        "more": bool(page["more"]),
    }


# ---------------------------------------------------------------------- publish
async def publish(ctx: Any, params: dict[str, Any]) -> dict[str, Any]:
    """Publish one message (``data``, ``key``, ``headers``, ``id``) or a batch
    (``messages``: a list of those); ``{partition, offset}`` or ``{results: [...]}``."""
    name = _topic(params)
    batch = "messages" in params
    raw = (
        optional_list(params, "messages", max_len=limits.PUBSUB_MAX_BATCH_MESSAGES)
        if batch
        else [params]
    )
    if not raw:
        raise InvalidArgumentError("'messages' is empty", field="messages")
    messages = [parse_message(m) for m in raw]
    size = sum(m.size for m in messages)
    check_bound("messages", "batch bytes", size, "PUBSUB_MAX_BATCH_BYTES")
    await require_leader(ctx.node)
    results = await _publisher(ctx).publish(name, messages, size)
    return {"results": results} if batch else results[0]


# ---------------------------------------------------------------------- reading
async def subscribe(ctx: Any, params: dict[str, Any]) -> AsyncIterator[dict[str, Any]]:
    """Stream a topic's messages (or those of the topics a pattern such as ``orders.*`` or
    ``orders.>`` matches when it starts) in order per partition, then new ones as they commit:
    ``from`` = ``start`` | ``end`` | ``time`` (with ``time``, seconds) or ``offsets``
    (``{"<partition>": next offset}``, to resume); ``max`` ends the stream after that many.
    Each item is ``{messages: [...]}``; the first, empty one says the subscription is
    registered (what commits from then on is delivered)."""
    name = params.get("topic")
    if not (isinstance(name, str) and is_pattern(name)):
        name = _topic(params)
    start = optional_str(params, "from", "start", choices=("start", "end", "time"))
    offsets = params.get("offsets") or {}
    if not isinstance(offsets, dict):
        raise InvalidArgumentError("'offsets' must map partition to offset", field="offsets")
    at = _float(params, "time", 0.0, 2**40)
    most = optional_int(params, "max", 0, min=0, max=2**62)
    async for page in subscription(ctx.node, name, str(start), offsets, at, most, _publisher(ctx)):
        yield {"messages": page}


async def read(ctx: Any, params: dict[str, Any]) -> dict[str, Any]:
    """One page of a partition from ``offset``: ``{messages, next}`` (``next``: where to go on)."""
    name = _topic(params)
    topic, _ = await store.topic(ctx.node, name)
    partition = optional_int(params, "partition", 0, min=0, max=topic.partitions - 1)
    offset = optional_int(params, "offset", 0, min=0, max=2**62)
    limit = optional_int(params, "limit", 100, min=1, max=limits.PUBSUB_MAX_FETCH)
    found = await store.messages(ctx.node, name, partition, offset, limit)
    return {
        "messages": [delivered(name, partition, o, r) for o, r in found],
        "next": found[-1][0] + 1 if found else offset,
    }


# ---------------------------------------------------------------------- groups
async def group_create(ctx: Any, params: dict[str, Any]) -> dict[str, Any]:
    """Create a group: ``mode`` competing | partitioned, ``ack_wait`` (s), ``max_deliver``,
    ``max_ack_pending``, ``start`` = start | end (where its cursors begin)."""
    name, group = _topic(params), _group(params)
    mode = require_str(params, "mode", choices=("competing", "partitioned"))
    start = optional_str(params, "start", "start", choices=("start", "end"))
    topic, topic_revision = await store.topic(ctx.node, name)
    cursors = []
    for partition in range(topic.partitions):
        head, _ = await store.head(ctx.node, name, partition)
        cursors.append(head.first if start == "start" else head.next)
    record = new_group(
        group,
        mode,
        cursors,
        ack_wait=_float(
            params,
            "ack_wait",
            limits.PUBSUB_DEFAULT_ACK_WAIT_SECONDS,
            limits.PUBSUB_MAX_ACK_WAIT_SECONDS,
        )
        or limits.PUBSUB_DEFAULT_ACK_WAIT_SECONDS,
        max_deliver=optional_int(
            params,
            "max_deliver",
            limits.PUBSUB_DEFAULT_MAX_DELIVER,
            min=1,
            max=limits.PUBSUB_MAX_MAX_DELIVER,
        ),
        max_ack_pending=optional_int(
            params,
            "max_ack_pending",
            limits.PUBSUB_DEFAULT_MAX_ACK_PENDING,
            min=1,
            max=limits.PUBSUB_MAX_MAX_ACK_PENDING,
        ),
        session_timeout=_float(
            params,
            "session_timeout",
            limits.PUBSUB_DEFAULT_SESSION_SECONDS,
            limits.PUBSUB_MAX_SESSION_SECONDS,
        ),
    )
    key = keys.group(name, group)
    compare = [store.same(keys.topic(name), topic_revision), store.same(key, 0)]
    if await store.txn(ctx.node, compare, [store.put(key, record)]) is None:
        existing, _ = await store.get(ctx.node, key)
        why = "is being deleted (state Dead)" if existing and existing.get("deleting") else ""
        raise CompareFailedError(
            f"group {group!r} of topic {name!r} {why or 'already exists'}", group=group
        )
    return {"topic": name, "group": group, "mode": mode}


async def group_delete(ctx: Any, params: dict[str, Any]) -> dict[str, Any]:
    """Delete a group, its pending deliveries and dead letters. As in Kafka, a group with
    members is refused (``force``: delete it anyway; its members are told it is Dead). The
    group is first marked Dead (one entry: from then on it answers ``not_found``, state
    Dead, and stats report Dead), then its records go; a deletion cut short (a leader
    crash) leaves it Dead until deleted again. A later create starts afresh."""
    name, group = _topic(params), _group(params)
    force = optional_bool(params, "force", False)

    async def mark(state: Any, change: Any) -> None:
        record = change.record
        if record["members"] and not (force or record.get("deleting")):
            raise CompareFailedError(
                f"group {group!r} of topic {name!r} has {len(record['members'])} members "
                "(Kafka's NON_EMPTY_GROUP): they leave first, or delete with force",
                group=group,
                members=len(record["members"]),
            )
        record["deleting"] = True
        record["members"] = {}
        record["owners"] = record["target"] = [None] * len(record["owners"])

    await _groups(ctx).update(name, group, mark, dead_ok=True)
    for prefix in (keys.pending_prefix(name, group), keys.dead_prefix(name, group)):
        await _delete_span(ctx.node, prefix, prefix + b"\xff")
    await ctx.node.call("kv.delete", {"key": keys.group(name, group)})
    _groups(ctx).forget(name)
    return {"deleted": group}


async def fetch(ctx: Any, params: dict[str, Any]) -> dict[str, Any]:
    """The next messages for ``consumer`` of a competing group (``max``, ``wait`` seconds
    to wait for one; ``acks``: deliveries to acknowledge first, in the same entry):
    ``{messages}``, each with ``delivery_count`` and ``redelivered``."""
    name, group = _topic(params), _group(params)
    consumer = check_name("consumer", params.get("consumer"))
    most = optional_int(params, "max", 1, min=1, max=limits.PUBSUB_MAX_FETCH)
    wait = _float(params, "wait", 0.0, limits.PUBSUB_MAX_WAIT_SECONDS)
    acks = _positions(params, "acks", 3)
    await require_leader(ctx.node)
    got = await _groups(ctx).fetch(name, group, consumer, most, wait, acks)
    return {"messages": got}


def _positions(params: dict[str, Any], name: str, width: int) -> list[tuple[Any, ...]]:
    raw = optional_list(params, name, max_len=limits.PUBSUB_MAX_ACKS)
    out = []
    for item in raw:
        ok = isinstance(item, (list, tuple)) and len(item) in (2, 3)
        ok = ok and all(isinstance(x, int) and x >= 0 for x in item if x is not None)
        if not ok:
            raise InvalidArgumentError(
                f"each of {name!r} must be [partition, offset] or [partition, offset, delivery]",
                field=name,
            )
        item = tuple(item) + (None,) * (width - len(item))
        out.append(item[:width])
    return out


async def ack(ctx: Any, params: dict[str, Any]) -> dict[str, Any]:
    """Settle deliveries of ``consumer``: ``acks`` = ``[[partition, offset, delivery]]``;
    ``kind`` = ack | nak (again after ``delay`` s) | progress (ack wait restarts) | term."""
    name, group = _topic(params), _group(params)
    consumer = check_name("consumer", params.get("consumer"))
    kind = optional_str(params, "kind", "ack", choices=ACK_KINDS) or "ack"
    delay = _float(params, "delay", 0.0, limits.PUBSUB_MAX_DELAY_SECONDS)
    acks = _positions(params, "acks", 3)
    if not acks:
        raise InvalidArgumentError("'acks' is empty", field="acks")
    await require_leader(ctx.node)
    done = await _groups(ctx).ack(name, group, consumer, acks, kind, delay)  # type: ignore[arg-type]
    return {"settled": done}


async def claim(ctx: Any, params: dict[str, Any]) -> dict[str, Any]:
    """Give pending deliveries to ``consumer`` now: ``positions`` (``[[p, o]]``) or every
    one of ``from_consumer``; ``{messages}`` (each a new delivery)."""
    name, group = _topic(params), _group(params)
    consumer = check_name("consumer", params.get("consumer"))
    positions = [(p, o) for p, o in _positions(params, "positions", 2)]
    source = params.get("from_consumer")
    if not positions:
        source = check_name("from_consumer", source)
    await require_leader(ctx.node)
    out = await _groups(ctx).claim(name, group, consumer, positions, source)
    return {"messages": out}


async def dead_letters(ctx: Any, params: dict[str, Any]) -> dict[str, Any]:
    """One page of a group's dead letters (``limit``, ``after`` = ``"p/offset"``)."""
    name, group = _topic(params), _group(params)
    limit = optional_int(params, "limit", 100, min=1, max=limits.PUBSUB_MAX_DEAD_LIST)
    after = optional_str(params, "after", "", max_len=64) or ""
    prefix = keys.dead_prefix(name, group)
    key_after = b""
    if after:
        part_text, _, offset_text = after.partition("/")
        if not (part_text.isdigit() and offset_text.isdigit()):
            raise InvalidArgumentError("'after' must be 'partition/offset'", field="after")
        key_after = b"%04d/%016x" % (int(part_text), int(offset_text))
    page = await paging.page_after(ctx.node.call, prefix, limit=limit, after=key_after)
    out = []
    for kv in page["kvs"]:
        partition, offset = keys.position(kv["key"])
        record = unpack(kv["value"])
        message = await store.message(ctx.node, name, partition, offset)
        entry = {"partition": partition, "offset": offset, "deliveries": record["n"]}
        entry.update(consumer=record["c"], time=record["t"] / 1000.0)
        entry["data"] = None if message is None else message["d"]
        out.append(entry)
    return {"dead_letters": out, "more": bool(page["more"])}


# ---------------------------------------------------------------------- stats
async def stats(ctx: Any, params: dict[str, Any]) -> dict[str, Any]:
    """A topic's messages, bytes, per-partition offsets and de-duplication records
    (``dedup_records``: at most about one window's ids); with ``group``, its lag,
    pending, redeliveries, dead letters. ``publisher``: the answering node's group-commit
    counters since it started (entries, messages, requeued)."""
    name = _topic(params)
    topic, _ = await store.topic(ctx.node, name)
    parts = []
    for partition in range(topic.partitions):
        head, _ = await store.head(ctx.node, name, partition)
        parts.append(
            {
                "partition": partition,
                "first_offset": head.first,
                "end_offset": head.next,
                "messages": head.next - head.first,
                "bytes": head.bytes,
            }
        )
    out: dict[str, Any] = {
        "topic": name,
        **topic.record(),
        "messages": sum(p["messages"] for p in parts),
        "bytes": sum(p["bytes"] for p in parts),
        "partition_offsets": parts,
        "dedup_records": await store.count(ctx.node, keys.dedups(name))
        + await store.count(ctx.node, keys.legacy_dedups(name)),
        "publisher": _publisher(ctx).figures(),
    }
    group = params.get("group")
    if group is not None:
        group = check_name("group", group)
        record, _ = await store.get(ctx.node, keys.group(name, group))
        if record is None:
            raise gone(name, group)
        undelivered = sum(
            p["end_offset"] - max(c, p["first_offset"])
            for p, c in zip(parts, record["cursors"], strict=False)
        )
        out["group"] = {
            "group": group,
            "mode": record["mode"],
            "ack_wait": record["ack_wait"],
            "max_deliver": record["max_deliver"],
            "max_ack_pending": record["max_ack_pending"],
            "cursors": record["cursors"],
            "undelivered": undelivered,
            "pending": record["pending"],
            "lag": undelivered + record["pending"],
            "delivered": record["delivered"],
            "acked": record["acked"],
            "redeliveries": record["redeliveries"],
            "dead_letters": record["dead"],
            "terminated": record["terminated"],
            "members": [
                {
                    "member": member,
                    "epoch": info["epoch"],
                    "static": info["static"],
                    "partitions": [p for p, o in enumerate(record["owners"]) if o == member],
                }
                for member, info in sorted(record["members"].items())
            ],
        }
        if record["mode"] == "partitioned" or record.get("deleting"):
            out["group"]["state"] = group_state(record)
            out["group"]["owners"] = record["owners"]
    return out


# ---------------------------------------------------------------------- partitioned groups
def _member(params: dict[str, Any]) -> tuple[str, str, str, int]:
    member = require_str(params, "member", max_len=limits.PUBSUB_MAX_NAME_CHARS * 2)
    epoch = optional_int(params, "epoch", 0, min=0, max=2**62)
    return _topic(params), _group(params), member, epoch


async def join(ctx: Any, params: dict[str, Any]) -> dict[str, Any]:
    """Join a partitioned group as ``consumer`` (``instance``: a static id that keeps its
    partitions across a quick restart): ``{member, epoch, assigned, revoke, state}``."""
    name, group = _topic(params), _group(params)
    consumer = check_name("consumer", params.get("consumer"))
    instance = params.get("instance")
    if instance is not None:
        instance = check_name("instance", instance)
    await require_leader(ctx.node)
    return await _partitioned(ctx).join(name, group, consumer, instance)


async def heartbeat(ctx: Any, params: dict[str, Any]) -> dict[str, Any]:
    """A member is alive and still owns ``owned`` (what it left out is released): its
    assignment (``assigned``: partition and committed offset) and what to ``revoke``."""
    name, group, member, epoch = _member(params)
    owned = optional_list(params, "owned", max_len=limits.PUBSUB_MAX_PARTITIONS)
    if not all(isinstance(p, int) for p in owned):
        raise InvalidArgumentError("'owned' must list partition numbers", field="owned")
    await require_leader(ctx.node)
    return await _partitioned(ctx).heartbeat(name, group, member, epoch, owned)


async def commit(ctx: Any, params: dict[str, Any]) -> dict[str, Any]:
    """Commit next offsets (``offsets``: ``{"<partition>": offset}``) of partitions the
    member owns; a stale epoch is fenced."""
    name, group, member, epoch = _member(params)
    raw = params.get("offsets")
    if not isinstance(raw, dict) or len(raw) > limits.PUBSUB_MAX_PARTITIONS:
        raise InvalidArgumentError("'offsets' must map partition to offset", field="offsets")
    try:
        offsets = {int(p): int(o) for p, o in raw.items()}
    except (TypeError, ValueError) as exc:
        raise InvalidArgumentError(
            "'offsets' must map partition to offset", field="offsets"
        ) from exc
    await require_leader(ctx.node)
    return await _partitioned(ctx).commit(name, group, member, epoch, offsets)


async def leave(ctx: Any, params: dict[str, Any]) -> dict[str, Any]:
    """Leave a partitioned group: its partitions are released at once."""
    name, group, member, epoch = _member(params)
    await require_leader(ctx.node)
    return await _partitioned(ctx).leave(name, group, member, epoch)


# ---------------------------------------------------------------------- table
def _scoped(operation: str) -> Callable[[dict[str, Any]], list[str]]:
    def scope(params: dict[str, Any]) -> list[str]:
        topic = params.get("topic", "")
        if isinstance(topic, str) and is_pattern(topic):  # every topic it may match
            return [f"pubsub:{operation}:{literal_prefix(topic)}*"]
        return [f"pubsub:{operation}:{topic}"]

    return scope


#: Each method and the operation its capability names (``pubsub:<operation>:<topic>``).
_TABLE: list[tuple[str, Any, str]] = [
    ("topic_create", topic_create, "admin"),
    ("topic_delete", topic_delete, "admin"),
    ("topics", topics, "admin"),
    ("publish", publish, "publish"),
    ("subscribe", subscribe, "consume"),
    ("read", read, "consume"),
    ("group_create", group_create, "admin"),
    ("group_delete", group_delete, "admin"),
    ("fetch", fetch, "consume"),
    ("ack", ack, "consume"),
    ("claim", claim, "admin"),
    ("dead_letters", dead_letters, "consume"),
    ("stats", stats, "consume"),
    ("join", join, "consume"),
    ("heartbeat", heartbeat, "consume"),
    ("commit", commit, "consume"),
    ("leave", leave, "consume"),
]


def rpc_handlers() -> list[RpcHandler]:
    """Every ``pubsub.*`` method, each declaring ``pubsub:<operation>`` scoped by topic
    (``pubsub.topics`` needs ``pubsub:admin`` on every topic)."""
    return [
        RpcHandler(
            f"pubsub.{name}",
            func,
            doc=(func.__doc__ or "").strip().splitlines()[0],
            capability=f"pubsub:{operation}",
            scope=None if name == "topics" else _scoped(operation),
            streaming=name == "subscribe",
        )
        for name, func, operation in _TABLE
    ]


__all__ = ["PLUGIN", "require_leader", "rpc_handlers"]
