"""One simulated node: a ``RawNode`` over ``MemoryStorage``, a driver loop in etcd's order,
and a tiny replicated key-value state machine with compare-and-swap.

What survives a crash is exactly what a real node keeps on disk: the ``MemoryStorage``
(hard state, persisted entries, snapshot metadata) and the state machine snapshot saved
beside it. Unstable entries, unsent messages, the applied state past the snapshot and any
spooled incoming snapshot are lost. On restart the state machine is restored from the
snapshot and committed entries after it are applied again.
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable
from dataclasses import replace
from typing import Any, Protocol

from aspen.raft import (
    Config,
    ConfState,
    Entry,
    EntryType,
    HardState,
    MemoryStorage,
    Message,
    RawNode,
    Ready,
    SnapshotMeta,
    SoftState,
    decode_conf_change,
)

__all__ = ["NodeObserver", "SimNode", "apply_command", "encode_command"]

KV = dict[str, str]
#: Called with (entry, result) when the entry at a watched index applies; (None, None) on crash.
ApplyWaiter = Callable[[Entry | None, Any], None]


def encode_command(op: dict[str, Any]) -> bytes:
    """A client command -> entry data (canonical JSON)."""
    return json.dumps(op, sort_keys=True, separators=(",", ":")).encode()


def apply_command(kv: KV, data: bytes) -> Any:
    """Apply one command to ``kv``; returns its result (CAS: whether it swapped)."""
    op = json.loads(data)
    key = op["key"]
    if op["op"] == "put":
        kv[key] = op["value"]
        return None
    if op["op"] == "cas":
        if kv.get(key) == op["expected"]:
            kv[key] = op["new"]
            return True
        return False
    raise ValueError(f"unknown command {op['op']!r}")


class NodeObserver(Protocol):
    """What the invariant checker wants to hear from a node's driver."""

    def on_persist(self, node: SimNode, entries: tuple[Entry, ...]) -> None:
        """Entries were written to the node's storage."""

    def on_hard_state(self, node: SimNode, hard_state: HardState) -> None:
        """A hard state was written."""

    def on_apply(self, node: SimNode, entry: Entry) -> None:
        """An entry is about to be applied (``node.applied`` is still the previous index)."""

    def on_install(self, node: SimNode, meta: SnapshotMeta, kv: KV) -> None:
        """A snapshot from the leader was installed."""

    def on_snapshot(self, node: SimNode, meta: SnapshotMeta, kv: KV) -> None:
        """The node saved a snapshot of its state machine."""

    def on_soft_state(self, node: SimNode, soft: SoftState) -> None:
        """The node's leader or role changed."""


class SimNode:
    """A node's durable and volatile state and its driver loop."""

    def __init__(
        self,
        node_id: str,
        storage: MemoryStorage,
        config: Config,
        rng: random.Random,
        observer: NodeObserver,
        *,
        snapshot_every: int = 0,
        keep_entries: int = 5,
    ) -> None:
        self.id = node_id
        self.storage = storage
        self.config = config
        self.rng = rng
        self.observer = observer
        self.snapshot_every = snapshot_every
        self.keep_entries = keep_entries
        # "Disk": the storage above plus the state machine snapshot at its snapshot index.
        self.saved_snapshot: tuple[SnapshotMeta, KV] = (storage.snapshot_meta(), {})
        self.alive = False
        self.restarts = 0
        self.start()

    # ------------------------------------------------------------------ life cycle
    def start(self) -> None:
        """Boot from what is on disk."""
        meta, kv = self.saved_snapshot
        self.kv: KV = dict(kv)
        self.applied = meta.index
        self.conf: ConfState = meta.conf
        self.raw = RawNode(
            replace(self.config, applied=meta.index), self.storage, random.Random(self.rng.random())
        )
        self.outbox: list[tuple[Message, KV | None]] = []
        self.spool: dict[int, KV] = {}
        self.apply_waiters: dict[int, ApplyWaiter] = {}
        self.read_waiters: dict[bytes, Callable[[int], None]] = {}
        self.index_waiters: list[tuple[int, Callable[[], None]]] = []
        self.alive = True

    def crash(self) -> None:
        """Lose everything not on disk; waiters learn their outcome is unknown."""
        self.alive = False
        for waiter in self.apply_waiters.values():
            waiter(None, None)
        self.apply_waiters = {}
        self.read_waiters = {}
        self.index_waiters = []
        self.outbox = []
        self.spool = {}
        self.restarts += 1

    # ------------------------------------------------------------------ driver loop
    def handle_ready(self) -> None:
        """Persist, queue messages, apply and advance until Raft has nothing more."""
        raw = self.raw
        while raw.has_ready():
            rd = raw.ready()
            self._handle(rd)
            raw.advance(rd)
        since = self.applied - self.saved_snapshot[0].index
        if self.snapshot_every and since >= self.snapshot_every:
            self._take_snapshot()
        if self.index_waiters:
            due = [w for w in self.index_waiters if w[0] <= self.applied]
            self.index_waiters = [w for w in self.index_waiters if w[0] > self.applied]
            for _, callback in due:
                callback()

    def _handle(self, rd: Ready) -> None:
        if rd.snapshot is not None:
            self._install(rd.snapshot)
        if rd.entries:
            self.storage.append(rd.entries)
            self.observer.on_persist(self, rd.entries)
        if rd.hard_state is not None:
            self.storage.set_hard_state(rd.hard_state)
            self.observer.on_hard_state(self, rd.hard_state)
        for msg in rd.messages:  # "sent" once the network takes them, after the persist
            data = None
            if msg.snapshot is not None:
                data = self.snapshot_data(msg.snapshot.index)
                if data is None:
                    raise AssertionError(f"{self.id}: no saved snapshot at {msg.snapshot.index}")
            self.outbox.append((msg, data))
        for entry in rd.committed:
            self._apply(entry)
        for rs in rd.read_states:
            waiter = self.read_waiters.pop(rs.context, None)
            if waiter is not None:
                waiter(rs.index)
        if rd.soft_state is not None:
            self.observer.on_soft_state(self, rd.soft_state)

    def _install(self, meta: SnapshotMeta) -> None:
        kv = self.spool.pop(meta.index)
        self.storage.apply_snapshot(meta)
        self.kv = dict(kv)
        self.applied = meta.index
        self.conf = meta.conf
        self.saved_snapshot = (meta, dict(kv))
        self.spool = {i: d for i, d in self.spool.items() if i > meta.index}
        self.observer.on_install(self, meta, self.kv)

    def _apply(self, entry: Entry) -> None:
        self.observer.on_apply(self, entry)
        result: Any = None
        if entry.type == EntryType.CONF_CHANGE:
            self.conf = self.raw.apply_conf_change(decode_conf_change(entry.data))
        elif entry.data:
            result = apply_command(self.kv, entry.data)
        self.applied = entry.index
        waiter = self.apply_waiters.pop(entry.index, None)
        if waiter is not None:
            waiter(entry, result)

    def _take_snapshot(self) -> None:
        meta = self.storage.create_snapshot(self.applied, self.conf)
        self.saved_snapshot = (meta, dict(self.kv))
        self.observer.on_snapshot(self, meta, self.kv)
        self.storage.compact(max(self.storage.first_index() - 1, meta.index - self.keep_entries))

    # ------------------------------------------------------------------ helpers for clients
    def receive_snapshot_data(self, index: int, kv: KV) -> None:
        """Spool the state machine data that travels beside a SNAPSHOT message."""
        self.spool[index] = dict(kv)

    def snapshot_data(self, index: int) -> KV | None:
        """The saved state machine at ``index`` (what a leader streams with a SNAPSHOT)."""
        meta, kv = self.saved_snapshot
        return dict(kv) if meta.index == index else None

    def when_applied(self, index: int, callback: Callable[[], None]) -> None:
        """Call ``callback`` once the state machine has applied ``index``."""
        if self.applied >= index:
            callback()
        else:
            self.index_waiters.append((index, callback))

    def take_outbox(self) -> list[tuple[Message, KV | None]]:
        """Messages to hand to the network, with the snapshot data beside SNAPSHOT ones."""
        out, self.outbox = self.outbox, []
        return out
