"""Small helpers over the node's in-process KV and lease methods, so the primitives read
as what they do rather than as request maps. Every call goes through ``node.call`` (on a
follower a write raises ``not_leader`` and the client retries the whole request at the
leader, which is safe: the primitives are written so that a retry is idempotent)."""

from __future__ import annotations

import contextlib
import time
from typing import Any

import anyio

from aspen.client import prefix_end
from aspen.errors import AspenError, NotFoundError
from aspen.kv import paging

__all__ = [
    "Deadline",
    "cmp",
    "collect",
    "delete_op",
    "get",
    "keep_alive",
    "lease_grant",
    "lease_keepalive",
    "lease_revoke",
    "put_op",
    "range_op",
    "swap",
    "txn",
    "wait_for_change",
]


class Deadline:
    """A point in monotonic time (``seconds`` from now); ``None`` seconds: no wait at all."""

    def __init__(self, seconds: float) -> None:
        self.at = time.monotonic() + seconds

    def left(self) -> float:
        """Seconds left (0 once passed)."""
        return max(0.0, self.at - time.monotonic())


async def get(node: Any, key: bytes) -> dict[str, Any] | None:
    """The record of ``key`` (linearizable read), or ``None``."""
    got = await node.call("kv.range", {"key": key})
    return got["kvs"][0] if got["kvs"] else None


async def collect(node: Any, prefix: bytes, *, most: int) -> tuple[list[dict[str, Any]], bool, int]:
    """The records under ``prefix`` (at most ``most``) at one revision: (records,
    truncated, revision)."""
    records, truncated, revision = await paging.collect(node.call, prefix, most=most, local=True)
    return list(records), bool(truncated), int(revision)


def cmp(
    key: bytes, target: str, op: str, value: Any, *, end: bytes | None = None
) -> dict[str, Any]:
    """A txn compare."""
    compare = {"key": key, "target": target, "op": op, "value": value}
    if end is not None:
        compare["end"] = end
    return compare


def put_op(key: bytes, value: bytes, *, lease: int = 0) -> dict[str, Any]:
    """Txn op: put ``value`` at ``key`` (attached to ``lease`` when non-zero)."""
    return {"put": {"key": key, "value": value, "lease": lease}}


def delete_op(key: bytes, *, prefix: bool = False) -> dict[str, Any]:
    """Txn op: delete ``key`` (every key under it with ``prefix``)."""
    op: dict[str, Any] = {"key": key}
    if prefix:
        op["end"] = prefix_end(key)
    return {"delete": op}


def range_op(key: bytes) -> dict[str, Any]:
    """Txn op: read ``key``."""
    return {"range": {"key": key}}


async def txn(
    node: Any,
    compare: list[dict[str, Any]],
    success: list[dict[str, Any]],
    failure: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """Run one transaction; ``{header, succeeded, responses}``."""
    params = {"compare": compare, "success": success, "failure": failure or []}
    return await node.call("kv.txn", params)


async def swap(
    node: Any, key: bytes, mod_revision: int, value: bytes
) -> tuple[bool, dict[str, Any] | None, int]:
    """Put ``value`` at ``key`` only if its ``mod_revision`` is still the one read (0:
    absent): (whether it did, the current record when it did not, the txn's revision)."""
    result = await txn(
        node, [cmp(key, "mod_revision", "==", mod_revision)], [put_op(key, value)], [range_op(key)]
    )
    revision = int(result["header"]["revision"])
    if result["succeeded"]:
        return True, None, revision
    kvs = result["responses"][0]["range"]["kvs"]
    return False, (kvs[0] if kvs else None), revision


async def lease_grant(node: Any, ttl: int) -> int:
    """A new lease of ``ttl`` seconds; its id."""
    return int((await node.call("lease.grant", {"ttl": ttl}))["id"])


async def lease_keepalive(node: Any, lease: int) -> int:
    """Refresh ``lease``; its TTL (``not_found`` once expired)."""
    return int((await node.call("lease.keepalive", {"id": lease}))["ttl"])


async def keep_alive(node: Any, lease: int) -> None:
    """Refresh ``lease`` every third of its TTL until cancelled (or it is gone)."""
    while True:
        try:
            ttl = await lease_keepalive(node, lease)
        except AspenError:
            return  # expired or revoked: the waiter finds its entry gone
        await anyio.sleep(max(0.2, ttl / 3))


async def lease_revoke(node: Any, lease: int) -> None:
    """Revoke ``lease`` (deleting its keys); an already gone lease is fine."""
    with contextlib.suppress(NotFoundError):
        await node.call("lease.revoke", {"id": lease})


async def wait_for_change(
    node: Any,
    prefix: bytes,
    after_revision: int,
    deadline: Deadline,
    *,
    deletes_only: bool,
    single: bool = False,
) -> bool:
    """Wait (on a watch, not by polling) until a key under ``prefix`` (only the key
    ``prefix`` itself with ``single``) changes after ``after_revision``; False when
    ``deadline`` passes first."""
    params: dict[str, Any] = {
        "key": prefix,
        "end": None if single else prefix_end(prefix),
        "start_revision": after_revision + 1,
        "filters": ["noput"] if deletes_only else [],
    }
    with anyio.move_on_after(deadline.left()):
        async with contextlib.aclosing(node.stream("kv.watch", params)) as items:
            async for item in items:
                if item.get("events"):
                    return True
    return False
