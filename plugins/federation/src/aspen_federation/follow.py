"""Follow journal events on the Raft leader: the loop the gossip outbox and the mirror
wake-up share.

:func:`follow_on_leader` watches the named events from "now" while this node leads and
hands each to a callback; when the node stops leading or a watch fails, every watch is
closed and re-opened after ``GOSSIP_WATCH_RETRY_SECONDS`` (events applied meanwhile are
not seen: both users are best-effort).
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Iterable
from typing import Any

import anyio

from aspen.errors import AspenError
from aspen_federation import limits

__all__ = ["follow_on_leader"]

log = logging.getLogger("aspen_federation")


async def follow_on_leader(
    node: Any, names: Iterable[str], on_event: Callable[[dict[str, Any]], None]
) -> None:
    """Call ``on_event`` with each journal event named in ``names``, applied while this
    node leads (a node task: runs until cancelled)."""
    names = tuple(names)
    while True:
        if not node.is_leader:
            await anyio.sleep(limits.CONTACT_PING_SECONDS)
            continue
        try:
            async with anyio.create_task_group() as tg:
                for name in names:
                    tg.start_soon(_watch, node, name, on_event, tg.cancel_scope)
        except Exception:  # best-effort: a bug here must not stop the node
            log.exception("federation: journal watch failed")
        await anyio.sleep(limits.GOSSIP_WATCH_RETRY_SECONDS)


async def _watch(
    node: Any, name: str, on_event: Callable[[dict[str, Any]], None], scope: anyio.CancelScope
) -> None:
    """Hand ``name`` events to ``on_event`` until this node stops leading or the watch
    fails (then every watch is cancelled, and re-opened after a pause)."""
    watch = node.events.watch(None, match=name)
    try:
        async with contextlib.aclosing(watch) as items:
            async for item in items:
                if not node.is_leader:
                    break
                for event in item.get("events") or ():
                    on_event(event)
    except AspenError as exc:
        log.info("federation: journal watch of %s ended: %s", name, exc)
    scope.cancel()
