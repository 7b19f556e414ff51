"""``coord.service.*``: a service registry. An instance registers under its service's name
with an address and tags, on a lease (TTL): it disappears when the lease is not kept alive.
``discover`` lists a page of instances (optionally with a tag); ``watch`` streams them, then
every registration and departure."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import msgpack

from aspen.client import prefix_end
from aspen.errors import InvalidArgumentError
from aspen.kv import paging
from aspen.rpc.params import optional_int, optional_list, optional_str, require_int, require_str
from aspen_coord import limits, store
from aspen_coord.errors import NotHeldError, raise_typed
from aspen_coord.keys import check_name, name_of, prefix
from aspen_coord.queue import lease_params

__all__ = ["deregister", "discover", "register", "renew", "watch"]


def _instance(kv: dict[str, Any]) -> dict[str, Any]:
    record = msgpack.unpackb(kv["value"])
    return {**record, "lease": int(kv["lease"]), "revision": int(kv["mod_revision"])}


def _tags(params: dict[str, Any]) -> list[str]:
    tags = optional_list(params, "tags", max_len=limits.COORD_MAX_TAGS)
    for tag in tags:
        if not isinstance(tag, str) or not 0 < len(tag.encode()) <= limits.COORD_MAX_TAG_BYTES:
            raise InvalidArgumentError(
                f"each tag is a str of 1 to COORD_MAX_TAG_BYTES ({limits.COORD_MAX_TAG_BYTES}) "
                "bytes",
                field="tags",
            )
    return sorted(set(tags))


async def register(ctx: Any, params: dict[str, Any]) -> dict[str, Any]:
    """Register ``instance`` of service ``name`` at ``address`` with ``tags``, on ``lease``
    (or a new lease of ``ttl`` s): ``{lease, revision}``."""
    where = prefix("service", name_of(params))
    instance = check_name(params.get("instance"), "instance")
    address = require_str(params, "address", max_len=limits.COORD_MAX_ADDRESS_BYTES)
    record = {"instance": instance, "address": address, "tags": _tags(params)}
    value = msgpack.packb(record)
    if len(value) > limits.COORD_MAX_INSTANCE_BYTES:
        raise InvalidArgumentError(
            f"the instance record is {len(value)} bytes, over COORD_MAX_INSTANCE_BYTES "
            f"({limits.COORD_MAX_INSTANCE_BYTES})"
        )
    lease, ttl = lease_params(params)
    if lease == 0:
        lease = await store.lease_grant(ctx.node, ttl)
    result = await store.txn(
        ctx.node, [], [store.put_op(where + instance.encode(), value, lease=lease)]
    )
    return {"lease": lease, "revision": int(result["header"]["revision"])}


async def renew(ctx: Any, params: dict[str, Any]) -> dict[str, Any]:
    """Keep ``instance``'s registration alive: ``{ttl}`` (``not_found`` once expired)."""
    where = prefix("service", name_of(params))
    kv = await store.get(ctx.node, where + check_name(params.get("instance"), "instance").encode())
    lease = require_int(params, "lease", min=1)
    if kv is None or int(kv["lease"]) != lease:
        raise_typed(NotHeldError, "no such registration on that lease (expired?)")
    return {"ttl": await store.lease_keepalive(ctx.node, lease)}


async def deregister(ctx: Any, params: dict[str, Any]) -> dict[str, Any]:
    """Remove ``instance`` of service ``name``: ``{deleted}``."""
    where = prefix("service", name_of(params))
    key = where + check_name(params.get("instance"), "instance").encode()
    got = await ctx.node.call("kv.delete", {"key": key})
    return {"deleted": int(got["deleted"])}


async def discover(ctx: Any, params: dict[str, Any]) -> dict[str, Any]:
    """A page of service ``name``'s instances (with ``tag`` if given), after instance
    ``after``: ``{instances, more}``."""
    where = prefix("service", name_of(params))
    tag = optional_str(params, "tag", max_len=limits.COORD_MAX_TAG_BYTES)
    limit = optional_int(params, "limit", limits.COORD_MAX_LIST, min=1, max=limits.COORD_MAX_LIST)
    after = optional_str(params, "after", "", max_len=limits.COORD_MAX_NAME_BYTES) or ""
    got = await paging.page_after(ctx.node.call, where, limit=limit, after=after.encode())
    found = [_instance(kv) for kv in got["kvs"]]
    if tag is not None:
        found = [i for i in found if tag in i["tags"]]
    return {"instances": found, "more": bool(got["more"])}


async def watch(ctx: Any, params: dict[str, Any]) -> AsyncIterator[dict[str, Any]]:
    """Stream ``{instances, revision}`` (the registry now, up to COORD_MAX_LIST), then
    ``{event: "register" | "deregister", instance, revision}`` for every change."""
    name = name_of(params)
    where = prefix("service", name)
    records, _, revision = await store.collect(ctx.node, where, most=limits.COORD_MAX_LIST)
    yield {"instances": [_instance(kv) for kv in records], "revision": revision}
    spec = {"key": where, "end": prefix_end(where), "start_revision": revision + 1}
    async for item in ctx.node.stream("kv.watch", spec):
        for event in item.get("events", ()):
            kv = event["kv"]
            if event["type"] == "put":
                yield {
                    "event": "register",
                    "instance": _instance(kv),
                    "revision": kv["mod_revision"],
                }
            else:
                instance = kv["key"][len(where) :].decode()
                yield {
                    "event": "deregister",
                    "instance": {"instance": instance},
                    "revision": kv["mod_revision"],
                }
