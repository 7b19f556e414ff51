"""The event bus: hands applied events to plugin subscribers without ever blocking the node.

Each subscriber (one plugin's implementation of one notification hook) gets its own bounded
mailbox and its own consumer: an anyio task for ``async def`` hooks, a daemon thread for plain
functions (so a hook that blocks cannot stall the event loop). :meth:`EventBus.publish` is a
non-blocking put; a full mailbox drops the event and counts it. Every call runs under
``SUBSCRIBER_CALL_TIMEOUT_SECONDS``: async calls are cancelled, a sync call that overruns is
counted when it returns (or shows as ``busy_seconds`` while it hangs).

:meth:`EventBus.unsubscribe` removes a plugin that failed: its queued events are dropped, an
async call in progress is cancelled, and it gets nothing more.
"""

from __future__ import annotations

import contextlib
import inspect
import logging
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import anyio
from anyio.abc import TaskGroup

from aspen import limits
from aspen.events import BlobEvent, ClusterEvent, Event, KvEvent, RaftEvent

__all__ = ["HOOK_FOR_EVENT", "EventBus", "SubscriberStats"]

log = logging.getLogger(__name__)

#: Which notification hook receives which event family.
HOOK_FOR_EVENT: dict[type[Event], str] = {
    KvEvent: "aspen_on_kv_event",
    RaftEvent: "aspen_on_raft_event",
    ClusterEvent: "aspen_on_cluster_event",
    BlobEvent: "aspen_on_blob_event",
}


@dataclass
class SubscriberStats:
    """Counters for one subscriber, shown in ``node.status``."""

    plugin: str
    hook: str
    delivered: int = 0
    dropped: int = 0
    failed: int = 0
    timed_out: int = 0
    last_error: str = ""
    busy_since: float | None = field(default=None, repr=False)

    def to_json(self) -> dict[str, Any]:
        """Return the JSON form."""
        busy = 0.0 if self.busy_since is None else round(time.monotonic() - self.busy_since, 3)
        return {
            "plugin": self.plugin,
            "hook": self.hook,
            "delivered": self.delivered,
            "dropped": self.dropped,
            "failed": self.failed,
            "timed_out": self.timed_out,
            "last_error": self.last_error,
            "busy_seconds": busy,
        }


class _Subscriber:
    """One hook implementation with its mailbox; subclasses decide how it is consumed."""

    def __init__(self, plugin: str, hook: str, function: Callable[..., Any], node: Any) -> None:
        self.stats = SubscriberStats(plugin, hook)
        self.function = function
        params = inspect.signature(function).parameters
        self.kwargs_for = (
            (lambda ev: {"event": ev, "node": node})
            if "node" in params
            else (lambda ev: {"event": ev})
        )

    def _record_failure(self, exc: BaseException) -> None:
        self.stats.failed += 1
        self.stats.last_error = f"{type(exc).__name__}: {exc}"
        log.warning(
            "plugin %s: %s raised %s",
            self.stats.plugin,
            self.stats.hook,
            self.stats.last_error,
            exc_info=exc,
        )


class _AsyncSubscriber(_Subscriber):
    """Consumed by an anyio task; each call is cancelled after the timeout."""

    def __init__(self, *args: Any, mailbox_size: int, timeout: float) -> None:
        super().__init__(*args)
        self.timeout = timeout
        self.send, self.receive = anyio.create_memory_object_stream[Event](mailbox_size)
        self.cancelled = False
        self._scope: anyio.CancelScope | None = None

    def offer(self, event: Event) -> None:
        try:
            self.send.send_nowait(event)
        except anyio.WouldBlock:
            self.stats.dropped += 1
        except (anyio.ClosedResourceError, anyio.BrokenResourceError):
            pass  # unsubscribed

    def stop(self) -> None:
        """No more events: close the mailbox (its consumer finishes what is queued)."""
        self.send.close()

    def cancel(self) -> None:
        """Stop at once: drop what is queued and cancel a call in progress."""
        self.cancelled = True
        self.send.close()
        if self._scope is not None:
            self._scope.cancel()

    async def consume(self) -> None:
        with anyio.CancelScope() as self._scope:
            if self.cancelled:
                return
            async with self.receive:
                async for event in self.receive:
                    self.stats.busy_since = time.monotonic()
                    try:
                        with anyio.fail_after(self.timeout):
                            await self.function(**self.kwargs_for(event))
                        self.stats.delivered += 1
                    except TimeoutError:
                        self.stats.timed_out += 1
                        log.warning("plugin %s: %s timed out", self.stats.plugin, self.stats.hook)
                    except Exception as exc:
                        self._record_failure(exc)
                    finally:
                        self.stats.busy_since = None


class _ThreadSubscriber(_Subscriber):
    """Consumed by its own daemon thread, so a blocking plain function stalls only itself."""

    _STOP = object()

    def __init__(self, *args: Any, mailbox_size: int, timeout: float) -> None:
        super().__init__(*args)
        self.timeout = timeout
        self.mailbox: queue.Queue[Any] = queue.Queue(mailbox_size)
        self.cancelled = False
        self.thread = threading.Thread(
            target=self._loop, name=f"aspen-bus-{self.stats.plugin}", daemon=True
        )

    def offer(self, event: Event) -> None:
        if self.cancelled:
            return
        try:
            self.mailbox.put_nowait(event)
        except queue.Full:
            self.stats.dropped += 1

    def stop(self) -> None:
        """No more events: the thread finishes what is queued, then ends."""
        with contextlib.suppress(queue.Full):  # else the daemon thread dies with the process
            self.mailbox.put_nowait(self._STOP)

    def cancel(self) -> None:
        """Stop after the call in progress (a thread cannot be interrupted); drop the rest."""
        self.cancelled = True
        self.stop()

    def _loop(self) -> None:
        while (event := self.mailbox.get()) is not self._STOP and not self.cancelled:
            started = self.stats.busy_since = time.monotonic()
            try:
                self.function(**self.kwargs_for(event))
                if time.monotonic() - started > self.timeout:
                    self.stats.timed_out += 1
                else:
                    self.stats.delivered += 1
            except Exception as exc:
                self._record_failure(exc)
            finally:
                self.stats.busy_since = None


class EventBus:
    """Routes events to subscribers by family; never blocks the caller."""

    def __init__(
        self,
        subscribers: dict[str, list[tuple[str, Callable[..., Any]]]],
        node: Any,
        *,
        mailbox_size: int = limits.SUBSCRIBER_MAILBOX_SIZE,
        timeout: float = limits.SUBSCRIBER_CALL_TIMEOUT_SECONDS,
    ) -> None:
        """``subscribers`` maps a hook name to (plugin name, function) pairs."""
        self._by_hook: dict[str, list[_AsyncSubscriber | _ThreadSubscriber]] = {}
        for hook, pairs in subscribers.items():
            for plugin, function in pairs:
                kind = (
                    _AsyncSubscriber if inspect.iscoroutinefunction(function) else _ThreadSubscriber
                )
                sub = kind(plugin, hook, function, node, mailbox_size=mailbox_size, timeout=timeout)
                self._by_hook.setdefault(hook, []).append(sub)
        self._route: dict[type, list[_AsyncSubscriber | _ThreadSubscriber]] = {}

    def _subscribers_for(self, event: Event) -> list[_AsyncSubscriber | _ThreadSubscriber]:
        cls = type(event)
        subs = self._route.get(cls)
        if subs is None:
            hook = next((h for base, h in HOOK_FOR_EVENT.items() if isinstance(event, base)), "")
            subs = self._route[cls] = self._by_hook.get(hook, [])
        return subs

    @property
    def has_subscribers(self) -> bool:
        """Whether any plugin listens at all (lets the node skip building events)."""
        return any(self._by_hook.values())

    def publish(self, events: list[Event]) -> None:
        """Offer each event to its subscribers' mailboxes; full mailboxes drop and count."""
        for event in events:
            for sub in self._subscribers_for(event):
                sub.offer(event)

    async def run(self, tg: TaskGroup) -> None:
        """Start every consumer (tasks in ``tg``, threads for plain functions)."""
        for subs in self._by_hook.values():
            for sub in subs:
                if isinstance(sub, _AsyncSubscriber):
                    tg.start_soon(sub.consume, name=f"bus:{sub.stats.plugin}")
                else:
                    sub.thread.start()

    def unsubscribe(self, plugin: str) -> int:
        """Deliver nothing more to ``plugin`` (it failed): drop its queued events, cancel its
        async call in progress, keep its counters out of :meth:`stats`. Returns how many
        subscribers it had."""
        removed = 0
        for hook, subs in list(self._by_hook.items()):
            gone = [sub for sub in subs if sub.stats.plugin == plugin]
            for sub in gone:
                sub.cancel()
            self._by_hook[hook] = [sub for sub in subs if sub.stats.plugin != plugin]
            removed += len(gone)
        self._route.clear()
        return removed

    def close(self) -> None:
        """Stop consumers: close async mailboxes, ask threads to finish."""
        for subs in self._by_hook.values():
            for sub in subs:
                sub.stop()

    def stats(self) -> list[dict[str, Any]]:
        """Per-subscriber counters (delivered, dropped, failed, timed out, busy)."""
        return [sub.stats.to_json() for subs in self._by_hook.values() for sub in subs]
