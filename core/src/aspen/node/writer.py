"""Group commit: every proposed command goes through one writer.

``propose(command)`` queues the command and waits. The writer takes everything queued (up
to ``MAX_COMMANDS_PER_BATCH``), and in ONE LMDB write transaction appends the commands to the
log and applies them to the state machine, then commits (one fsync) and wakes every waiter
with its own result. While a batch commits in a worker thread, the event loop keeps
accepting requests, which form the next batch. This is the seam Raft slots in behind: the
log append and the apply will then be separated by replication.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Callable
from typing import Any

import anyio
import msgpack

from aspen import limits
from aspen.errors import AspenError, InternalError, ResourceExhaustedError
from aspen.events import Event
from aspen.kv.state_machine import KVStateMachine
from aspen.storage import Storage
from aspen.storage.log import Log, LogEntry

__all__ = ["GroupCommitWriter"]

log = logging.getLogger(__name__)

#: Entries of log kept behind the applied index (for Raft followers that lag, later).
LOG_RETAIN_ENTRIES = limits.LOG_RETAIN_ENTRIES


class _Waiter:
    """One proposal waiting for its batch to commit."""

    __slots__ = ("done", "result")

    def __init__(self) -> None:
        self.done = anyio.Event()
        self.result: Any = None


class GroupCommitWriter:
    """Batches proposals into one log-append-and-apply transaction per commit."""

    def __init__(
        self,
        storage: Storage,
        state_machine: KVStateMachine,
        raft_log: Log,
        on_applied: Callable[[list[Event], int], None],
        *,
        term: int = 1,
    ) -> None:
        """``on_applied(events, revision)`` runs on the event loop after every commit."""
        self._storage = storage
        self._sm = state_machine
        self._log = raft_log
        self._on_applied = on_applied
        self._term = term
        self._pending: deque[tuple[dict, _Waiter]] = deque()
        self._wake = anyio.Event()
        self._packer = msgpack.Packer(use_bin_type=True)
        with storage.begin() as txn:
            self._last_index = raft_log.last_index(txn)
            self.applied_index = state_machine.applied_index(txn)
            self.revision = state_machine.current_revision(txn)
        self.batches = 0
        self.commands = 0

    async def propose(self, command: dict) -> Any:
        """Append ``command`` to the log, apply it, and return its result (or raise its error)."""
        if len(self._pending) >= limits.MAX_PENDING_PROPOSALS:
            raise ResourceExhaustedError("too many writes waiting; retry later")
        waiter = _Waiter()
        self._pending.append((command, waiter))
        self._wake.set()
        await waiter.done.wait()
        if isinstance(waiter.result, AspenError):
            raise waiter.result
        return waiter.result

    async def run(self) -> None:
        """Commit batches until cancelled."""
        while True:
            await self._wake.wait()
            self._wake = anyio.Event()
            while self._pending:
                n = min(len(self._pending), limits.MAX_COMMANDS_PER_BATCH)
                batch = [self._pending.popleft() for _ in range(n)]
                commands = [command for command, _ in batch]
                try:
                    results, events = await anyio.to_thread.run_sync(self._commit, commands)
                except Exception as exc:  # a bug in apply: fail the batch, keep the node up
                    log.exception("group commit of %d commands failed", n)
                    results = [InternalError(f"write failed: {exc}")] * n
                    events = []
                for (_, waiter), result in zip(batch, results, strict=True):
                    waiter.result = result
                    waiter.done.set()
                if events or results:
                    self._on_applied(events, self.revision)

    def _commit(self, commands: list[dict]) -> tuple[list[Any], list[Event]]:
        """In a worker thread: one transaction, log append + apply, one fsync."""
        first = self._last_index + 1
        entries = [
            LogEntry(first + i, self._term, self._packer.pack(command))
            for i, command in enumerate(commands)
        ]
        results: list[Any] = []
        events: list[Event] = []
        with self._storage.begin(write=True) as txn:
            self._log.append(txn, entries)
            for entry, command in zip(entries, commands, strict=True):
                result, produced = self._sm.apply(txn, entry.index, entry.term, command)
                results.append(result)
                events.extend(produced)
            last = entries[-1].index
            if last - self._log.first_index(txn) > 2 * LOG_RETAIN_ENTRIES:
                self._log.compact_to(txn, last - LOG_RETAIN_ENTRIES)
            revision = self._sm.current_revision(txn)
        self._last_index = self.applied_index = last
        self.revision = revision
        self.batches += 1
        self.commands += len(commands)
        return results, events
