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

import contextlib
import logging
import random
import time
from dataclasses import dataclass
from typing import Any

import anyio
import anyio.abc

from aspen import limits
from aspen.errors import AspenError, CompactedError, UnavailableError
from aspen.errors import TimeoutError as AspenTimeoutError
from aspen_hooks import kvops
from aspen_hooks.executors import ExecutorSettings, Invocation, Outcome, execute
from aspen_hooks.keys import (
    HANDLERS,
    RUNNER,
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
    scope: anyio.CancelScope
    done: anyio.Event


class Runner:
    """Runs every enabled handler while it holds ``token``."""

    def __init__(self, node: Any, token: int, settings: ExecutorSettings) -> None:
        self.node = node
        self.token = token
        self.settings = settings
        self.workers: dict[str, HandlerWorker] = {}
        self._installed: dict[str, _Installed] = {}

    async def metrics(self, names: list[str] | None) -> list[dict[str, Any]]:
        """Live figures of the running workers (or of ``names``)."""
        revision = await kvops.revision(self.node, serializable=True)
        out = []
        for name, worker in sorted(self.workers.items()):
            if names is None or name in names:
                figures = worker.state.metrics(name, revision)
                figures["lag"] = worker.lag(revision)
                out.append(figures)
        return out

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
        """(Re)start the worker of the handler at ``key`` (``record`` None: removed). A new
        worker starts only after the old one has stopped and saved its progress."""
        name = key[len(HANDLERS) :].decode()
        old = self._installed.pop(name, None)
        if old is not None:
            old.scope.cancel()
        self.workers.pop(name, None)
        if record is None or record["value"] is None:
            return
        spec = HandlerSpec(**record["value"])
        installed = _Installed(spec, anyio.CancelScope(), anyio.Event())
        self._installed[name] = installed
        worker = HandlerWorker(self, spec, record["create_revision"]) if spec.enabled else None
        if worker is not None:
            self.workers[name] = worker
        after = old.done if old is not None else None
        tg.start_soon(_run_worker, installed, worker, after, name=f"hooks:{name}")


async def _run_worker(
    installed: _Installed, worker: HandlerWorker | None, after: anyio.Event | None
) -> None:
    try:
        if after is not None:
            with anyio.CancelScope(shield=True):
                await after.wait()  # never start while the old worker still saves
        with installed.scope:
            if worker is not None:
                await worker.run()
    finally:
        installed.done.set()


def _decode(raw: bytes) -> Any:
    import msgpack

    try:
        return msgpack.unpackb(raw)
    except (ValueError, msgpack.UnpackException):
        return None


class HandlerWorker:
    """Delivers one handler's events in revision order.

    Progress is saved by a background flusher at most every ``HOOKS_STATE_FLUSH_SECONDS``
    while events are delivered, after a quiet spell once other writes moved the cursor by
    ``HOOKS_IDLE_SAVE_REVISIONS``, and once more when the worker stops. Saves are fenced
    by the runner's token and the handler's ``create_revision`` (a removed and re-added
    handler starts anew); the spec's ``generation`` (bumped by ``hooks reset`` and
    ``--replace``) tells which saved state still applies.
    """

    def __init__(self, runner: Runner, spec: HandlerSpec, create_revision: int) -> None:
        self.runner = runner
        self.node = runner.node
        self.spec = spec
        self.pattern = spec.pattern
        self.create_revision = create_revision
        self.state = HandlerState(cursor=spec.start_revision or create_revision)
        self.saved_cursor = self.state.cursor
        #: True while the worker waits for its next watch item (nothing to deliver).
        self.waiting = False
        self._last_flush = time.monotonic()
        self._dirty = False
        self._saving = anyio.Lock()

    def lag(self, store_revision: int) -> int:
        """Revisions this handler is behind: 0 while it waits with nothing to deliver."""
        if self.state.lagged:
            return max(0, store_revision - self.state.cursor)
        if self.waiting and self.state.in_flight == 0:
            return 0
        return max(0, store_revision - self.state.cursor)

    async def run(self) -> None:
        """Load the saved state, then follow the history from the cursor."""
        saved = await kvops.get(self.node, state_key(self.spec.name))
        if saved is not None and saved["value"].get("generation", 0) == self.spec.generation:
            self.state = HandlerState.from_record(saved["value"])
            self.saved_cursor = self.state.cursor
        span = self.pattern.watch_range()
        if self.state.lagged or span is None:
            self.waiting = True
            await anyio.sleep_forever()  # lagged: waits for `hooks reset`; custom: triggers only
        try:
            async with anyio.create_task_group() as tg:
                tg.start_soon(self._flusher)
                await self._follow(span)
        finally:
            with anyio.move_on_after(limits.HOOKS_STATE_FLUSH_SECONDS * 10, shield=True):
                if self._dirty:
                    with contextlib.suppress(SpecChanged, RunnerLost, AspenError):
                        await self.flush()

    async def _follow(self, span: tuple[bytes, bytes]) -> None:
        """Deliver from the history; a compacted cursor marks the handler lagged."""
        params = {
            "key": span[0],
            "end": span[1],
            "start_revision": self.state.cursor + 1,
            "prev_kv": True,
            "progress_notify": True,
        }
        try:
            async with contextlib.aclosing(self.node.stream("kv.watch", params)) as items:
                while True:
                    self.waiting = True
                    item = await items.__anext__()
                    self.waiting = False
                    await self._on_item(item)
        except SpecChanged:
            pass  # the runner cancels this worker and starts anew
        except CompactedError as exc:
            compacted = exc.details.get("compact_revision", "?")
            self.state.lagged = (
                f"the history was compacted (to revision {compacted}) past this handler's "
                f"cursor ({self.state.cursor}): events after it are lost to the handler. "
                f"'aspen hooks reset {self.spec.name}' resumes from now."
            )
            log.error("hooks: handler %s lagged: %s", self.spec.name, self.state.lagged)
            self._dirty = True
        self.waiting = True
        await anyio.sleep_forever()

    async def _flusher(self) -> None:
        """Save progress in the background (see the class docs)."""
        while True:
            await anyio.sleep(limits.HOOKS_STATE_FLUSH_SECONDS)
            quiet = time.monotonic() - self._last_flush >= limits.HOOKS_IDLE_FLUSH_SECONDS
            moved = self.state.cursor - self.saved_cursor >= limits.HOOKS_IDLE_SAVE_REVISIONS
            if self._dirty or (moved and quiet):
                try:
                    await self.flush()
                except SpecChanged:
                    return  # the runner replaces this worker

    async def _on_item(self, item: dict[str, Any]) -> None:
        if item.get("created"):
            return
        events = item.get("events") or []
        for event in events:
            key: bytes = event["kv"]["key"]
            payload = event_from_history(event)
            if payload is not None and self.pattern.matches(payload["name"], key):
                # every revision before this event's is done (its own may have more events)
                self._advance(event["kv"]["mod_revision"] - 1)
                await self.deliver(payload)
                self._dirty = True
        if len(events) >= limits.MAX_WATCH_EVENTS_PER_MESSAGE:
            self._advance(events[-1]["kv"]["mod_revision"] - 1)  # that revision may go on
        else:
            self._advance(item["header"]["revision"])

    def _advance(self, revision: int) -> None:
        self.state.cursor = max(self.state.cursor, revision)

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
            "outcome": _bounded(outcome.to_json()),
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
        """Save cursor and counters (only while this runner holds and the handler exists)."""
        async with self._saving:
            self._dirty = False
            record = {**self.state.to_record(), "generation": self.spec.generation}
            try:
                await self._fenced([kvops.put_op(state_key(self.spec.name), record)])
            except BaseException:
                self._dirty = True
                raise
            self.saved_cursor = record["cursor"]
            self._last_flush = time.monotonic()

    async def _fenced(self, success: list[dict[str, Any]]) -> None:
        """Run ``success`` if this runner still holds its token and the handler was not
        removed (or re-added); else raise :class:`RunnerLost` or :class:`SpecChanged`."""
        guard = [
            self.runner.fence(),
            kvops.cmp_create(handler_key(self.spec.name), self.create_revision),
        ]
        probe = [{"range": {"key": RUNNER, "keys_only": True}}]
        result = await self._retrying_txn(guard, success, probe)
        if result["succeeded"]:
            return
        runner = result["responses"][0]["range"]["kvs"]
        if runner and runner[0]["create_revision"] == self.runner.token:
            raise SpecChanged(self.spec.name)
        raise RunnerLost(f"another runner took over while saving {self.spec.name}")

    async def _retrying_txn(
        self, guard: list[dict[str, Any]], success: list[dict[str, Any]], probe: list[Any]
    ) -> dict[str, Any]:
        """A transaction that rides out brief trouble (timeouts, a busy leader) while this
        node still leads; losing leadership ends the runner role."""
        for attempt in range(1, limits.HOOKS_SAVE_ATTEMPTS + 1):
            if not self.node.is_leader:
                raise RunnerLost("this node is no longer the leader")
            try:
                return await kvops.txn(self.node, guard, success, probe)
            except (AspenTimeoutError, UnavailableError) as exc:
                if attempt == limits.HOOKS_SAVE_ATTEMPTS:
                    raise RunnerLost(f"cannot save progress: {exc}") from exc
                await anyio.sleep(backoff_seconds(attempt))
        raise AssertionError("unreachable")


def _bounded(outcome: dict[str, Any]) -> dict[str, Any]:
    """An outcome small enough for a dead-letter entry (a large return value is cut)."""
    import msgpack

    if len(msgpack.packb(outcome, default=repr)) <= limits.HOOKS_MAX_DLQ_OUTCOME_BYTES:
        return outcome
    cut = limits.HOOKS_MAX_DLQ_OUTCOME_BYTES // 4
    return {
        **outcome,
        "output": repr(outcome.get("output"))[:cut],
        "stdout": str(outcome.get("stdout", ""))[:cut],
        "stderr": str(outcome.get("stderr", ""))[:cut],
        "truncated": True,
    }
