"""``pijul.*``: cluster-hosted repositories.

State under ``/_aspen/pijul/<repo>/``::

    c/<HASH>              a change's index record: its bytes inline, or the blob holding
                          them (see :mod:`aspen_pijul.changestore`)
    h/<channel>           the channel's head: its length, as decimal text
    l/<channel>/<n:010d>  the n-th hash of the channel's log (application order)
    i/<channel>/<HASH>    the change is in the channel: its position, as decimal text
    x/<channel>           the channel has its i/ keys (a channel appended to before they
                          existed gets them, once, at its next append)

Changes are immutable and content-addressed, verified against their hash on receipt and
on every read; a change over ``INLINE_CHANGE_BYTES`` is a blob of the core blob store
(pinned for the repository), bounded by ``MAX_CLUSTER_CHANGE_BYTES``.
A channel's log grows by a compare-and-swap on its head (``pijul.append``), in the same
``kv.txn`` as the ``pijul.channel_update`` event it publishes and the ``i/`` membership
keys its dependency checks look up, so an append costs O(appended changes and their
dependencies), never O(history).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from aspen.errors import CompareFailedError
from aspen.plugins.types import RpcHandler
from aspen.rpc.params import optional_int, optional_list, require_int, require_str
from aspen_pijul import changestore, limits
from aspen_pijul.errors import (
    MissingDependencyError,
    PijulError,
    TooLargeError,
    UnknownChangeError,
)
from aspen_pijul.model.hashing import is_hash

__all__ = ["rpc_handlers"]

_PREFIX = b"/_aspen/pijul/"
_NAME_CHARS = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-/")


def _name(params: dict[str, Any], field: str) -> str:
    """A repository name (may contain ``/``) or a channel name (may not)."""
    value = require_str(params, field, max_len=limits.MAX_NAME_BYTES)
    allowed = _NAME_CHARS if field == "repo" else _NAME_CHARS - {"/"}
    if not value or not set(value) <= allowed or value.startswith(("/", ".")):
        raise PijulError(f"bad {field} name {value!r} (letters, digits, . _ -)")
    return value


def _key(repo: str, *parts: str) -> bytes:
    return _PREFIX + "/".join([repo.replace("/", "%2F"), *parts]).encode()


def _prefix_end(prefix: bytes) -> bytes:
    return prefix[:-1] + bytes([prefix[-1] + 1])


async def _head(node: Any, repo: str, channel: str) -> int:
    kvs = (await node.call("kv.range", {"key": _key(repo, "h", channel)}))["kvs"]
    return int(kvs[0]["value"]) if kvs else 0


async def _log(node: Any, repo: str, channel: str, start: int, limit: int) -> list[str]:
    lo = _key(repo, "l", channel, f"{start:010d}")
    hi = _prefix_end(_key(repo, "l", channel) + b"/")
    out: list[str] = []
    while len(out) < limit:
        want = min(limit - len(out), limits.MAX_LOG_PAGE)
        page = await node.call("kv.range", {"key": lo, "end": hi, "limit": want})
        out += [kv["value"].decode() for kv in page["kvs"]]
        if not page["more"] or not page["kvs"]:
            break
        lo = page["kvs"][-1]["key"] + b"\0"
    return out


async def _has(node: Any, repo: str, h: str) -> bool:
    r = await node.call("kv.range", {"key": _key(repo, "c", h), "count_only": True})
    return bool(r["count"])


async def _in_channel(node: Any, repo: str, channel: str, h: str) -> bool:
    """Whether change ``h`` is in ``channel`` (one key lookup)."""
    key = _key(repo, "i", channel, h)
    return bool((await node.call("kv.range", {"key": key, "count_only": True}))["count"])


async def _ensure_index(node: Any, repo: str, channel: str) -> None:
    """Give a channel appended to before the ``i/`` keys existed its ``i/`` keys (once:
    O(its history), in pages), then mark it indexed; an indexed or empty channel costs
    one key lookup."""
    marker = _key(repo, "x", channel)
    if (await node.call("kv.range", {"key": marker, "count_only": True}))["count"]:
        return
    length = await _head(node, repo, channel)
    start = 0
    while start < length:
        page = await _log(node, repo, channel, start, limits.MAX_APPEND_HASHES)
        if not page:
            break
        ops = [
            {"put": {"key": _key(repo, "i", channel, h), "value": f"{start + i:010d}".encode()}}
            for i, h in enumerate(page)
        ]
        await node.call("kv.txn", {"compare": [], "success": ops, "failure": []})
        start += len(page)
    if length:
        await node.call("kv.put", {"key": marker, "value": b"1"})


async def _received(ctx: Any, repo: str, params: dict[str, Any]) -> list[tuple[str, bytes]]:
    """The records of a ``put_changes`` request, each change verified: ``changes`` (bytes
    in the request) and ``blobs`` (hashes of blobs the client put holding one change)."""
    inline = optional_list(params, "changes", max_len=10_000)
    blobs = optional_list(params, "blobs", max_len=limits.MAX_APPEND_HASHES)
    if sum(len(b) for b in inline if isinstance(b, bytes)) > limits.MAX_TRANSFER_BYTES:
        raise TooLargeError(f"request over MAX_TRANSFER_BYTES={limits.MAX_TRANSFER_BYTES}")
    out: list[tuple[str, bytes]] = []
    for data in inline:
        if not isinstance(data, bytes):
            raise PijulError("changes must be bytes")
        change = await changestore.verify(data)
        record = await changestore.record_for(ctx.node, repo, change, data)
        out.append((change.hash, record.to_value()))
    for digest in blobs:
        if not isinstance(digest, str):
            raise PijulError("blobs must be blob hashes")
        size = int((await ctx.node.blobs.stat(digest))["size"])
        changestore.check_size(size)
        change = await changestore.verify(await changestore.read_blob(ctx.node, digest, size))
        await ctx.node.blobs.pin(changestore.pin_name(repo, change.hash), digest)
        out.append((change.hash, changestore.ChangeRecord(size=size, blob=digest).to_value()))
    return out


async def pijul_put_changes(ctx: Any, params: dict[str, Any]) -> Any:
    """Store changes (``changes``: their bytes; ``blobs``: blobs holding one change each),
    each verified against its hash first."""
    repo = _name(params, "repo")
    received = await _received(ctx, repo, params)
    ops: list[dict[str, Any]] = []
    size = 0
    for h, value in received:
        if ops and (size + len(value) > limits.PUT_TXN_BYTES or len(ops) >= limits.PUT_TXN_OPS):
            await ctx.node.call("kv.txn", {"compare": [], "success": ops, "failure": []})
            ops, size = [], 0
        ops.append({"put": {"key": _key(repo, "c", h), "value": value}})
        size += len(value)
    if ops:
        await ctx.node.call("kv.txn", {"compare": [], "success": ops, "failure": []})
    return {"hashes": [h for h, _ in received]}


async def pijul_get_changes(ctx: Any, params: dict[str, Any]) -> Any:
    """Changes ``hashes``: each its verified bytes, or ``{"blob", "size"}`` for one held in
    the blob store (the caller reads and verifies it); ``not_found`` names a missing one."""
    repo = _name(params, "repo")
    out: list[Any] = []
    total = 0
    for h in optional_list(params, "hashes", max_len=10_000):
        if not isinstance(h, str) or not is_hash(h):
            raise PijulError(f"not a change hash: {h!r}")
        key = _key(repo, "c", h)
        kvs = (await ctx.node.call("kv.range", {"key": key}))["kvs"]
        if not kvs:
            raise UnknownChangeError(f"repository {repo!r} has no change {h}")
        record = changestore.ChangeRecord.from_value(kvs[0]["value"])
        if record.data is None:
            out.append({"blob": record.blob, "size": record.size})
            continue
        total += record.size
        if out and total > limits.MAX_TRANSFER_BYTES:
            break  # the caller asks again for the rest
        await changestore.verify(record.data, h)
        out.append(record.data)
    return {"changes": out}


async def pijul_log(ctx: Any, params: dict[str, Any]) -> Any:
    """A page of a channel's log from position ``start``: ``{hashes, length}``."""
    repo, channel = _name(params, "repo"), _name(params, "channel")
    start = optional_int(params, "start", 0, min=0)
    limit = optional_int(params, "limit", limits.MAX_LOG_PAGE, min=1, max=limits.MAX_LOG_PAGE)
    length = await _head(ctx.node, repo, channel)
    return {"hashes": await _log(ctx.node, repo, channel, start, limit), "length": length}


async def pijul_append(ctx: Any, params: dict[str, Any]) -> Any:
    """Append ``hashes`` to a channel whose length is ``expected`` (compare-and-swap on its
    head); every change must be stored and its dependencies already in the channel."""
    repo, channel = _name(params, "repo"), _name(params, "channel")
    expected = require_int(params, "expected", min=0)
    hashes = optional_list(params, "hashes", max_len=limits.MAX_APPEND_HASHES)
    node = ctx.node
    await _ensure_index(node, repo, channel)
    batch: set[str] = set()
    known: set[str] = set()  # dependencies already found in the channel
    for h in hashes:
        if not isinstance(h, str) or not await _has(node, repo, h):
            raise MissingDependencyError(f"change {h!r} is not stored in {repo!r}")
        if h in batch or await _in_channel(node, repo, channel, h):
            raise PijulError(f"change {h} is already in {channel!r}")
        change = await changestore.read_change(node, _key(repo, "c", h), repo, h)
        for d in change.dependencies:
            if d in batch or d in known:
                continue
            if not await _in_channel(node, repo, channel, d):
                raise MissingDependencyError(f"{h} depends on {d}, not in {channel!r}")
            known.add(d)
        batch.add(h)
    head = _key(repo, "h", channel)
    compare = (
        {"key": head, "target": "version", "op": "==", "value": 0}
        if expected == 0
        else {"key": head, "target": "value", "op": "==", "value": str(expected).encode()}
    )
    ops: list[dict[str, Any]] = []
    for i, h in enumerate(hashes):
        position = f"{expected + i:010d}"
        ops.append({"put": {"key": _key(repo, "l", channel, position), "value": h.encode()}})
        ops.append({"put": {"key": _key(repo, "i", channel, h), "value": position.encode()}})
    new_len = expected + len(hashes)
    ops.append({"put": {"key": head, "value": str(new_len).encode()}})
    ops.append({"put": {"key": _key(repo, "x", channel), "value": b"1"}})
    ops.append(
        node.events.op(
            "pijul.channel_update",
            f"{repo}:{channel}",
            {"old": expected, "new": new_len, "hashes": list(hashes)},
        )
    )
    answer = await node.call("kv.txn", {"compare": [compare], "success": ops, "failure": []})
    if not answer["succeeded"]:
        length = await _head(node, repo, channel)
        raise CompareFailedError(
            f"channel {channel!r} of {repo!r} has {length} changes, not {expected}: pull first",
            length=length,
        )
    return {"length": new_len}


async def pijul_quorum(ctx: Any, params: dict[str, Any]) -> Any:
    """``{replicas}``: a majority of the voters, the replica count a client's blob put
    of a change may fall back to when a member is down."""
    _name(params, "repo")
    return {"replicas": await changestore.majority(ctx.node)}


def _scope(op: str) -> Callable[[dict[str, Any]], list[str]]:
    """What a ``pijul.*`` request touches: ``pijul:<op>:<repo>``, and ``blob:read`` when it
    names blobs (``put_changes {blobs}`` reads and pins them, so a writer may only pin
    blobs it may read)."""

    def scope(params: dict[str, Any]) -> list[str]:
        items = [f"pijul:{op}:{params.get('repo', '')}"]
        if params.get("blobs"):
            items.append("blob:read")
        return items

    return scope


def rpc_handlers() -> list[RpcHandler]:
    """Every ``pijul.*`` method, each needing ``pijul:read|write:<repo>``."""
    reads = {pijul_get_changes, pijul_log}
    table = [pijul_put_changes, pijul_get_changes, pijul_log, pijul_append, pijul_quorum]
    out = []
    for f in table:
        op = "read" if f in reads else "write"
        out.append(
            RpcHandler(
                f"pijul.{f.__name__.removeprefix('pijul_')}",
                f,
                doc=(f.__doc__ or "").strip().splitlines()[0],
                capability=f"pijul:{op}",
                scope=_scope(op),
            )
        )
    return out
