"""One handler's worker: reads the handler's events in order — from the KV history (kv,
raft and cluster events) or from the core's event journal (every other family) — runs the
handler for each (retries with backoff, then the dead-letter list, announced as a
``hooks.dead_letter`` journal event), and saves its cursor and counters under the runner's
fencing token."""

from __future__ import annotations

import contextlib
import logging
import random
import time
from typing import TYPE_CHECKING, Any

import anyio

from aspen.errors import AspenError, CompactedError, UnavailableError
from aspen.errors import TimeoutError as AspenTimeoutError
from aspen_hooks import kvops, limits
from aspen_hooks.executors import Invocation, Outcome, execute
from aspen_hooks.keys import RUNNER, dlq_key, dlq_prefix, handler_key, prefix_end, state_key
from aspen_hooks.model import HandlerSpec
from aspen_hooks.payload import event_from_history, idempotency_key
from aspen_hooks.stats import HandlerState

if TYPE_CHECKING:
    from aspen_hooks.runner import Runner

__all__ = ["DEAD_LETTER", "HandlerWorker", "RunnerLost", "SpecChanged", "backoff_seconds"]

#: The journal event announcing a dead letter, in the same transaction (subject: handler).
DEAD_LETTER = "hooks.dead_letter"

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


class HandlerWorker:
    """Delivers one handler's events in revision order.

    Progress is saved by a background flusher at most every ``HOOKS_STATE_FLUSH_SECONDS``
    while events are delivered, after a quiet spell once other writes moved the cursor by
    ``HOOKS_IDLE_SAVE_REVISIONS`` (a journal handler: once its position moved past events
    it does not match), and once more when the worker stops. Saves are fenced
    by the runner's token and the handler's ``create_revision`` (a removed and re-added
    handler starts anew); the spec's ``generation`` (bumped by ``hooks reset`` and
    ``--replace``) tells which saved state still applies.
    """

    def __init__(
        self, runner: Runner, spec: HandlerSpec, create_revision: int, spec_revision: int
    ) -> None:
        self.runner = runner
        self.node = runner.node
        self.spec = spec
        self.pattern = spec.pattern
        self.create_revision = create_revision
        #: The revision ``spec`` was written at: an event after a newer write of the
        #: handler's record is not this worker's to deliver.
        self.spec_revision = spec_revision
        #: Set by :meth:`stop` while a run is in progress: cancelled once it ends.
        self._stop_scope: anyio.CancelScope | None = None
        self.state = HandlerState(cursor=spec.start_revision or create_revision)
        self.saved_cursor = self.state.cursor
        self.saved_position = self.state.position
        #: True while the worker waits for its next watch item (nothing to deliver).
        self.waiting = False
        self._last_flush = time.monotonic()
        self._dirty = False
        self._saving = anyio.Lock()
        #: At least as many dead letters as the handler has (None: not counted yet).
        self._dlq_most: int | None = None

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
            self.saved_position = self.state.position
        span = self.pattern.watch_range()
        if self.state.lagged or (span is None and not self.pattern.journal):
            self.waiting = True
            await anyio.sleep_forever()  # lagged: waits for `hooks reset`
        try:
            async with anyio.create_task_group() as tg:
                tg.start_soon(self._flusher)
                if span is None:
                    await self._follow_journal()
                else:
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
            self._lagged(f"the history was compacted (to revision {compacted})")
        self.waiting = True
        await anyio.sleep_forever()

    async def _follow_journal(self) -> None:
        """Deliver from the core's event journal (filtered there by the pattern), from the
        saved position, else from the first event after the handler's start revision; a
        position trimmed by the journal's retention marks the handler lagged."""
        state = self.state
        start = state.position or None
        after = None if start else state.cursor
        watch = self.node.events.watch(start, after_revision=after, match=self.pattern.text)
        try:
            async with contextlib.aclosing(watch) as items:
                while True:
                    self.waiting = True
                    item = await items.__anext__()
                    self.waiting = False
                    for event in item.get("events") or ():
                        # every revision before this event's is done (its own may have more)
                        self._advance(event["revision"] - 1)
                        await self.deliver(event)
                        state.position = event["position"] + 1
                        self._dirty = True
                    if item.get("events"):
                        self._advance(item["events"][-1]["revision"])
                    state.position = max(state.position, item.get("next", 0))
        except SpecChanged:
            pass
        except CompactedError as exc:
            oldest = exc.details.get("oldest", "?")
            self._lagged(f"the event journal's retention trimmed it (oldest kept: {oldest})")
        self.waiting = True
        await anyio.sleep_forever()

    def _lagged(self, why: str) -> None:
        """Stop delivering: ``why`` events after the cursor are gone."""
        self.state.lagged = (
            f"{why} past this handler's cursor (revision {self.state.cursor}, journal position "
            f"{self.state.position}): events after it are lost to the handler. "
            f"'aspen hooks reset {self.spec.name}' resumes from now."
        )
        log.error("hooks: handler %s lagged: %s", self.spec.name, self.state.lagged)
        self._dirty = True

    async def _flusher(self) -> None:
        """Save progress in the background (see the class docs)."""
        while True:
            await anyio.sleep(limits.HOOKS_STATE_FLUSH_SECONDS)
            quiet = time.monotonic() - self._last_flush >= limits.HOOKS_IDLE_FLUSH_SECONDS
            moved = self.state.cursor - self.saved_cursor >= limits.HOOKS_IDLE_SAVE_REVISIONS
            # a journal handler's position also moves past events it does not match
            moved = moved or self.state.position != self.saved_position
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
        if item.get("more"):
            self._advance(events[-1]["kv"]["mod_revision"] - 1)  # that revision may go on
        else:
            self._advance(item["header"]["revision"])

    def _advance(self, revision: int) -> None:
        self.state.cursor = max(self.state.cursor, revision)

    def stop(self, scope: anyio.CancelScope) -> None:
        """The runner replaces this worker (its spec changed): cancel ``scope`` (the
        worker's) now if no run is in progress, else once the run ends (at most
        ``HOOKS_STOP_GRACE_SECONDS`` from now), so that a run that did its work is not
        cut short and delivered again by the next worker."""
        if self.state.in_flight == 0:
            scope.cancel()
            return
        self._stop_scope = scope
        grace = anyio.current_time() + limits.HOOKS_STOP_GRACE_SECONDS
        scope.deadline = min(scope.deadline, grace)

    async def _check_current(self, revision: int) -> None:
        """Raise :class:`SpecChanged` if the handler's record was written again (or
        removed) before ``revision``: from the change on, the events belong to the next
        worker, or to nobody (disabled), even when the runner has not yet seen it. A local
        read suffices: the runner is on the leader, which applied ``revision`` already."""
        record = await kvops.get(self.node, handler_key(self.spec.name), serializable=True)
        if record is None or (
            record["mod_revision"] != self.spec_revision and record["mod_revision"] < revision
        ):
            raise SpecChanged(self.spec.name)

    async def deliver(self, event: dict[str, Any]) -> Outcome:
        """Run the handler for ``event`` with retries; dead-letter it when they run out.
        :class:`SpecChanged` (nothing run) if the handler changed before the event."""
        await self._check_current(int(event.get("revision", 0)))
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
                if self._stop_scope is not None:
                    self._stop_scope.cancel()  # stop() came during the run
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
        if not str(event.get("name", "")).startswith("hooks."):  # never feed on itself
            announce = {
                "handler": name,
                "id": entry_id,
                "event": event.get("name"),
                "idempotency_key": key,
                "error": outcome.error,  # at most HOOKS_MAX_ERROR_CHARS
                "attempts": attempts,
            }
            success.append(self.node.events.op(DEAD_LETTER, name, announce))
        oldest = await self._dlq_oldest_if_full()
        if oldest is not None:
            success.append(kvops.delete_op(oldest))
        await self._fenced(success)
        self.state.dead_lettered += 1

    async def _dlq_oldest_if_full(self) -> bytes | None:
        """The key of the oldest dead letter when the list holds HOOKS_MAX_DLQ_ENTRIES (it
        makes room for one more), else None.

        The list is counted only when an upper bound of its length (counted once, then
        one more per dead letter: this runner is its only writer, redrives only shorten
        it) says it may be full, not on every dead letter."""
        cap = limits.HOOKS_MAX_DLQ_ENTRIES
        if self._dlq_most is not None and self._dlq_most < cap:
            self._dlq_most += 1
            return None
        prefix = dlq_prefix(self.spec.name)
        params = {
            "key": prefix,
            "end": prefix_end(prefix),
            "keys_only": True,
            "limit": 1,
            "count": True,
            "serializable": True,
        }
        oldest = await self.node.call("kv.range", params)
        full = oldest["count"] >= cap and bool(oldest["kvs"])
        self._dlq_most = oldest["count"] if full else oldest["count"] + 1
        return oldest["kvs"][0]["key"] if full else None

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
            self.saved_position = record["position"]
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
