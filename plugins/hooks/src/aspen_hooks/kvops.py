"""Small helpers over the node's in-process KV methods (``kv.range``, ``kv.txn``), so the
rest of the plugin reads as what it does rather than as request maps."""

from __future__ import annotations

from typing import Any

import msgpack

from aspen.client import prefix_end
from aspen.kv import paging

__all__ = [
    "cmp_create",
    "cmp_mod",
    "decoded",
    "delete_op",
    "delete_prefix_op",
    "get",
    "page",
    "put_op",
    "revision",
    "scan",
    "txn",
]


async def get(node: Any, key: bytes, *, serializable: bool = False) -> dict[str, Any] | None:
    """The record of ``key`` (``kv`` map with ``value`` msgpack-decoded), or ``None``."""
    got = await node.call("kv.range", {"key": key, "serializable": serializable})
    if not got["kvs"]:
        return None
    kv = dict(got["kvs"][0])
    kv["value"] = msgpack.unpackb(kv["value"])
    return kv


def decoded(kv: dict[str, Any]) -> dict[str, Any]:
    """A wire ``kv`` map with its value msgpack-decoded."""
    record = dict(kv)
    record["value"] = msgpack.unpackb(kv["value"])
    return record


async def scan(node: Any, prefix: bytes, *, most: int) -> tuple[list[dict[str, Any]], int]:
    """The records under ``prefix`` (values decoded), at most ``most`` (a bound of the
    plugin's), read page by page at one revision; and that revision."""
    records, _, revision = await paging.collect(node.call, prefix, most=most, local=True)
    return [decoded(kv) for kv in records], revision


async def page(
    node: Any, prefix: bytes, *, limit: int, after: str = ""
) -> tuple[list[dict[str, Any]], bool]:
    """One page of a listing (values decoded): up to ``limit`` records under ``prefix``
    after the name ``after``, and whether more follow (see :func:`aspen.kv.paging.page_after`)."""
    got = await paging.page_after(node.call, prefix, limit=limit, after=after.encode())
    return [decoded(kv) for kv in got["kvs"]], bool(got["more"])


async def revision(node: Any, *, serializable: bool = False) -> int:
    """The store's current revision (linearizable unless ``serializable``)."""
    params = {"key": b"\0", "limit": 1, "count_only": True, "serializable": serializable}
    got = await node.call("kv.range", params)
    return got["header"]["revision"]


def cmp_create(key: bytes, value: int) -> dict[str, Any]:
    """Compare: ``key``'s create revision equals ``value`` (0 = the key is absent)."""
    return {"key": key, "target": "create_revision", "op": "==", "value": value}


def cmp_mod(key: bytes, value: int) -> dict[str, Any]:
    """Compare: ``key``'s mod revision equals ``value``."""
    return {"key": key, "target": "mod_revision", "op": "==", "value": value}


def put_op(key: bytes, value: Any, *, lease: int = 0) -> dict[str, Any]:
    """Txn op: put ``value`` (msgpack-encoded) at ``key``."""
    return {"put": {"key": key, "value": msgpack.packb(value), "lease": lease}}


def delete_op(key: bytes) -> dict[str, Any]:
    """Txn op: delete ``key``."""
    return {"delete": {"key": key}}


def delete_prefix_op(prefix: bytes) -> dict[str, Any]:
    """Txn op: delete every key under ``prefix``."""
    return {"delete": {"key": prefix, "end": prefix_end(prefix)}}


async def txn(
    node: Any,
    compare: list[dict[str, Any]],
    success: list[dict[str, Any]],
    failure: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """Run one transaction; returns ``{header, succeeded, responses}``."""
    return await node.call(
        "kv.txn", {"compare": compare, "success": success, "failure": failure or []}
    )
