"""The ``events.*`` RPC methods (docs/events.md).

* ``events.read``: one page from a position (``from``, 0 = the oldest kept) or after a
  revision (``after_revision``), filtered by ``match`` (``name:subject`` globs):
  ``{events, next, more, first, end}``; linearizable unless ``serializable``.
* ``events.watch`` (streaming): the same selection followed live (default: from now).
* ``events.publish``: append one event on its own: ``{position, revision}``. To publish
  with a KV change, put a ``publish`` op in ``kv.txn`` instead.
* ``events.status``: the journal's extent and retention.
* ``events.retention``: change the cluster's retention (``cluster:admin``).

Readers need ``events:read`` covering the name prefix of their ``match``
(``events:read:forge.`` reads ``forge.*``); publishers ``events:write:<name>``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from functools import partial
from typing import Any

from aspen.journal import commands
from aspen.journal.hub import JournalHub
from aspen.limits import EVENTS_MAX_WATCHES_PER_CONNECTION
from aspen.rpc import params as p
from aspen.rpc.context import RpcContext
from aspen.rpc.handler import RpcHandler

__all__ = ["events_handlers"]

#: The node's ``KVService`` (``propose``, ``read_barrier``, ``settled``, ``read``,
#: ``state_machine``): the journal layer does not import the node.
Service = Any


async def events_read(kv: Service, hub: JournalHub, ctx: RpcContext, params: dict[str, Any]) -> Any:
    """One page of events from a position (or after a revision), filtered by ``match``."""
    request = commands.read_request(params)
    if p.optional_bool(params, "serializable"):
        await kv.settled()
    else:
        await kv.read_barrier()
    return await kv.read(lambda txn: _page(kv, hub, txn, request))


def _page(kv: Service, hub: JournalHub, txn: Any, request: commands.ReadRequest) -> dict[str, Any]:
    """One page of ``request`` read in ``txn``, with the store revision it was read at."""
    start = hub.journal.start(txn, request, default_end=False)
    page = hub.journal.read(txn, start, request.match, request.limit)
    page["header"] = {"revision": kv.state_machine.current_revision(txn)}
    return page


async def events_watch(
    kv: Service, hub: JournalHub, ctx: RpcContext, params: dict[str, Any]
) -> AsyncIterator[Any]:
    """Follow events as they are applied, from a position (default: now) or after a
    revision, filtered by ``match`` (at most EVENTS_MAX_WATCHES_PER_CONNECTION at once)."""
    request = commands.read_request(params)
    bound = "EVENTS_MAX_WATCHES_PER_CONNECTION"
    with ctx.stream_slot("events.watch", EVENTS_MAX_WATCHES_PER_CONNECTION, bound):
        async for item in hub.stream(request):
            yield item


async def events_publish(
    kv: Service, hub: JournalHub, ctx: RpcContext, params: dict[str, Any]
) -> Any:
    """Append one event (``name``, ``subject``, ``payload``) on its own."""
    op = commands.publish_op(params)
    result = await kv.propose({"op": "txn", "compare": [], "success": [op], "failure": []})
    position = result["responses"][0]["publish"]["position"]
    return {"position": position, "revision": result["header"]["revision"]}


async def events_status(
    kv: Service, hub: JournalHub, ctx: RpcContext, params: dict[str, Any]
) -> Any:
    """The journal's extent (``first``, ``next``, ``count``, ``bytes``) and retention."""
    await kv.read_barrier()

    def read(txn: Any) -> dict[str, Any]:
        state = hub.journal.state(txn).to_json()
        return {**state, "retention": hub.journal.retention(txn).to_json(), "watches": hub.active}

    return await kv.read(read)


async def events_retention(
    kv: Service, hub: JournalHub, ctx: RpcContext, params: dict[str, Any]
) -> Any:
    """Set the cluster's retention (``max_events``, ``max_bytes``, ``max_age`` seconds; those
    given replace the current ones); answers the retention now in force."""
    result = await kv.propose(commands.retention_command(params))
    return {"retention": result["retention"]}


def _read_scope(params: dict[str, Any]) -> list[str]:
    """``events:read:<name prefix of match>``."""
    match = commands.read_request(params).match
    return [f"events:read:{match.name_prefix}" if match.name_prefix else "events:read"]


def _publish_scope(params: dict[str, Any]) -> list[str]:
    """``events:write:<name>``."""
    return [f"events:write:{commands.check_name(params.get('name'))}"]


def events_handlers(kv: Service, hub: JournalHub) -> list[RpcHandler]:
    """Every ``events.*`` method, bound to the node's KV service and journal hub."""
    table: list[tuple[str, Callable[..., Any], bool, str, Any]] = [
        ("events.read", events_read, False, "events:read", _read_scope),
        ("events.watch", events_watch, True, "events:read", _read_scope),
        ("events.publish", events_publish, False, "events:write", _publish_scope),
        ("events.status", events_status, False, "events:read", None),
        ("events.retention", events_retention, False, "cluster:admin", None),
    ]
    return [
        RpcHandler(
            name,
            partial(func, kv, hub),
            streaming=streaming,
            doc=(func.__doc__ or "").strip(),
            plugin="core",
            capability=capability,
            scope=scope,
        )
        for name, func, streaming, capability, scope in table
    ]
