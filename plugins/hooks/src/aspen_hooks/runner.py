"""The runner: the one place in the cluster where handlers run.

A :class:`Runner` holds a fencing token (the ``create_revision`` of the runner key it
won). It keeps one :class:`HandlerWorker` per enabled handler, restarting a worker when
its spec changes. Each worker reads its events from the KV history (a watch from its
saved cursor), runs the handler for each matching event in order, retries with
exponential backoff, dead-letters what still fails, and saves cursor and counters with
a transaction that holds only while this runner still owns the token and the spec is
unchanged — a deposed runner cannot move a cursor. So under normal operation an event
runs once; across a runner change, events after the last saved cursor run again (each
with the same idempotency key).
"""

from __future__ import annotations

import logging
import random
import time
from dataclasses import dataclass
from typing import Any

import anyio
import anyio.abc

from aspen import limits
from aspen.errors import CompactedError
from aspen_hooks import kvops
from aspen_hooks.executors import ExecutorSettings, Invocation, Outcome, execute
from aspen_hooks.keys import (
    HANDLERS,
    RUNNER,
    STATE,
    dlq_key,
    dlq_prefix,
    handler_key,
    prefix_end,
    state_key,
)
from aspen_hooks.model import HandlerSpec
from aspen_hooks.payload import event_from_history, idempotency_key
from aspen_hooks.stats import HandlerState

__all__ = ["HandlerWorker", "Runner", "RunnerLost", "backoff_seconds"]

log = logging.getLogger(__name__)


class RunnerLost(Exception):
    """This runner's fencing token no longer holds: another runner took over."""


class SpecChanged(Exception):
    """The handler's spec changed under its worker (the runner replaces the worker)."""


def backoff_seconds(attempt: int) -> float:
    """Delay before retry ``attempt`` (1, 2, …): doubling from the base, capped, with
    ±20% jitter so that retries of many handlers do not line up."""
    base = limits.HOOKS_BACKOFF_BASE_SECONDS * (2 ** (attempt - 1))
    return min(limits.HOOKS_BACKOFF_MAX_SECONDS, base) * random.uniform(0.8, 1.2)


@dataclass(frozen=True, slots=True)
class _Installed:
    spec: HandlerSpec
    revision: int
    scope: anyio.CancelScope


class Runner:
    """Runs every enabled handler while it holds ``token``."""

    def __init__(self, node: Any, token: int, settings: ExecutorSettings) -> None:
        self.node = node
        self.token = token
        self.settings = settings
        self.workers: dict[str, HandlerWorker] = {}
        self._installed: dict[str, _Installed] = {}

    def fence(self) -> dict[str, Any]:
        """The compare that holds while this runner owns the cluster's runner key."""
        return kvops.cmp_create(RUNNER, self.token)

    async def run(self) -> None:
        """Start workers for the stored handlers and follow changes until cancelled (or
        :class:`RunnerLost` ends it)."""
        records, revision = await kvops.scan(self.node, HANDLERS)
        async with anyio.create_task_group() as tg:
            for record in records:
                self._install(tg, record["key"], record)
            params = {
                "key": HANDLERS,
                "end": prefix_end(HANDLERS),
                "start_revision": revision + 1,
            }
            async for item in self.node.stream("kv.watch", params):
                for event in item.get("events") or ():
                    kv = event["kv"]
                    if event["type"] == "put":
                        kv = {**kv, "value": _decode(kv["value"])}
                        self._install(tg, kv["key"], kv)
                    else:
                        self._install(tg, kv["key"], None)

    def _install(self, tg: anyio.abc.TaskGroup, key: bytes, record: dict[str, Any] | None) -> None:
        name = key[len(HANDLERS) :].decode()
        old = self._installed.pop(name, None)
        if old is not None:
            old.scope.cancel()
        self.workers.pop(name, None)
        if record is None or record["value"] is None:
            return
        spec = HandlerSpec(**record["value"])
        scope = anyio.CancelScope()
        self._installed[name] = _Installed(spec, record["mod_revision"], scope)
        if spec.enabled:
            worker = HandlerWorker(self, spec, record["mod_revision"], record["create_revision"])
            self.workers[name] = worker
            tg.start_soon(_run_in_scope, scope, worker.run, name=f"hooks:{name}")


async def _run_in_scope(scope: anyio.CancelScope, func: Any) -> None:
    with scope:
        await func()


def _decode(raw: bytes) -> Any:
    import msgpack

    try:
        return msgpack.unpackb(raw)
    except (ValueError, msgpack.UnpackException):
        return None


class HandlerWorker:
    """Delivers one handler's events in revision order."""

    def __init__(
        self, runner: Runner, spec: HandlerSpec, spec_revision: int, create_revision: int
    ) -> None:
        self.runner = runner
        self.node = runner.node
        self.spec = spec
        self.pattern = spec.pattern
        self.spec_revision = spec_revision
        self.state = HandlerState(cursor=spec.start_revision or create_revision)
        self._last_flush = 0.0
        self._foreign_progress = False

    async def run(self) -> None:
        """Load the saved state, then follow the history from the cursor."""
        saved = await kvops.get(self.node, state_key(self.spec.name))
        if saved is not None:
            self.state = HandlerState.from_record(saved["value"])
        span = self.pattern.watch_range()
        if self.state.lagged or span is None:
            await anyio.sleep_forever()  # lagged: waits for `hooks reset`; custom: triggers only
        params = {
            "key": span[0],
            "end": span[1],
            "start_revision": self.state.cursor + 1,
            "prev_kv": True,
            "progress_notify": True,
        }
        try:
            async for item in self.node.stream("kv.watch", params):
                await self._on_item(item)
        except SpecChanged:
            await anyio.sleep_forever()  # the runner cancels this worker and starts anew
        except CompactedError as exc:
            compacted = exc.details.get("compact_revision", "?")
            self.state.lagged = (
                f"the history was compacted (to revision {compacted}) past this handler's "
                f"cursor ({self.state.cursor}): events after it are lost to the handler. "
                f"'aspen hooks reset {self.spec.name}' resumes from now."
            )
            log.error("hooks: handler %s lagged: %s", self.spec.name, self.state.lagged)
            await self.flush()
            await anyio.sleep_forever()

    async def _on_item(self, item: dict[str, Any]) -> None:
        if item.get("created"):
            return
        events = item.get("events") or []
        header_revision = item["header"]["revision"]
        delivered = False
        for event in events:
            key: bytes = event["kv"]["key"]
            if not key.startswith(STATE):
                self._foreign_progress = True
            payload = event_from_history(event)
            if payload is not None and self.pattern.matches(payload["name"], key):
                await self.deliver(payload)
                delivered = True
        if len(events) >= limits.MAX_WATCH_EVENTS_PER_MESSAGE:
            covered = events[-1]["kv"]["mod_revision"] - 1  # that revision may continue
        else:
            covered = header_revision
        self.state.cursor = max(self.state.cursor, covered)
        idle_due = time.monotonic() - self._last_flush >= limits.HOOKS_IDLE_FLUSH_SECONDS
        if delivered or (self._foreign_progress and idle_due):
            await self.flush()

    async def deliver(self, event: dict[str, Any]) -> Outcome:
        """Run the handler for ``event`` with retries; dead-letter it when they run out."""
        spec = self.spec
        key = idempotency_key(self.node.cluster_id, event, spec.name)
        outcome: Outcome | None = None
        for attempt in range(1, spec.retries + 2):
            if attempt > 1:
                self.state.retries += 1
                await anyio.sleep(backoff_seconds(attempt - 1))
            invocation = Invocation(spec.name, event, key, attempt, spec.timeout)
            self.state.in_flight += 1
            try:
                outcome = await execute(spec.kind, spec.target, invocation, self.runner.settings)
            finally:
                self.state.in_flight -= 1
            self.state.record(outcome.duration)
            if outcome.ok:
                self.state.succeeded += 1
                return outcome
            self.state.failed += 1
            log.warning("hooks: %s attempt %d failed: %s", spec.name, attempt, outcome.error)
        assert outcome is not None
        await self._dead_letter(event, key, outcome, spec.retries + 1)
        return outcome

    async def _dead_letter(
        self, event: dict[str, Any], key: str, outcome: Outcome, attempts: int
    ) -> None:
        name = self.spec.name
        entry_id = f"{event.get('revision', 0):020d}-{key.rsplit(':', 2)[-2]}"
        entry = {
            "id": entry_id,
            "event": event,
            "idempotency_key": key,
            "error": outcome.error,
            "attempts": attempts,
            "outcome": outcome.to_json(),
            "time": time.time(),
        }
        success = [kvops.put_op(dlq_key(name, entry_id), entry)]
        oldest = await self.node.call(
            "kv.range",
            {
                "key": dlq_prefix(name),
                "end": prefix_end(dlq_prefix(name)),
                "keys_only": True,
                "limit": 1,
                "serializable": True,
            },
        )
        if oldest["count"] >= limits.HOOKS_MAX_DLQ_ENTRIES and oldest["kvs"]:
            success.append(kvops.delete_op(oldest["kvs"][0]["key"]))
        await self._fenced(success)
        self.state.dead_lettered += 1

    async def flush(self) -> None:
        """Save cursor and counters (only while this runner and this spec still hold)."""
        await self._fenced([kvops.put_op(state_key(self.spec.name), self.state.to_record())])
        self._last_flush = time.monotonic()
        self._foreign_progress = False

    async def _fenced(self, success: list[dict[str, Any]]) -> None:
        """Run ``success`` if this runner still holds its token and the spec is unchanged;
        else raise :class:`RunnerLost` or :class:`SpecChanged`."""
        guard = [
            self.runner.fence(),
            kvops.cmp_mod(handler_key(self.spec.name), self.spec_revision),
        ]
        probe = [{"range": {"key": RUNNER, "keys_only": True}}]
        result = await kvops.txn(self.node, guard, success, probe)
        if result["succeeded"]:
            return
        runner = result["responses"][0]["range"]["kvs"]
        if runner and runner[0]["create_revision"] == self.runner.token:
            raise SpecChanged(self.spec.name)
        raise RunnerLost(f"another runner took over while saving {self.spec.name}")
