"""The ``coord.*`` RPC methods and the capability each declares.

Every method of a primitive kind needs ``coord:<kind>:<name>`` (``coord:lock:orders``,
``coord:counter:hits``; ``coord:lock:*`` for every lock): the primitives' state lives under
``/_aspen/coord/``, which the handlers read and write as the node, so a token needs no kv
capability for it. The fenced write also needs ``kv:write`` on each key it writes.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from aspen.plugins.types import RpcHandler
from aspen_coord import barrier, counters, election, locks, ratelimit, services
from aspen_coord.keys import check_name

__all__ = ["rpc_handlers"]


def _scope(kind: str) -> Callable[[dict[str, Any]], Iterable[Any]]:
    def scope(params: dict[str, Any]) -> list[Any]:
        return [f"coord:{kind}:{check_name(params.get('name'))}"]

    return scope


def _write_scope(params: dict[str, Any]) -> list[Any]:
    """The lock's capability and ``kv:write`` on every key the fenced write changes."""
    items: list[Any] = list(_scope("lock")(params))
    for op in locks.fenced_ops(params):
        (body,) = op.values()
        items.append(("write", body["key"], None))
    return items


def _handler(name: str, func: Any, *, streaming: bool = False, scope: Any = None) -> RpcHandler:
    kind = name.split(".")[0]
    return RpcHandler(
        f"coord.{name}",
        func,
        streaming=streaming,
        doc=(func.__doc__ or "").strip().split("\n")[0],
        capability=f"coord:{kind}",
        scope=scope or _scope(kind),
    )


def rpc_handlers() -> list[RpcHandler]:
    """Every ``coord.*`` method."""
    queue_kinds = ("lock", "rwlock", "semaphore", "election")
    handlers = [
        _handler("lock.acquire", locks.lock_acquire),
        _handler("lock.write", locks.lock_write, scope=_write_scope),
        _handler("rwlock.acquire", locks.rwlock_acquire),
        _handler("semaphore.acquire", locks.semaphore_acquire),
        _handler("election.campaign", election.campaign),
        _handler("election.proclaim", election.proclaim),
        _handler("election.leader", election.leader),
        _handler("election.observe", election.observe, streaming=True),
        _handler("counter.get", counters.counter_get),
        _handler("counter.add", counters.counter_add),
        _handler("counter.cas", counters.counter_cas),
        _handler("sequence.next", counters.sequence_next),
        _handler("sequence.reserve", counters.sequence_reserve),
        _handler("barrier.wait", barrier.barrier_wait),
        _handler("barrier.status", barrier.barrier_status),
        _handler("barrier.reset", barrier.barrier_reset),
        _handler("ratelimit.take", ratelimit.ratelimit_take),
        _handler("ratelimit.get", ratelimit.ratelimit_get),
        _handler("service.register", services.register),
        _handler("service.renew", services.renew),
        _handler("service.deregister", services.deregister),
        _handler("service.discover", services.discover),
        _handler("service.watch", services.watch, streaming=True),
    ]
    for kind in queue_kinds:
        verbs = {"release": locks.release_for(kind), "renew": locks.renew_for(kind)}
        if kind != "election":
            verbs["status"] = locks.status_for(kind)
        else:
            verbs["resign"] = verbs.pop("release")
        handlers += [_handler(f"{kind}.{verb}", func) for verb, func in verbs.items()]
    return handlers
