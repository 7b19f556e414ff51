"""The durable side of Raft: the read-only protocol Raft needs, and an in-memory store.

Raft reads durable state through :class:`RaftStorage` and never writes it: the driver
writes what each ``Ready`` says (hard state, entries, snapshot) and only then calls
``advance``. Indexes: the log holds entries ``[first_index(), last_index()]``; the entry
just before them is covered by the snapshot (``snapshot_meta()``), whose term
``term(first_index() - 1)`` still answers.

Bootstrap (see :func:`bootstrap_state`): every founding member starts from the same
snapshot at index 1, term 1, whose configuration lists the founders, with
``HardState(term=1, commit=1)`` and an empty state machine applied up to index 1. A node
that joins later starts from *empty* storage (no bootstrap): the leader's log begins at
index 2, so the newcomer is sent a snapshot first and learns the configuration from it.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Protocol, runtime_checkable

from aspen.raft.config import ENTRY_OVERHEAD_BYTES
from aspen.raft.errors import CompactedError, UnavailableError
from aspen.raft.types import ConfState, Entry, HardState, SnapshotMeta

__all__ = [
    "BOOTSTRAP_INDEX",
    "BOOTSTRAP_TERM",
    "MemoryStorage",
    "RaftStorage",
    "bootstrap",
    "bootstrap_state",
    "entry_size",
    "limit_size",
]

#: Index of the snapshot every founding member starts from.
BOOTSTRAP_INDEX = 1
#: Term of that snapshot (and the founders' first term).
BOOTSTRAP_TERM = 1


def entry_size(entry: Entry) -> int:
    """Bytes an entry counts for in every size bound."""
    return len(entry.data) + ENTRY_OVERHEAD_BYTES


def limit_size(entries: Sequence[Entry], max_bytes: int | None) -> list[Entry]:
    """The longest prefix of ``entries`` within ``max_bytes`` (at least one entry)."""
    if max_bytes is None or not entries:
        return list(entries)
    total = 0
    for n, entry in enumerate(entries):
        total += entry_size(entry)
        if total > max_bytes and n > 0:
            return list(entries[:n])
    return list(entries)


@runtime_checkable
class RaftStorage(Protocol):
    """What Raft reads of the durable state (the driver implements it over LMDB)."""

    def initial_state(self) -> tuple[HardState, ConfState]:
        """The persisted hard state, and the configuration as of the applied index."""
        ...

    def entries(self, lo: int, hi: int, max_bytes: int | None) -> list[Entry]:
        """Entries ``[lo, hi)`` up to ``max_bytes`` (at least one when ``lo < hi``)."""
        ...

    def term(self, index: int) -> int:
        """Term of entry ``index``, valid from ``first_index() - 1`` to ``last_index()``."""
        ...

    def first_index(self) -> int:
        """Index of the first entry still in the log (snapshot index + 1 when empty)."""
        ...

    def last_index(self) -> int:
        """Index of the last entry (the snapshot index when the log is empty)."""
        ...

    def snapshot_meta(self) -> SnapshotMeta:
        """Where the latest snapshot stands (index, term, configuration)."""
        ...


def bootstrap_state(
    voters: Iterable[str], learners: Iterable[str] = ()
) -> tuple[HardState, SnapshotMeta]:
    """What a founding member persists before its first start: hard state and snapshot."""
    voter_ids = tuple(sorted(set(voters)))
    learner_ids = tuple(sorted(set(learners) - set(voter_ids)))
    if not voter_ids:
        raise ValueError("a cluster needs at least one voter")
    for node_id in voter_ids + learner_ids:
        if not isinstance(node_id, str) or not node_id:
            raise ValueError(f"node ids must be non-empty strings, not {node_id!r}")
    meta = SnapshotMeta(BOOTSTRAP_INDEX, BOOTSTRAP_TERM, ConfState(voter_ids, learner_ids))
    return HardState(term=BOOTSTRAP_TERM, vote=None, commit=BOOTSTRAP_INDEX), meta


def bootstrap(storage: MemoryStorage, voters: Iterable[str], learners: Iterable[str] = ()) -> None:
    """Write :func:`bootstrap_state` into an empty ``MemoryStorage``."""
    if storage.last_index() != 0 or storage.snapshot_meta().index != 0:
        raise ValueError("bootstrap needs empty storage")
    hard_state, meta = bootstrap_state(voters, learners)
    storage.apply_snapshot(meta)
    storage.set_hard_state(hard_state)


class MemoryStorage:
    """A :class:`RaftStorage` in memory, with the write side a driver needs."""

    def __init__(self) -> None:
        self._hard_state = HardState()
        self._snapshot = SnapshotMeta()
        # _ents[0] is a placeholder standing for the snapshot position (index, term);
        # real entries follow it contiguously.
        self._ents: list[Entry] = [Entry(0, 0)]

    # ------------------------------------------------------------------ reads
    def initial_state(self) -> tuple[HardState, ConfState]:
        """Hard state and the snapshot's configuration."""
        return self._hard_state, self._snapshot.conf

    @property
    def hard_state(self) -> HardState:
        """The stored hard state."""
        return self._hard_state

    def first_index(self) -> int:
        """First index still in the log."""
        return self._ents[0].index + 1

    def last_index(self) -> int:
        """Last index in the log."""
        return self._ents[0].index + len(self._ents) - 1

    def term(self, index: int) -> int:
        """Term at ``index`` (the snapshot's term at the snapshot index)."""
        offset = self._ents[0].index
        if index < offset:
            raise CompactedError(f"log entry {index} was compacted (first is {offset + 1})")
        if index - offset >= len(self._ents):
            raise UnavailableError(f"log entry {index} is past the last ({self.last_index()})")
        return self._ents[index - offset].term

    def entries(self, lo: int, hi: int, max_bytes: int | None = None) -> list[Entry]:
        """Entries ``[lo, hi)`` bounded by ``max_bytes`` (at least one)."""
        offset = self._ents[0].index
        if lo <= offset:
            raise CompactedError(f"log entry {lo} was compacted (first is {offset + 1})")
        if hi > self.last_index() + 1:
            raise UnavailableError(f"log entries up to {hi - 1} are past the last")
        return limit_size(self._ents[lo - offset : hi - offset], max_bytes)

    def snapshot_meta(self) -> SnapshotMeta:
        """The latest snapshot's position and configuration."""
        return self._snapshot

    # ------------------------------------------------------------------ writes
    def set_hard_state(self, hard_state: HardState) -> None:
        """Replace the stored hard state."""
        self._hard_state = hard_state

    def append(self, entries: Sequence[Entry]) -> None:
        """Append ``entries``, replacing any stored suffix from ``entries[0].index`` on."""
        if not entries:
            return
        offset = self._ents[0].index
        first = entries[0].index
        if first > self.last_index() + 1:
            raise ValueError(f"append at {first} leaves a gap after {self.last_index()}")
        if entries[-1].index <= offset:
            return  # all compacted already
        if first <= offset:
            entries = entries[offset + 1 - first :]
            first = offset + 1
        del self._ents[first - offset :]
        self._ents.extend(entries)

    def apply_snapshot(self, meta: SnapshotMeta) -> None:
        """Install a snapshot: the log restarts right after it."""
        if meta.index < self._snapshot.index:
            raise ValueError(f"snapshot at {meta.index} is older than {self._snapshot.index}")
        self._snapshot = meta
        self._ents = [Entry(meta.index, meta.term)]
        if self._hard_state.commit < meta.index:
            self._hard_state = HardState(self._hard_state.term, self._hard_state.vote, meta.index)

    def create_snapshot(self, index: int, conf: ConfState) -> SnapshotMeta:
        """Record that the state machine has a snapshot at ``index`` (applied) with ``conf``."""
        if index <= self._snapshot.index:
            return self._snapshot
        if index > self._hard_state.commit or index > self.last_index():
            raise ValueError(f"snapshot at {index} is past the commit or last index")
        self._snapshot = SnapshotMeta(index, self.term(index), conf)
        return self._snapshot

    def compact(self, index: int) -> None:
        """Drop entries up to and including ``index`` (must be covered by the snapshot)."""
        offset = self._ents[0].index
        if index <= offset:
            return
        if index > self._snapshot.index:
            raise ValueError(f"compact to {index} is past the snapshot at {self._snapshot.index}")
        keep = self._ents[index - offset :]
        self._ents = [Entry(index, keep[0].term), *keep[1:]]
