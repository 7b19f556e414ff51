"""The ``hooks.*`` RPC methods: manage handlers (cluster state), trigger, inspect.

Handler changes are KV transactions, so any node serves them and every node agrees; the
runner picks them up from its watch. ``hooks.trigger`` and ``hooks.redrive`` run the
handlers on the node that received the request and answer with each handler's result.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from dataclasses import replace
from typing import Any

import anyio
import msgpack

import aspen
from aspen.errors import (
    AspenError,
    CompareFailedError,
    InvalidArgumentError,
    NotFoundError,
    ResourceExhaustedError,
    UnavailableError,
)
from aspen.kv import paging
from aspen.plugins.types import RpcHandler
from aspen.rpc.params import optional_int, optional_list, optional_str, require_str
from aspen_hooks import kvops, limits
from aspen_hooks.executors import Invocation, check_target, execute
from aspen_hooks.keys import (
    HANDLERS,
    RUNNER,
    STATE,
    dlq_key,
    dlq_prefix,
    handler_key,
    state_key,
)
from aspen_hooks.model import HandlerSpec, check_name, spec_from_params
from aspen_hooks.patterns import parse_pattern
from aspen_hooks.stats import HandlerState

__all__ = ["rpc_handlers"]

PLUGIN = "hooks"


def _service(ctx: Any) -> Any:
    service = ctx.node.plugin_state(PLUGIN).get("service")
    if service is None:
        raise UnavailableError("the hooks plugin is still starting on this node; try again")
    return service


async def _load(node: Any, name: str) -> tuple[HandlerSpec, int]:
    """The stored spec of ``name`` and its mod revision; ``not_found`` if absent."""
    record = await kvops.get(node, handler_key(check_name(name)))
    if record is None:
        raise NotFoundError(f"no handler named {name!r}", handler=name)
    return HandlerSpec(**record["value"]), record["mod_revision"]


async def hooks_add(ctx: Any, params: dict[str, Any]) -> Any:
    """Add a handler (``replace``: overwrite one of the same name)."""
    node = ctx.node
    spec = spec_from_params(params, _service(ctx).settings)
    await check_target(spec.kind, spec.target)
    existing, revision = await kvops.scan(node, HANDLERS, most=limits.HOOKS_MAX_HANDLERS)
    by_name = {r["value"]["name"]: r for r in existing}
    if spec.name not in by_name and len(by_name) >= limits.HOOKS_MAX_HANDLERS:
        raise ResourceExhaustedError(
            f"the cluster holds HOOKS_MAX_HANDLERS ({limits.HOOKS_MAX_HANDLERS}) handlers"
        )
    key = handler_key(spec.name)
    old = by_name.get(spec.name)
    if params.get("replace") and old is not None:
        # a new generation, starting from now: the old cursor does not apply
        generation = old["value"].get("generation", 0) + 1
        spec = replace(spec, generation=generation, start_revision=revision)
        guard = [kvops.cmp_mod(key, old["mod_revision"])]
    else:
        guard = [kvops.cmp_create(key, 0)]
    success = [kvops.put_op(key, spec.to_record()), kvops.delete_op(state_key(spec.name))]
    result = await kvops.txn(node, guard, success)
    if not result["succeeded"]:
        raise CompareFailedError(
            f"a handler named {spec.name!r} exists; remove it first or add with --replace"
        )
    return {"handler": spec.to_json(), "revision": result["header"]["revision"]}


async def hooks_remove(ctx: Any, params: dict[str, Any]) -> Any:
    """Remove a handler with its cursor, counters and dead letters."""
    name = check_name(params.get("name"))
    key = handler_key(name)
    result = await kvops.txn(
        ctx.node,
        [{"key": key, "target": "create_revision", "op": ">", "value": 0}],
        [
            kvops.delete_op(key),
            kvops.delete_op(state_key(name)),
            kvops.delete_prefix_op(dlq_prefix(name)),
        ],
    )
    if not result["succeeded"]:
        raise NotFoundError(f"no handler named {name!r}", handler=name)
    return {"removed": name}


async def _set_enabled(ctx: Any, params: dict[str, Any], enabled: bool) -> Any:
    spec, revision = await _load(ctx.node, params.get("name"))  # type: ignore[arg-type]
    updated = spec.with_enabled(enabled)
    result = await kvops.txn(
        ctx.node,
        [kvops.cmp_mod(handler_key(spec.name), revision)],
        [kvops.put_op(handler_key(spec.name), updated.to_record())],
    )
    if not result["succeeded"]:
        raise CompareFailedError(f"handler {spec.name!r} changed meanwhile; try again")
    return {"handler": updated.to_json()}


async def hooks_enable(ctx: Any, params: dict[str, Any]) -> Any:
    """Enable a handler: the runner delivers its events from its cursor on."""
    return await _set_enabled(ctx, params, True)


async def hooks_disable(ctx: Any, params: dict[str, Any]) -> Any:
    """Disable a handler: nothing runs; its cursor stays, so enabling resumes there."""
    return await _set_enabled(ctx, params, False)


async def hooks_list(ctx: Any, params: dict[str, Any]) -> Any:
    """One page of handler specs in name order: up to ``limit``, after the name ``after``;
    ``more`` when others follow (ask again with the last name as ``after``)."""
    after = optional_str(params, "after", "", max_len=limits.HOOKS_MAX_NAME_CHARS) or ""
    limit = optional_int(
        params, "limit", limits.HOOKS_MAX_HANDLERS, min=1, max=limits.HOOKS_MAX_HANDLERS
    )
    records, more = await kvops.page(ctx.node, HANDLERS, limit=limit, after=after)
    return {"handlers": [HandlerSpec(**r["value"]).to_json() for r in records], "more": more}


async def _metrics(node: Any, names: list[str] | None) -> list[dict[str, Any]]:
    specs, _ = await kvops.scan(node, HANDLERS, most=limits.HOOKS_MAX_HANDLERS)
    states, revision = await kvops.scan(node, STATE, most=limits.HOOKS_MAX_HANDLERS)
    saved = {r["key"][len(STATE) :].decode(): r for r in states}
    out = []
    for record in specs:
        spec = HandlerSpec(**record["value"])
        if names is not None and spec.name not in names:
            continue
        found = saved.get(spec.name)
        if found is not None and found["value"].get("generation", 0) != spec.generation:
            found = None  # left by an older generation of the handler
        if found is None:
            state = HandlerState(cursor=spec.start_revision or record["create_revision"])
            seen = state.cursor
        else:
            state = HandlerState.from_record(found["value"])
            state.in_flight = int(found["value"].get("in_flight", 0))
            seen = max(state.cursor, found["mod_revision"])
        metrics = state.metrics(spec.name, revision)
        metrics["lag"] = max(0, revision - seen) if spec.enabled or found else 0
        metrics["enabled"] = spec.enabled
        out.append(metrics)
    return out


async def _live_metrics(ctx: Any, names: list[str] | None) -> list[dict[str, Any]] | None:
    """Exact figures from the runner's memory: here, or asked of the runner's node;
    ``None`` when no runner answers (then the saved figures are shown)."""
    service = _service(ctx)
    if service.runner is not None:
        return await service.runner.metrics(names)
    record = await kvops.get(ctx.node, RUNNER)
    if record is None or record["value"].get("endpoint") == ctx.node.endpoint:
        return None
    params = {"local": True, **({"names": names} if names is not None else {})}
    try:
        async with aspen.aconnect(record["value"]["endpoint"], token=ctx.node.token) as c:
            return (await c.call("hooks.metrics", params))["handlers"]
    except AspenError:
        return None


async def _current_metrics(ctx: Any, names: list[str] | None) -> list[dict[str, Any]]:
    """Saved figures of every handler (or of ``names``), replaced by live ones where the
    runner answered."""
    saved = await _metrics(ctx.node, names)
    live = await _live_metrics(ctx, names)
    if live is None:
        return saved
    by_name = {m["name"]: m for m in live}
    return [{**m, **by_name.get(m["name"], {})} for m in saved]


async def hooks_metrics(ctx: Any, params: dict[str, Any]) -> Any:
    """Counters, durations and lag of every handler (or of ``name``): live from the
    runner when it answers, else as last saved."""
    name = params.get("name")
    names = [check_name(name)] if name is not None else params.get("names")
    if names is not None and not (
        isinstance(names, list) and all(isinstance(n, str) for n in names)
    ):
        raise InvalidArgumentError("names must be a list of handler names")
    if params.get("local"):  # asked by another node of the runner's node
        runner = _service(ctx).runner
        if runner is None:
            raise UnavailableError("this node is not the runner")
        return {"handlers": await runner.metrics(names)}
    found = await _current_metrics(ctx, names)
    if name is None:
        return {"handlers": found}
    if not found:
        raise NotFoundError(f"no handler named {name!r}", handler=name)
    return found[0]


async def hooks_show(ctx: Any, params: dict[str, Any]) -> Any:
    """One handler's spec and metrics."""
    spec, revision = await _load(ctx.node, params.get("name"))  # type: ignore[arg-type]
    metrics = (await _current_metrics(ctx, [spec.name]))[0]
    return {"handler": spec.to_json(), "revision": revision, "metrics": metrics}


async def _run_now(ctx: Any, spec: HandlerSpec, event: dict[str, Any], key: str) -> dict[str, Any]:
    invocation = Invocation(spec.name, event, key, 1, spec.timeout)
    outcome = await execute(spec.kind, spec.target, invocation, _service(ctx).settings)
    return {"handler": spec.name, "idempotency_key": key, **outcome.to_json()}


async def hooks_trigger(ctx: Any, params: dict[str, Any]) -> Any:
    """Dispatch an event to every enabled handler whose pattern matches it, now, on this
    node; answer each handler's result."""
    name = require_str(params, "event", max_len=limits.HOOKS_MAX_PATTERN_CHARS)
    parse_pattern(name)  # an event name is a pattern without globs
    if "*" in name or ":" in name:
        raise InvalidArgumentError("event must be a plain name such as deploy.requested")
    payload = params.get("payload") or {}
    if not isinstance(payload, dict):
        raise InvalidArgumentError("payload must be a map")
    if len(msgpack.packb(payload)) > limits.HOOKS_MAX_TRIGGER_PAYLOAD_BYTES:
        raise InvalidArgumentError(
            f"payload is larger than HOOKS_MAX_TRIGGER_PAYLOAD_BYTES "
            f"({limits.HOOKS_MAX_TRIGGER_PAYLOAD_BYTES})"
        )
    hops = optional_int(params, "hops", 0, min=0, max=1000)
    base_key = params.get("idempotency_key") or f"{ctx.node.cluster_id}:trigger:{uuid.uuid4()}"
    if not isinstance(base_key, str) or len(base_key) > limits.HOOKS_MAX_PATTERN_CHARS:
        raise InvalidArgumentError("idempotency_key must be a string")
    event = {**payload, "name": name, "triggered": True, "forward_hops": hops}
    key_text = payload.get("key")
    key = key_text.encode() if isinstance(key_text, str) else None
    subject = payload.get("subject")
    subject = subject if isinstance(subject, str) else None
    records, _ = await kvops.scan(ctx.node, HANDLERS, most=limits.HOOKS_MAX_HANDLERS)
    specs = [HandlerSpec(**r["value"]) for r in records]
    chosen = [s for s in specs if s.enabled and s.pattern.matches(name, key, subject)]
    results: list[dict[str, Any]] = [{}] * len(chosen)

    budget = anyio.CapacityLimiter(limits.HOOKS_MAX_TRIGGER_CONCURRENCY)

    async def run_one(i: int, spec: HandlerSpec) -> None:
        async with budget:
            results[i] = await _run_now(ctx, spec, event, f"{base_key}:{spec.name}")

    async with anyio.create_task_group() as tg:
        for i, spec in enumerate(chosen):
            tg.start_soon(run_one, i, spec)
    return {"event": name, "results": results}


async def hooks_dlq(ctx: Any, params: dict[str, Any]) -> Any:
    """One page of a handler's dead-lettered events, oldest first: up to ``limit``, after
    the entry id ``after``; ``more`` when others follow."""
    spec, _ = await _load(ctx.node, params.get("name"))  # type: ignore[arg-type]
    limit = optional_int(params, "limit", 100, min=1, max=limits.HOOKS_MAX_DLQ_ENTRIES)
    after = optional_str(params, "after", "", max_len=limits.HOOKS_MAX_NAME_CHARS) or ""
    records, more = await kvops.page(ctx.node, dlq_prefix(spec.name), limit=limit, after=after)
    return {"name": spec.name, "entries": [r["value"] for r in records], "more": more}


async def _dead_letters(node: Any, name: str, ids: list[str]) -> AsyncIterator[dict[str, Any]]:
    """The dead-letter records (values decoded) of handler ``name``: those of ``ids`` (each
    read by its key), or every one, page by page (never all at once)."""
    if ids:
        for entry_id in ids:
            record = await kvops.get(node, dlq_key(name, entry_id))
            if record is not None:
                yield record
        return
    async for kv in paging.scan(node.call, dlq_prefix(name), local=True):
        yield kvops.decoded(kv)


async def hooks_redrive(ctx: Any, params: dict[str, Any]) -> Any:
    """Run a handler again for its dead-lettered events (all, or ``ids``); the ones that
    succeed leave the dead-letter list."""
    spec, _ = await _load(ctx.node, params.get("name"))  # type: ignore[arg-type]
    ids = optional_list(params, "ids", max_len=limits.HOOKS_MAX_DLQ_ENTRIES) or []
    if not all(isinstance(i, str) for i in ids):
        raise InvalidArgumentError("ids must be a list of dead-letter entry ids (strings)")
    results = []
    async for record in _dead_letters(ctx.node, spec.name, ids):
        entry = record["value"]
        result = await _run_now(ctx, spec, entry["event"], entry["idempotency_key"])
        if result["ok"]:
            await kvops.txn(
                ctx.node,
                [kvops.cmp_mod(record["key"], record["mod_revision"])],
                [kvops.delete_op(record["key"])],
            )
        results.append({"id": entry["id"], **result})
    return {"name": spec.name, "results": results}


async def hooks_reset(ctx: Any, params: dict[str, Any]) -> Any:
    """Move a handler's cursor (to ``revision``, default now) and clear a ``lagged`` stop;
    events up to the new cursor are not delivered."""
    spec, revision = await _load(ctx.node, params.get("name"))  # type: ignore[arg-type]
    current = await kvops.revision(ctx.node)
    to = optional_int(params, "revision", current, min=0, max=current)
    updated = replace(spec, start_revision=to, generation=spec.generation + 1)
    result = await kvops.txn(
        ctx.node,
        [kvops.cmp_mod(handler_key(spec.name), revision)],
        [
            kvops.put_op(handler_key(spec.name), updated.to_record()),
            kvops.delete_op(state_key(spec.name)),
        ],
    )
    if not result["succeeded"]:
        raise CompareFailedError(f"handler {spec.name!r} changed meanwhile; try again")
    return {"name": spec.name, "cursor": to}


async def hooks_status(ctx: Any, params: dict[str, Any]) -> Any:
    """Which node runs the handlers, and with which fencing token."""
    record = await kvops.get(ctx.node, RUNNER)
    service = _service(ctx)
    runner = None
    if record is not None:
        runner = {**record["value"], "token": record["create_revision"]}
    return {
        "runner": runner,
        "this_node": ctx.node.id,
        "running_here": service.runner is not None,
        "workers": sorted(service.runner.workers) if service.runner else [],
    }


def rpc_handlers() -> list[RpcHandler]:
    """Every ``hooks.*`` method."""
    table = [
        hooks_add,
        hooks_remove,
        hooks_enable,
        hooks_disable,
        hooks_list,
        hooks_show,
        hooks_metrics,
        hooks_trigger,
        hooks_dlq,
        hooks_redrive,
        hooks_reset,
        hooks_status,
    ]
    return [
        RpcHandler(
            f"hooks.{f.__name__.removeprefix('hooks_')}",
            f,
            doc=(f.__doc__ or "").strip(),
            capability="hooks:read" if f in _READS else "hooks:write",
        )
        for f in table
    ]


#: The methods a ``hooks:read`` token may call; the others need ``hooks:write`` (they change
#: hooks, and a hook can run a command).
_READS = frozenset({hooks_list, hooks_show, hooks_metrics, hooks_dlq, hooks_status})
