"""``coord.counter.*`` and ``coord.sequence.*``: signed 64-bit counters changed by
compare-and-swap.

An add is one txn in the common case: it compares the counter's ``mod_revision`` with the
last one this node saw (a small per-node cache) and puts the new value; when another writer
got there first, the txn's failure branch reads the current record in the same round and
the add tries again from it. No increment is lost or applied twice, and each add's answer
is the value its own commit produced (linearizable).

Adds of one counter on one node take turns (a striped lock): concurrent adders on a node
would otherwise all compare against the same cached revision, and all but one would lose
each round; in turn, each add is one txn unless another node wrote meanwhile.
"""

from __future__ import annotations

from typing import Any

import anyio

from aspen.errors import InvalidArgumentError, UnavailableError
from aspen.rpc.params import optional_int, require_int
from aspen_coord import limits, store
from aspen_coord.keys import name_of, prefix

__all__ = ["counter_add", "counter_cas", "counter_get", "sequence_next", "sequence_reserve"]

#: Counters whose (value, mod_revision) one node remembers; the cache is cleared when full.
_CACHE_SIZE = 4096


#: Lock stripes per node: adds of counters hashing to one stripe take turns.
_LOCK_STRIPES = 64


def _turn(ctx: Any, key: bytes) -> anyio.Lock:
    """The lock adds of ``key`` take turns on (one of ``_LOCK_STRIPES`` per node)."""
    state = ctx.node.plugin_state("coord")
    stripes = state.setdefault("counter_locks", [anyio.Lock() for _ in range(_LOCK_STRIPES)])
    return stripes[hash(key) % _LOCK_STRIPES]  # type: ignore[no-any-return]


def _cache(ctx: Any) -> dict[bytes, tuple[int, int]]:
    state = ctx.node.plugin_state("coord")
    return state.setdefault("counters", {})  # type: ignore[no-any-return]


def _key(kind: str, params: dict[str, Any]) -> bytes:
    return prefix(kind, name_of(params)) + b"value"


def _decode(kv: dict[str, Any] | None) -> tuple[int, int]:
    """(value, mod_revision) of a counter record (0, 0 when absent)."""
    if kv is None:
        return 0, 0
    return int(kv["value"]), int(kv["mod_revision"])


def _bounded(value: int) -> int:
    if not limits.COORD_COUNTER_MIN <= value <= limits.COORD_COUNTER_MAX:
        raise InvalidArgumentError(
            f"the result {value} is outside the counter range (COORD_COUNTER_MIN.."
            "COORD_COUNTER_MAX, signed 64 bits)"
        )
    return value


async def add(ctx: Any, key: bytes, by: int) -> tuple[int, int]:
    """Add ``by`` to the counter at ``key``: (new value, revision of the commit)."""
    async with _turn(ctx, key):
        return await _add_in_turn(ctx, key, by)


async def _add_in_turn(ctx: Any, key: bytes, by: int) -> tuple[int, int]:
    cache = _cache(ctx)
    seen = cache.get(key)
    if seen is None:
        seen = _decode(await store.get(ctx.node, key))
    for _ in range(limits.COORD_MAX_CAS_ATTEMPTS):
        value, mod = seen
        new = _bounded(value + by)
        swapped, current, revision = await store.swap(ctx.node, key, mod, b"%d" % new)
        if swapped:
            if len(cache) >= _CACHE_SIZE:
                cache.clear()
            cache[key] = (new, revision)
            return new, revision
        seen = _decode(current)
        cache[key] = seen
    raise UnavailableError(
        f"the counter is too contended (COORD_MAX_CAS_ATTEMPTS {limits.COORD_MAX_CAS_ATTEMPTS})"
    )


def _amount(params: dict[str, Any], field: str, default: int | None = None) -> int:
    if default is None:
        return require_int(
            params, field, min=limits.COORD_COUNTER_MIN, max=limits.COORD_COUNTER_MAX
        )
    return optional_int(
        params, field, default, min=limits.COORD_COUNTER_MIN, max=limits.COORD_COUNTER_MAX
    )


async def counter_get(ctx: Any, params: dict[str, Any]) -> dict[str, Any]:
    """Counter ``name``'s value (0 if never written): ``{value}``."""
    return {"value": _decode(await store.get(ctx.node, _key("counter", params)))[0]}


async def counter_add(ctx: Any, params: dict[str, Any]) -> dict[str, Any]:
    """Add ``by`` (default 1, may be negative) to counter ``name``: ``{value}``, the new one."""
    value, revision = await add(ctx, _key("counter", params), _amount(params, "by", 1))
    return {"value": value, "revision": revision}


async def counter_cas(ctx: Any, params: dict[str, Any]) -> dict[str, Any]:
    """Set counter ``name`` to ``new`` only if it is ``expected``: ``{succeeded, value}``
    (``value``: the counter after the call)."""
    key = _key("counter", params)
    expected, new = _amount(params, "expected"), _amount(params, "new")
    kv = await store.get(ctx.node, key)
    for _ in range(limits.COORD_MAX_CAS_ATTEMPTS):
        value, mod = _decode(kv)
        if value != expected:
            return {"succeeded": False, "value": value}
        swapped, kv, _ = await store.swap(ctx.node, key, mod, b"%d" % new)
        if swapped:
            _cache(ctx).pop(key, None)
            return {"succeeded": True, "value": new}
    raise UnavailableError("the counter is too contended; try again")


async def sequence_next(ctx: Any, params: dict[str, Any]) -> dict[str, Any]:
    """The next number of sequence ``name`` (1, 2, 3…; never handed out twice): ``{value}``."""
    value, _ = await add(ctx, _key("sequence", params), 1)
    return {"value": value}


async def sequence_reserve(ctx: Any, params: dict[str, Any]) -> dict[str, Any]:
    """Reserve ``count`` consecutive numbers of sequence ``name``: ``{first, last}``."""
    count = require_int(params, "count", min=1, max=limits.COORD_MAX_RESERVE)
    last, _ = await add(ctx, _key("sequence", params), count)
    return {"first": last - count + 1, "last": last}
