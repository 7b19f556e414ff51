"""``coord.ratelimit.*``: token buckets, one per name, advanced by the proposer's clock.

The bucket's state (tokens, and the wall-clock time they were counted at) is a KV value.
A ``take`` reads it, refills it by ``rate`` times the time elapsed *on the node that serves the
request* — the proposer: the time travels inside the written value, so applying it on
every replica is a plain put and never reads a clock (deterministic) — takes ``n`` tokens
if there are enough, and writes it back with a compare on its mod revision (a concurrent
take makes it retry). After a leader change the new proposer continues from the stored
time; a clock behind the stored one refills nothing (time never runs backwards).
This is why it is a server-side method: the refill must be computed where the write is
proposed, from one clock per write.
"""

from __future__ import annotations

import time
from typing import Any

import msgpack

from aspen.errors import InvalidArgumentError, UnavailableError
from aspen.rpc.params import optional_int
from aspen_coord import limits, store
from aspen_coord.keys import name_of, prefix

__all__ = ["ratelimit_get", "ratelimit_take", "refill"]


def refill(state: dict[str, Any], now: float, rate: float, burst: int) -> tuple[float, float]:
    """(tokens, time) of a bucket in ``state`` (empty: a full new bucket) at ``now``."""
    if not state:
        return float(burst), now
    then = float(state["t"])
    elapsed = max(0.0, now - then)
    return min(float(burst), float(state["tokens"]) + elapsed * rate), max(then, now)


def _number(params: dict[str, Any], field: str, top: float) -> float:
    value = params.get(field)
    if not isinstance(value, int | float) or isinstance(value, bool) or not 0 < value <= top:
        raise InvalidArgumentError(f"{field!r} must be a number in (0, {top}]", field=field)
    return float(value)


async def ratelimit_take(ctx: Any, params: dict[str, Any]) -> dict[str, Any]:
    """Take ``n`` (default 1) tokens from bucket ``name`` refilling at ``rate`` per second
    up to ``burst``: ``{allowed, tokens, retry_after}``."""
    key = prefix("ratelimit", name_of(params)) + b"state"
    rate = _number(params, "rate", limits.COORD_MAX_RATE)
    burst = optional_int(params, "burst", max(1, int(rate)), min=1, max=limits.COORD_MAX_BURST)
    n = optional_int(params, "n", 1, min=1, max=burst)
    kv = await store.get(ctx.node, key)
    for _ in range(limits.COORD_MAX_CAS_ATTEMPTS):
        state = msgpack.unpackb(kv["value"]) if kv else {}
        tokens, at = refill(state, time.time(), rate, burst)
        if tokens < n:
            return {"allowed": False, "tokens": tokens, "retry_after": (n - tokens) / rate}
        record = {"tokens": tokens - n, "t": at, "rate": rate, "burst": burst}
        mod = kv["mod_revision"] if kv else 0
        swapped, kv, _ = await store.swap(ctx.node, key, mod, msgpack.packb(record))
        if swapped:
            return {"allowed": True, "tokens": tokens - n, "retry_after": 0.0}
    raise UnavailableError("the rate limiter is too contended; try again")


async def ratelimit_get(ctx: Any, params: dict[str, Any]) -> dict[str, Any]:
    """The stored state of bucket ``name``: ``{tokens, t, rate, burst}`` as last written
    (``{}`` if never used)."""
    kv = await store.get(ctx.node, prefix("ratelimit", name_of(params)) + b"state")
    return msgpack.unpackb(kv["value"]) if kv else {}
