"""What the ``kv.*`` handlers work with: :class:`KVService`.

It holds the node's storage and state machine, the worker threads reads run in, and the two
ways into Raft a KV request needs (propose a command, wait for a linearizable read point), so
the handlers get exactly these instead of the whole node.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import anyio
import lmdb

from aspen.kv.state_machine import KVStateMachine
from aspen.storage import Storage

__all__ = ["KVService"]

_T = TypeVar("_T")


class KVService:
    """Storage, state machine, read threads, ``propose``, ``read_barrier`` and ``settled`` of
    one node."""

    def __init__(
        self,
        storage: Storage,
        state_machine: KVStateMachine,
        read_limiter: anyio.CapacityLimiter,
        *,
        propose: Callable[[dict[str, Any]], Awaitable[Any]],
        read_barrier: Callable[[], Awaitable[None]],
        settled: Callable[[], Awaitable[None]],
    ) -> None:
        """``read_limiter`` bounds the worker threads reads run in; ``propose`` replicates a
        command and returns its result; ``read_barrier`` waits for a linearizable read point
        (ReadIndex); ``settled`` waits until every write this node answered is visible (a
        serializable read waits for it, so a client reads its own writes)."""
        self.storage = storage
        self.state_machine = state_machine
        self.read_limiter = read_limiter
        self.propose = propose
        self.read_barrier = read_barrier
        self.settled = settled

    async def read(self, read: Callable[[lmdb.Transaction], _T]) -> _T:
        """Run ``read`` in a fresh read transaction in a worker thread, off the event loop."""

        def run() -> _T:
            with self.storage.begin() as txn:
                return read(txn)

        return await anyio.to_thread.run_sync(run, limiter=self.read_limiter)
